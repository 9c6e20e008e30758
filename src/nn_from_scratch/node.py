r"""The Node contract: every layer, activation and container is a Node.

A node maps its input :math:`x` to an output :math:`y = f(x)`.

Faces (what a user calls)
-------------------------
``forward(x)``
    returns :math:`y` and keeps what ``backward`` needs (the *pending* context).
``backward(dL_dy, reset_after=True, *, input_grad=True)``
    returns the vector-Jacobian product
    :math:`\frac{\partial L}{\partial x_j} = \sum_i \frac{\partial L}{\partial y_i}\,
    \frac{\partial y_i}{\partial x_j}`, that is :math:`J^\top g`, with the shape
    of :math:`x`, and *adds* the gradients of the node's parameters into their
    ``.grad`` (they accumulate until ``zero_grad()``); ``input_grad=False``
    skips :math:`J^\top g` and returns None.
``jacobian(x=None)``
    the dense Jacobian of shape ``y.shape + x.shape`` with
    ``J[i..., j...]`` :math:`= \partial y_i / \partial x_j` (the layout of
    ``torch.autograd.functional.jacobian``), at the pending pass or at ``x``.
``evaluate(x)``
    :math:`f(x)`, keeping nothing and changing no state.  ``reset()`` drops the pending pass.

Context calls (what containers, losses, the trainer and gradcheck use)
----------------------------------------------------------------------
A caller that keeps its own passes (a container keeps one per child) never
touches a child's private methods; it uses::

    ctx = node.run(*inputs, update_state=True)   # checked inputs -> a new Context: ctx.inputs, ctx.x, ctx.y
    dx  = node.backward_from(ctx, dL_dy, input_grad=True)  # adds parameter gradients, returns dL/dx
    dx  = node.vjp_from(ctx, dL_dy)              # dL/dx only, parameters untouched
    J   = node.jacobian_from(ctx)                # y.shape + x.shape
    node.pending                                 # the Context of the last forward, or None (read-only)

``update_state=False`` leaves the node as it was (no running statistics, no
random draw kept).  A node may take ``k`` inputs (``num_inputs``) and give
several outputs: ``run(a, b)`` calls ``_forward(a, b, ctx)``; the gradients
and Jacobians then come as tuples, one per input (a single array when
``k = 1``), a Jacobian block per (output, input) pair with shape
``y_o.shape + x_i.shape`` (outputs outer, inputs inner); several outputs come
as a tuple ``y`` and take a tuple ``dL_dy``.  An input listed in
``constant_inputs`` (an index array, a mask) is taken as given and gets None.

Writing a node (the hooks)
--------------------------
Subclass :class:`Node` and define ``_forward(self, x, ctx)``, which returns
``y`` and may store on ``ctx`` anything the derivative needs (``ctx.x``,
``ctx.inputs`` and ``ctx.y`` are filled in for you).  Then define one or both
derivative faces; the base class derives the missing one:

* ``_jacobian(self, ctx)`` -- the dense Jacobian :math:`J`.  With only this,
  the VJP is :math:`J^\top g` by contracting ``g`` against it (correct, but it
  builds the whole matrix: fine for teaching, slow for training).
* ``_vjp(self, g, ctx)`` -- the fast vector-Jacobian product :math:`J^\top g`.
  With only this, ``J`` is built one output coordinate at a time,
  :math:`J_{i\cdot} = J^\top e_i`.

A node with parameters also defines ``_accumulate_grads(self, g, ctx)``, which
adds :math:`\partial L/\partial\theta = (\partial y/\partial\theta)^\top g`
into each ``Parameter.grad``: input and parameter gradients are kept apart,
as in Torch7's ``nn``.  A layer whose two gradients share work (Conv2d,
BatchNorm) overrides the one fused hook ``_backward(self, g, ctx, input_grad)``
(default: ``_accumulate_grads`` then ``_vjp`` when ``input_grad``, else None).
``_check_input(self, *inputs)`` raises ``ValueError`` for inputs the node
cannot take; state saved with the model is declared with
``self.register_buffer(name, array)``.  :class:`RowwiseNode` and
:class:`ElementwiseNode` are shortcuts for functions applied to each row of
the last axis, or to each element.  A layer defines hooks only: the faces and
the context calls above are the base class's.

Threads
-------
A node keeps one pending pass, from ``forward`` to ``backward``, and it
belongs to the thread that ran the forward.  While that thread runs, a
``forward``, ``backward`` or ``jacobian()`` from another thread raises
:class:`ConcurrentUseError` rather than mix two threads' passes: train one
copy of a model (``copy.deepcopy``) per thread.  ``evaluate(x)``,
``jacobian(x)`` and the context calls keep no pass and may run in several
threads at once.

Losses are not nodes: a loss is a :class:`Criterion`, a function of a
prediction and a target, which containers refuse.

The tree a node heads (``children``, ``named_nodes``, ``named_parameters``,
``parameters``, buffers, ``state_dict``, ``train``/``eval``) is
:class:`~nn_from_scratch.node_tree.NodeTree`, which every Node is.
"""
from __future__ import annotations

