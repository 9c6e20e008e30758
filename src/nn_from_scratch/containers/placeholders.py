r"""Recording a graph: placeholders, the calls of nodes on them, and the trial forward that finds each shape.

``Input(shape)`` makes the placeholder of a graph input (``batched=False``:
an input with no batch axis, a mask or a table of fixed shape);
``Constant(array)`` the placeholder of an array baked into the graph (saved
with its state).  A node called on
placeholders (``Node.__call__`` hands the call to :meth:`Placeholder.apply`)
computes nothing: it records a *use* (the node, its input placeholders, the
name given at the call), runs once on zeros (on a constant's own values) to
learn its output shape and dtype, and returns the placeholder(s) of its
output.  Each value keeps its dtype on the way: a boolean mask stays
boolean, an index integer.
:class:`~nn_from_scratch.containers.graph.Graph` then turns the uses that
lead to its outputs into a flat plan.  Each placeholder refers only to
earlier ones, so the recorded calls cannot form a cycle.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..backend import to_numpy
from ..node import GraphValue, Node
from .node_list import check_layer, check_name

__all__ = ["Constant", "Input", "Placeholder", "check_name", "shown"]

_serials = itertools.count()  # creation order of placeholders: always a topological order
_serials_lock = threading.Lock()
_TRIAL_BATCHES = (2, 3)  # the batch sizes of the trial forward (2 and up: BatchNorm refuses a batch of 1)


def _next_serial() -> int:
    with _serials_lock:
        return next(_serials)


def shown(shape: Tuple[Optional[int], ...]) -> str:
    """A shape as Python writes a tuple, ``None`` for any size: ``(None, 4)``."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Use:
    """One call of a node on placeholders: the node, its input placeholders, the name given at the call."""

    __slots__ = ("node", "inputs", "name", "serial", "made")

    def __init__(self, node: Node, inputs: Tuple["Placeholder", ...], name: Optional[str]) -> None:
        self.node, self.inputs, self.name, self.serial = node, inputs, name, _next_serial()
        self.made: Tuple[Placeholder, ...] = ()  # the placeholders of its outputs


class Placeholder(GraphValue):
    """A value of a graph under construction: an :func:`Input`, a :func:`Constant`, or a node's output.

    ``shape`` is the value's shape with ``None`` for the batch axis (and any
    axis that follows the batch size); ``dtype`` its dtype.  Calling a node
    on placeholders returns a new placeholder and computes nothing but a
    trial forward on zeros, which finds the output shape and refuses, naming
    the node, inputs it cannot take.  ``batched`` is False for an Input
    without a batch axis; ``value`` is a Constant's array (None otherwise).
    """

    __slots__ = ("use", "index", "shape", "dtype", "name", "serial", "consumers", "batched", "value")

    def __init__(self, shape: Tuple[Optional[int], ...], dtype: np.dtype, use: Optional[Use] = None,
                 index: Optional[int] = None, name: Optional[str] = None, batched: bool = True,
                 value: Optional[np.ndarray] = None) -> None:
        self.shape, self.dtype, self.use, self.index, self.name = shape, dtype, use, index, name
        self.batched, self.value = batched, value
        self.serial = _next_serial()
        # The recorded calls that take this value and are in no Graph yet, from which a Graph finds dangling
        # ones.  A Graph takes its calls off these lists, so a placeholder shared by many models (one Input)
        # keeps none of them alive once the Graph and the user's own placeholders are gone.
        self.consumers: List[Use] = []

    @property
    def is_input(self) -> bool:
        """Whether this is an :func:`Input` (not a Constant, not the output of a node)."""
        return self.use is None and self.value is None

    @property
    def is_constant(self) -> bool:
        """Whether this is a :func:`Constant`."""
        return self.value is not None

    def apply(self, node: Node, inputs: Tuple[Any, ...], name: Optional[str]
              ) -> Union["Placeholder", Tuple["Placeholder", ...]]:
        """Record ``node(*inputs)``: a trial forward on zeros gives the output shape(s); returns their placeholders."""
        check_layer("Graph", node)
        try:  # a container made to contain itself would run forever: refused here, before the trial forward
            for _ in node.named_nodes():
                pass
        except ValueError as error:
            raise ValueError(f"Graph: the {type(node).__name__} called on placeholders is a cycle: {error}") from None
        for i, value in enumerate(inputs):
            if not isinstance(value, Placeholder):
                raise TypeError(
                    f"{node!r} was called on placeholders and on a {type(value).__name__} (input {i}): in a graph "
                    "every input of a node is a placeholder (make a constant an Input of the graph)"
                )
        if name is not None:
            check_name(name, "a node's name")
        use = Use(node, tuple(inputs), name)
        shapes, dtypes, multi = _trial(node, use.inputs)
        use.made = tuple(Placeholder(shape, dtype, use, index if multi else None)
                         for index, (shape, dtype) in enumerate(zip(shapes, dtypes)))
        for value in use.inputs:
            if not any(other is use for other in value.consumers):
                value.consumers.append(use)
        return use.made if multi else use.made[0]

    def __repr__(self) -> str:
        named = '' if self.name is None else f', name={self.name!r}'
        if self.is_constant:
            return f"Constant(shape={shown(self.shape)}, dtype={self.dtype}{named})"
        if self.is_input:
            return (f"Input({shown(self.shape[1:])}{named})" if self.batched else
                    f"Input({shown(self.shape)}{named}, batched=False)")
        made = f"{type(self.use.node).__name__}" + ("" if self.index is None else f"[{self.index}]")
        return f"Placeholder(output of {made}, shape={shown(self.shape)})"


