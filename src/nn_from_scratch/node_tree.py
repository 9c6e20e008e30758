"""The tree of nodes: children, the walk over them, parameters, buffers, state dicts and the train/eval mode.

Every :class:`~nn_from_scratch.node.Node` is a ``NodeTree``: a layer is a
leaf, a container names its children (``children()``), and everything that
reads the whole model walks :meth:`NodeTree.named_nodes` without recursion.
A Parameter or buffer reached along two paths (a node used twice, a weight
tied between two layers) is listed once, under the first name it is reached
by, as torch's ``named_parameters`` does; ``state_dict`` keys are those
names, so a torch module with the same attribute names loads them.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .backend import as_backend_array, backend_namespace, namespace_of, numpy_dtype, to_numpy
from .parameter import Parameter

__all__ = ["NodeTree"]


class NodeTree:
    """Children, names, parameters, buffers, state dicts and modes of a node and the nodes below it."""

    training: bool

    def has_parameters(self) -> bool:
        """Whether this node or one of its children holds a trainable Parameter."""
        return next(self.named_parameters(), None) is not None

    def children(self) -> List[Tuple[str, "NodeTree"]]:
        """Named sub-nodes; containers override this."""
        return []

    def named_nodes(self, prefix: str = "") -> Iterator[Tuple[str, "NodeTree"]]:
        """``(path, node)`` for this node and every node below it, depth first (``path`` ends in a dot, or is empty).

        A node reached along two paths (shared by two containers) comes once
        per path.  Walked without recursion; a container that contains itself
        raises ``ValueError``.
        """
        stack: List[Tuple[str, "NodeTree", frozenset]] = [(prefix, self, frozenset())]
        while stack:
            path, node, above = stack.pop()
            yield path, node
            inside = above | {id(node)}
            for name, child in reversed(node.children()):
                if id(child) in inside:
                    raise ValueError(f"{type(child).__name__} at {path}{name} contains itself (a cycle of containers)")
                stack.append((f"{path}{name}.", child, inside))

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """``(name, Parameter)`` for each trainable array, each Parameter once (first name wins, as in torch).

        A node used twice, or a weight tied between two layers, is one
        Parameter listed under the first name it is reached by, so
        ``parameters()``, ``state_dict()`` and an optimizer see it once.
        """
        seen = set()
        for path, node in self.named_nodes(prefix):
            for name, value in vars(node).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield path + name, value

    def parameters(self) -> List[Parameter]:
        """The distinct trainable Parameters, in the order of :meth:`named_parameters`."""
        return [p for _, p in self.named_parameters()]

    def register_buffer(self, name: str, value: Optional[np.ndarray]) -> None:
        """Declare non-trainable state saved with the model (as torch's ``register_buffer``).

        The array becomes the attribute ``name`` and is listed by :meth:`named_buffers`
        (so :meth:`state_dict` saves it); a buffer set to None is kept out of both, as in torch.
        """
        if not isinstance(name, str) or not name.isidentifier() or "." in name:
            raise ValueError(f"a buffer name must be a Python identifier, got {name!r}")
        if value is not None and not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(f"buffer {name!r} must be an array or None, got {type(value).__name__}")
        names = self.__dict__.setdefault("_buffers", [])
        if name not in names:
            names.append(name)
        setattr(self, name, value)

    def named_buffers(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        """Non-trainable state saved with the model (running statistics), declared by :meth:`register_buffer`.

        Each array once, under the first name it is reached by (a node used twice has one set of buffers).
        """
        seen = set()
        for path, node in self.named_nodes(prefix):
            for name in vars(node).get("_buffers", ()):
                value = getattr(node, name)
                if value is not None and id(value) not in seen:
                    seen.add(id(value))
                    yield path + name, value

    def to_backend(self, backend: str) -> "NodeTree":
        """Move every Parameter (value and gradient) and buffer below this node to ``backend``; returns the node.

        ``backend`` names an array library (:data:`nn_from_scratch.backend.BACKENDS`);
        values and dtypes are kept exactly, and everything is converted
        before anything is replaced.
        """
        xp = backend_namespace(backend)
        moves: List[Tuple[Any, str, Any]] = []
        for _, p in self.named_parameters():
            moves += [(p, "value", as_backend_array(p.value, xp)), (p, "grad", as_backend_array(p.grad, xp))]
        seen = set()
        for _, node in self.named_nodes():
            for name in vars(node).get("_buffers", ()):
                value = getattr(node, name)
                if value is not None and id(value) not in seen:
                    seen.add(id(value))
                    moves.append((node, name, as_backend_array(value, xp)))
        for holder, name, array in moves:
            setattr(holder, name, array)
        return self

    def zero_grad(self) -> None:
        """Set the gradient of every Parameter below this node to zero."""
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode: bool = True) -> "NodeTree":
        """Put this node and every node below it in training mode (``mode=False``: eval mode); returns the node."""
        nodes = [node for _, node in self.named_nodes()]  # walked first: a cycle of containers changes nothing
        for node in nodes:
            node.training = bool(mode)
        return self

    def eval(self) -> "NodeTree":
        """``train(False)``: batch norms use their running statistics, dropout passes its input through."""
        return self.train(False)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """NumPy copies of all parameters and buffers under torch-compatible keys (whatever namespace they live in)."""
        state = {name: np.array(to_numpy(p.value), copy=True) for name, p in self.named_parameters()}
        state.update({name: np.array(to_numpy(b), copy=True) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Load parameters and buffers; every key, shape and dtype is checked before anything changes."""
        targets: Dict[str, np.ndarray] = {name: p.value for name, p in self.named_parameters()}
        targets.update(dict(self.named_buffers()))
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        problems = []
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        arrays = {}
        for name, target in targets.items():
            if name not in state:
                continue
            value = to_numpy(state[name]) if hasattr(state[name], "shape") else np.asarray(state[name])
            if tuple(value.shape) != tuple(target.shape):
                problems.append(f"{name!r}: expected shape {tuple(target.shape)}, got {tuple(value.shape)}")
            elif value.dtype != numpy_dtype(target):
                problems.append(f"{name!r}: expected dtype {numpy_dtype(target)}, got {value.dtype}")
            else:
                arrays[name] = value
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))
        for name, target in targets.items():
            target[...] = as_backend_array(arrays[name], namespace_of(target))