import threading
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from .context import ConcurrentUseError, Context, KeepsPass, as_float_array, output_grad, record_undo, refusal_undoes
from .node_tree import NodeTree

ShapeLike = Union[None, int, Sequence[Optional[int]]]

__all__ = ["ConcurrentUseError", "Context", "Criterion", "GraphValue", "Node", "RowwiseNode", "ElementwiseNode",
           "as_float_array"]


def _normalize_shape(shape: ShapeLike) -> Optional[Tuple[Optional[int], ...]]:
    if shape is None:
        return None
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    result = tuple(None if d is None else int(d) for d in shape)
    if any(d is not None and d < 1 for d in result):
        raise ValueError(f"input_shape must hold positive sizes (or None for any size), got {shape}")
    return result


def _overrides(node: "Node", name: str, base: type) -> bool:
    """Whether the node's class redefines ``name`` below ``base``."""
    return getattr(type(node), name) is not getattr(base, name)


def _parts(value: Any, count: int) -> Tuple[Any, ...]:
    """``value`` as a tuple of ``count`` parts: a single value when ``count`` is 1, else a tuple of that length."""
    return (value,) if count == 1 else tuple(value)


def _packed(parts: Sequence[Any]) -> Any:
    """The inverse of :func:`_parts`: one part alone, several as a tuple."""
    return parts[0] if len(parts) == 1 else tuple(parts)


def _outputs(ctx: Context) -> Tuple[np.ndarray, ...]:
    return ctx.y if isinstance(ctx.y, tuple) else (ctx.y,)


def _per_output(value: Any, ctx: Context) -> Tuple[Any, ...]:
    """``value`` (a gradient or Jacobian) as one part per output: a tuple ``y``, even of one part, has a tuple."""
    return tuple(value) if isinstance(ctx.y, tuple) else (value,)


def _packed_outputs(parts: Sequence[Any], ctx: Context) -> Any:
    """The inverse of :func:`_per_output`: a tuple when ``y`` is a tuple (even of one output), else the one part."""
    return tuple(parts) if isinstance(ctx.y, tuple) else parts[0]


class GraphValue:
    """A value of a graph under construction: a node called on one records the call instead of computing.

    The placeholders of the functional Graph (``containers/graph.py``)
    subclass it; :meth:`Node.__call__` hands the call to :meth:`apply`.
    """

    __slots__ = ()

    def apply(self, node: "Node", inputs: Tuple[Any, ...], name: Optional[str]) -> Any:
        """Record ``node(*inputs)`` and return the placeholder(s) of its output."""
        raise NotImplementedError


