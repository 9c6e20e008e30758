"""The list face of the containers that hold their nodes in order: Sequential's layers, Parallel's branches.

As torch's ``ModuleList`` and ``Sequential``: ``len``, iteration, indexing
(an int, a slice, which gives a container of the same kind sharing the
nodes, or a name), ``append``, ``extend``, ``insert``, ``pop``, item
assignment and deletion.  A container is made from nodes given one by one,
as one list, or as one mapping of names to nodes
(``Sequential(OrderedDict(conv=..., relu=...))``).

**Names.**  A node given with a name is listed under it, its ``state_dict``
keys are ``"<name>.<parameter>"`` (``conv.weight``, as torch), and the name
stays with it through every later change; a node given without one is
listed under its position (``"0.weight"``), which follows it as nodes are
inserted or deleted.  A name is a Python identifier, so it never looks like
a position; names are unique within a container.  (torch renumbers every
key, names included, after a deletion; here a named node keeps its name.)

**Checks.**  Every change is checked before anything moves, and a refused
change leaves the container as it was: a loss or anything but a node is a
``TypeError`` (as the constructor says), a change that would leave fewer
nodes than the container needs (Parallel needs a branch) a ``ValueError``, a
position out of range an ``IndexError``, a name that is not there a
``KeyError``.  A node that contains the container itself is taken, as
before: every walk of the tree (``parameters()``, ``summary()``, a call on
placeholders, training) then refuses the cycle, naming it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union, overload

from ..criterion import Criterion
from ..node import Node

__all__ = ["NodeList", "check_layer", "check_name"]

Self = TypeVar("Self", bound="NodeList")


def check_layer(container: str, node: Any, position: Optional[int] = None) -> None:
    """Raise ``TypeError`` unless ``node`` can be a layer of ``container``: a Node, and not a loss."""
    where = "" if position is None else f" at position {position}"
    if isinstance(node, Criterion):
        raise TypeError(
            f"{container}: {type(node).__name__}{where} is a loss, not a layer: give it to NeuralNetwork, "
            "or call it on the model's output"
        )
    if not isinstance(node, Node):
        raise TypeError(f"{container} takes Nodes, got {type(node).__name__}{where}")


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a Python identifier (a ``state_dict`` prefix), else ``ValueError`` naming ``what``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{what} must be a Python identifier (it becomes a state_dict prefix), got {name!r}")
    return name


class NodeList(Node):
    """A Node that holds nodes in order, with the list face of torch's containers (see the module docstring).

    A subclass calls :meth:`_hold` from its constructor; ``_least`` is the
    fewest nodes it may hold.
    """

    _least = 0
    _layers: List[Node]
    _layer_names: List[Optional[str]]

    def _hold(self, nodes: Tuple[Any, ...]) -> None:
        """Take the constructor's nodes: one by one, one list or tuple, or one mapping of names to nodes."""
        kind = type(self).__name__
        names: List[Optional[str]]
        if len(nodes) == 1 and isinstance(nodes[0], Mapping):
            names = [check_name(name, f"{kind}: a layer's name") for name in nodes[0]]
            layers = list(nodes[0].values())
        else:
            layers = list(nodes[0]) if len(nodes) == 1 and isinstance(nodes[0], (list, tuple)) else list(nodes)
            names = [None] * len(layers)
        for i, node in enumerate(layers):
            check_layer(kind, node, i)
        if len(layers) < self._least:
            raise ValueError(f"{kind} needs at least {self._least} node{'' if self._least == 1 else 's'}")
        self._layers, self._layer_names = layers, names

    # ------------------------------------------------------------------ describing
    def config(self) -> Dict[str, Any]:
        """No arguments besides the nodes, which :meth:`children` lists (a position for a node given unnamed)."""
        return {}

    @classmethod
    def from_config(cls: Any, config: Mapping[str, Any], children: Sequence[Tuple[Optional[str], Node]] = ()) -> Any:
        """The container of ``children``, ``(name, node)`` pairs: a name that is the node's position means none."""
        if config:
            raise ValueError(f"{cls.__name__}.from_config takes no arguments besides its nodes, got {sorted(config)}")
        names: List[Optional[str]] = []
        for i, (name, _) in enumerate(children):
            names.append(None if name is None or name == str(i) else check_name(name, f"{cls.__name__}: a name"))
        given = [name for name in names if name is not None]
        if len(set(given)) != len(given):
            raise ValueError(f"{cls.__name__}.from_config: a name is given to two nodes in {given}")
        made = cls(*[node for _, node in children])
        made._layer_names = names
        return made

    # ------------------------------------------------------------------ reading
    def children(self) -> List[Tuple[str, Node]]:
        return [(str(i) if name is None else name, node)
                for i, (name, node) in enumerate(zip(self._layer_names, self._layers))]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Node]:
        return iter(self._layers)

    @overload
    def __getitem__(self, index: Union[int, str]) -> Node: ...

    @overload
    def __getitem__(self: Self, index: slice) -> Self: ...

    def __getitem__(self, index: Union[int, slice, str]) -> Any:
        """The node at a position or under a name; a slice gives a container of the same kind sharing its nodes."""
        if isinstance(index, slice):
            positions = range(len(self._layers))[index]
            return self._made_of([self._layers[i] for i in positions], [self._layer_names[i] for i in positions])
        if isinstance(index, str):
            for key, node in self.children():
                if key == index:
                    return node
            raise KeyError(f"{type(self).__name__} has no node named {index!r}; its keys are "
                           f"{[key for key, _ in self.children()]}")
        return self._layers[self._position(index)]

    def _made_of(self: Self, layers: List[Node], names: List[Optional[str]]) -> Self:
        """A container of this kind holding ``layers`` under ``names`` (None: its position)."""
        made = type(self)(*layers)  # checked as the constructor checks (a Parallel of no branch is refused)
        made._layer_names = list(names)
        return made

    # ------------------------------------------------------------------ changing
    def append(self: Self, node: Node) -> Self:
        """Add ``node`` at the end; returns the container (as torch's ``append``)."""
        return self.insert(len(self._layers), node)

    def extend(self: Self, nodes: Iterable[Node]) -> Self:
        """Add each of ``nodes`` at the end, in order (all are checked first); returns the container."""
        if isinstance(nodes, Node) and not isinstance(nodes, NodeList):
            raise TypeError(f"{type(self).__name__}.extend takes an iterable of nodes (use append for one node), "
                            f"got {type(nodes).__name__}")
        new = list(nodes)
        for i, node in enumerate(new):
            self._check_new(node, len(self._layers) + i)
        self._layers.extend(new)
        self._layer_names.extend([None] * len(new))
        return self

    def insert(self: Self, index: int, node: Node) -> Self:
        """Put ``node`` before position ``index`` (``-len <= index <= len``, as torch); returns the container."""
        n = len(self._layers)
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"{type(self).__name__}.insert: index must be an integer, got {index!r}")
        index = int(index)
        if not -n <= index <= n:
            raise IndexError(f"{type(self).__name__}.insert: index {index} is out of range for {n} nodes "
                             f"(expected a value in [{-n}, {n}])")
        index = index + n if index < 0 else index
        self._check_new(node, index)
        self._layers.insert(index, node)
        self._layer_names.insert(index, None)
        return self

    def pop(self, index: int = -1) -> Node:
        """Remove the node at ``index`` (default the last) and return it."""
        position = self._position(index)
        self._check_removal(1)
        self._layer_names.pop(position)
        return self._layers.pop(position)

    def __setitem__(self, index: int, node: Node) -> None:
        """Replace the node at ``index``; it takes over that position's name or number."""
        if isinstance(index, slice):
            raise TypeError(f"{type(self).__name__}: assign nodes one position at a time (or use del and insert)")
        position = self._position(index)
        self._check_new(node, position)
        self._layers[position] = node

    def __delitem__(self, index: Union[int, slice]) -> None:
        """Remove the node at ``index``, or the nodes of a slice; the later positional nodes move up."""
        positions = range(len(self._layers))[index] if isinstance(index, slice) else [self._position(index)]
        self._check_removal(len(positions))
        gone = set(positions)
        kept = [i for i in range(len(self._layers)) if i not in gone]
        self._layers[:] = [self._layers[i] for i in kept]
        self._layer_names[:] = [self._layer_names[i] for i in kept]

    # ------------------------------------------------------------------ the checks
    def _position(self, index: Any) -> int:
        """``index`` as a position in ``[0, len)``; ``TypeError`` for a non-integer, ``IndexError`` out of range."""
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"{type(self).__name__} indices must be integers, slices or names, got {index!r}")
        n, index = len(self._layers), int(index)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} is out of range for {n} node"
                             f"{'' if n == 1 else 's'}")
        return index % n

    def _check_new(self, node: Any, position: int) -> None:
        """A node about to be placed must be a layer, not a loss (a cycle is refused where the tree is walked)."""
        check_layer(type(self).__name__, node, position)

    def _check_removal(self, count: int) -> None:
        if len(self._layers) - count < self._least:
            raise ValueError(f"{type(self).__name__} must keep at least {self._least} node"
                             f"{'' if self._least == 1 else 's'}; this would leave {len(self._layers) - count}")

    def _layer_lines(self) -> str:
        """The nodes one per line under their keys, for ``repr``."""
        if not self._layers:
            return ""
        return "\n" + "\n".join(f"  ({key}): {node!r}" for key, node in self.children()) + "\n"