def Input(shape: Union[int, Sequence[int]], *, name: Optional[str] = None, dtype: Any = np.float64,
          batched: bool = True) -> Placeholder:
    """The placeholder of a graph input: ``shape`` is one sample's shape, without the batch axis.

    The batch axis comes first and may have any size; every other size is
    fixed (a graph is built for one sample shape, so that each node's input
    is checked when the graph is built).  ``dtype`` is the input's dtype in
    the trial forward (``dtype=bool`` for a mask, an integer type for an
    index); ``name`` labels the input in the summary and errors, and keys it
    in a dict of inputs.

    ``batched=False`` makes an input without a batch axis, given whole at
    every call: an attention mask of shape ``(T, T)``, a lookup table.
    ``shape`` is then its whole shape (``()`` for a scalar), the graph adds
    no batch axis, and the check that the inputs share one batch size leaves
    it out.  (An array that is the same at every call is better baked in
    with :func:`Constant`.)
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        sizes = tuple(shape)
    except TypeError:
        raise TypeError(f"Input: shape must be an int or a tuple of ints, got {shape!r}") from None
    if not isinstance(batched, bool):
        raise TypeError(f"Input: batched must be True or False, got {batched!r}")
    for d in sizes:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"Input: shape must hold positive ints ("
                             f"{'one sample, no batch axis' if batched else 'the whole input'}), got {shape!r}")
    if name is not None:
        check_name(name, "an Input's name")
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiub":
        raise TypeError(f"Input: dtype must be a real numeric type, got {dtype}")
    fixed = tuple(int(d) for d in sizes)
    return Placeholder(((None,) if batched else ()) + fixed, dtype, name=name, batched=batched)


def Constant(value: Any, *, name: Optional[str] = None) -> Placeholder:
    """The placeholder of an array baked into the graph: a mask, an index, a fixed table.

    ``Constant(np.tril(np.ones((T, T), dtype=bool)), name="causal")`` can be
    given to any node as an input, as a placeholder is; no batch axis is
    added.  A Graph that uses it holds its own copy as a *buffer*, in its
    own dtype (a boolean mask stays boolean, an index integer): saved and
    loaded with the model's state under ``name`` (default ``constant_<k>`` in
    order of first use), moved with the model to another array library, and
    never trained.  ``name`` must be a Python identifier not used by a node
    of the graph nor by the Graph's own attributes.
    """
    array = np.array(to_numpy(value) if hasattr(value, "__array_namespace__") else value, copy=True)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"Constant: the value must hold real numbers or booleans, got dtype {array.dtype}")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if name is not None:
        check_name(name, "a Constant's name")
    return Placeholder(tuple(array.shape), array.dtype, name=name, batched=False, value=array)


def _trial(node: Node, inputs: Tuple[Placeholder, ...]
           ) -> Tuple[List[Tuple[Optional[int], ...]], List[np.dtype], bool]:
    """Run ``node`` on zeros of the inputs' shapes, at two batch sizes, with ``update_state=False``.

    A Constant runs as its own array.  Returns the output shapes, their
    dtypes and whether the node gives several outputs (a tuple); an axis
    whose size follows the batch size is ``None``.  A node that cannot take the inputs raises its error again
    with the node and the shapes named.  The node is left as it was.
    """
    runs = []
    for batch in _TRIAL_BATCHES:
        arrays = [p.value if p.is_constant else
                  np.zeros(tuple(batch if d is None else d for d in p.shape), dtype=p.dtype) for p in inputs]
        try:
            with np.errstate(all="ignore"):
                y = node.run(*arrays, update_state=False).y
        except (ValueError, TypeError) as error:
            shapes = ", ".join(shown(p.shape) for p in inputs)
            raise type(error)(f"Graph: {node!r} cannot take input of shape {shapes}: {error}") from None
        runs.append(y if isinstance(y, tuple) else (y,))
        multi = isinstance(y, tuple)
    shapes = []
    for first, second in zip(*runs):
        if first.shape == second.shape:
            shapes.append(tuple(first.shape))
        else:
            shapes.append(tuple(None if a != b else a for a, b in zip(first.shape, second.shape)))
    return shapes, [out.dtype for out in runs[0]], multi