class Node(KeepsPass, NodeTree):
    """Abstract base class of all layers; see the module docstring for the contract."""

    _derivative_hooks: Tuple[str, ...] = ("_jacobian", "_vjp")
    num_inputs: int = 1  # how many inputs ``run``/``forward`` take (``_forward(a, b, ctx)`` for 2)
    constant_inputs: Tuple[int, ...] = ()  # inputs taken as given (indices, masks): no gradient, None

    def __init__(self, input_shape: ShapeLike = None) -> None:
        base = next(c for c in type(self).__mro__ if "_derivative_hooks" in vars(c))
        if not any(_overrides(self, hook, base) for hook in base._derivative_hooks):
            raise TypeError(
                f"{type(self).__name__} must define one of {', '.join(base._derivative_hooks)}"
                " to give its derivative"
            )
        self.input_shape = _normalize_shape(input_shape)
        self.training = True
        self._ctx: Optional[Context] = None

    # ------------------------------------------------------------------ faces
    def forward(self, x: Any, *more: Any) -> Any:
        """Compute ``y = f(x)`` and keep what ``backward`` needs.

        The kept pass belongs to the calling thread: while that thread runs,
        ``forward``, ``backward`` and ``jacobian()`` from another thread raise
        :class:`ConcurrentUseError` instead of mixing two threads' passes
        (train one copy of a model per thread).  ``evaluate`` and
        ``jacobian(x)`` keep no pass and may run in several threads at once.
        """
        return self._keep(lambda: self.run(x, *more)).y

    def __call__(self, x: Any, *more: Any, name: Optional[str] = None) -> Any:
        """``forward(x, ...)`` on arrays; on graph placeholders, the call is recorded instead of computed.

        Called on a :class:`GraphValue` (``containers.graph.Input(...)`` and
        what a node called on one returns), the node computes nothing and
        returns the placeholder of its output (a tuple of them for several
        outputs), from which ``Graph(inputs=..., outputs=...)`` is built.
        ``name`` names the node in that graph (its ``state_dict`` prefix) and
        is taken only with placeholders.
        """
        if isinstance(x, GraphValue) or (more and any(isinstance(value, GraphValue) for value in more)):
            first = next(value for value in (x,) + more if isinstance(value, GraphValue))
            return first.apply(self, (x,) + more, name)
        if name is not None:
            raise TypeError(f"{type(self).__name__}: name= is taken only when the node is called on graph placeholders")
        return self.forward(x, *more)

    def backward(self, dL_dy: Any, reset_after: bool = True, *, input_grad: bool = True) -> Any:
        """Return ``dL/dx`` = Jᵀ·dL_dy for the last forward, and accumulate parameter gradients.

        ``reset_after=False`` keeps the cached forward so that backward can
        run again with another ``dL_dy``.  ``input_grad=False`` skips
        ``dL/dx`` (and returns None) when only the parameter gradients are
        wanted, as in a training step: a model then stops its backward pass
        at its first node with parameters, which saves that node's input
        gradient (for a first Linear layer, a third of its work).
        """
        dx = self.backward_from(self._require_ctx("backward"), dL_dy, input_grad=input_grad)
        if reset_after:
            self.reset()
        return dx

    def jacobian(self, x: Any = None, *more: Any) -> Any:
        """The dense Jacobian ``dy/dx`` of shape ``y.shape + x.shape``.

        With ``x`` omitted it is taken at the cached forward pass (the same
        dropout mask, the same batch statistics).  A pending backward is never
        disturbed.
        """
        if x is None and not more:
            return self.jacobian_from(self._require_ctx("jacobian"))
        return self.jacobian_from(self.run(x, *more, update_state=False))

    def evaluate(self, x: Any, *more: Any) -> Any:
        """``f(x)`` without caching it and without changing the node's state."""
        return self.run(x, *more, update_state=False).y

    # --------------------------------------------------------- context calls
    def run(self, *inputs: Any, update_state: bool = True) -> Context:
        """Check and convert the inputs, then run the forward pass into a new :class:`Context`.

        The node's pending pass is left alone: the caller keeps the context
        (``ctx.inputs``, ``ctx.x`` = ``ctx.inputs[0]``, ``ctx.y``) and hands it
        back to :meth:`backward_from`, :meth:`vjp_from` or :meth:`jacobian_from`.
        ``update_state=False`` leaves the node as it was.  Bad inputs raise
        ``ValueError`` (``TypeError`` for the wrong number of inputs or non-numbers).
        """
        if len(inputs) != self.num_inputs:
            raise TypeError(
                f"{type(self).__name__} takes {self.num_inputs} input{'' if self.num_inputs == 1 else 's'}, "
                f"got {len(inputs)}"
            )
        if update_state:  # a pass refused anywhere in the model puts back the state changed before the refusal
            return refusal_undoes(lambda: self._run_checked(inputs, True))
        return self._run_checked(inputs, False)

    def _run_checked(self, inputs: Tuple[Any, ...], update_state: bool) -> Context:
        if self.num_inputs == 1:
            return self._run(self._prepare_input(inputs[0]), update_state)
        xs = tuple(
            np.asarray(value) if i in self.constant_inputs else as_float_array(value, f"input {i}")
            for i, value in enumerate(inputs)
        )
        self._check_shape(xs[0])
        self._check_input(*xs)
        ctx = Context(inputs=xs, x=xs[0], update_state=update_state, thread=threading.get_ident())
        ctx.y = self._forward(*xs, ctx)
        return ctx

    def backward_from(self, ctx: Context, dL_dy: Any, *, input_grad: bool = True) -> Any:
        """Add the parameter gradients of the pass ``ctx`` into ``.grad`` and return the input gradient.

        ``dL_dy`` is checked against ``ctx.y`` (its shape; a tuple for several
        outputs).  Returns ``dL/dx`` (a tuple, one per input, when there are
        several), or None when ``input_grad`` is false.
        """
        return self._backward(self._prepare_output_grad(dL_dy, ctx.y), ctx, bool(input_grad))

    def vjp_from(self, ctx: Context, dL_dy: Any) -> Any:
        """The input gradient ``Jᵀ dL_dy`` of the pass ``ctx``; parameter gradients are left untouched."""
        return self._vjp(self._prepare_output_grad(dL_dy, ctx.y), ctx)

    def jacobian_from(self, ctx: Context) -> Any:
        """The dense Jacobian of the pass ``ctx``, ``y.shape + x.shape`` (a tuple per input when there are several)."""
        return self._jacobian(ctx)

    # ------------------------------------------------------ extension points
    def _forward(self, x: np.ndarray, ctx: Context) -> Any:
        raise NotImplementedError

    def _jacobian(self, ctx: Context) -> Any:
        """Default: build J row by row from the VJP, ``J[i] = Jᵀ e_i`` (per output, per input)."""
        xs, ys = ctx.inputs, _outputs(ctx)
        blocks = []
        for o, y in enumerate(ys):
            rows = [None if i in self.constant_inputs else np.empty((y.size,) + x.shape, dtype=np.result_type(x, y))
                    for i, x in enumerate(xs)]
            basis = np.zeros(y.size, dtype=y.dtype)
            g = [basis.reshape(y.shape) if p == o else np.zeros_like(other) for p, other in enumerate(ys)]
            for r in range(y.size):
                basis[r] = 1
                for row, part in zip(rows, _parts(self._vjp(_packed_outputs(g, ctx), ctx), len(xs))):
                    if row is not None:
                        row[r] = 0 if part is None else part
                basis[r] = 0
            blocks.append(_packed([None if row is None else row.reshape(y.shape + x.shape)
                                   for row, x in zip(rows, xs)]))
        return _packed_outputs(blocks, ctx)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        """Default: contract ``g`` against the dense Jacobian, ``Σ_o g_o · J[o][i]`` for each input i."""
        xs, ys = ctx.inputs, _outputs(ctx)
        jac = [_parts(block, len(xs)) for block in _per_output(self._jacobian(ctx), ctx)]
        gs = _per_output(g, ctx)
        dx: List[Optional[np.ndarray]] = []
        for i, x in enumerate(xs):
            terms = [np.tensordot(gs[o], jac[o][i], axes=gs[o].ndim) for o in range(len(ys)) if jac[o][i] is not None]
            dx.append(None if not terms else sum(terms[1:], terms[0]).astype(x.dtype, copy=False))
        return _packed(dx)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        """Add ``dL/dθ`` into each parameter's ``.grad``; nothing to do without parameters."""

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Any:
        """The fused backward step: accumulate the parameter gradients, then return the input gradient.

        Default: ``_accumulate_grads(g, ctx)`` then ``_vjp(g, ctx)`` when ``input_grad`` (else None).
        A layer whose two gradients share work (Conv2d, BatchNorm) overrides this one hook.
        """
        self._accumulate_grads(g, ctx)
        return self._vjp(g, ctx) if input_grad else None

    def _check_input(self, x: np.ndarray, *more: np.ndarray) -> None:
        """Raise ``ValueError`` for inputs this node cannot take (beyond ``input_shape``)."""

    def _state_will_change(self) -> None:
        """Call in a pass with ``ctx.update_state`` before changing the node's buffers or random generators.

        If a later node of the model refuses the call, the buffers (in place)
        and the generators' states are put back as they were here, so a
        rejected call leaves the model unchanged.  Outside a call that can be
        refused it does nothing.
        """
        buffers = [(b, b.copy()) for b in (getattr(self, name) for name in vars(self).get("_buffers", ()))
                   if b is not None]
        streams = [(g, g.bit_generator.state) for g in vars(self).values() if isinstance(g, np.random.Generator)]

        def undo() -> None:
            for array, saved in buffers:
                array[...] = saved
            for generator, state in streams:
                generator.bit_generator.state = state
        record_undo(undo)

    # ------------------------------------------------------------ machinery
    def _run(self, x: np.ndarray, update_state: bool, **extra: Any) -> Context:
        """One checked input into a new Context (``run`` for one input)."""
        ctx = Context(inputs=(x,), x=x, update_state=update_state, thread=threading.get_ident(), **extra)
        ctx.y = self._forward(x, ctx)
        return ctx

    def _check_shape(self, x: np.ndarray) -> None:
        expected = self.input_shape
        if expected is not None and (
            x.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, x.shape))
        ):
            shown = tuple("any" if e is None else e for e in expected)
            raise ValueError(
                f"{type(self).__name__} expects input of shape {shown}, got {x.shape}"
            )

    def _prepare_input(self, x: Any) -> np.ndarray:
        x = as_float_array(x, "x")
        self._check_shape(x)
        self._check_input(x)
        return x

    def _prepare_output_grad(self, dL_dy: Any, y: Any) -> Any:
        return output_grad(dL_dy, y, type(self).__name__)

    def extra_repr(self) -> str:
        return "" if self.input_shape is None else f"input_shape={self.input_shape}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


from .criterion import Criterion  # noqa: E402  (the loss protocol; containers refuse it)
from .node_shortcuts import ElementwiseNode, RowwiseNode  # noqa: E402  (they build on Node)
