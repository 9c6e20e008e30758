r"""What a layer and a loss share below their faces: the context calls, derived derivatives, and float16.

:class:`Function` is the machinery under :class:`~nn_from_scratch.node.Node`
and :class:`~nn_from_scratch.criterion.Criterion`, written once for both:

* the **context calls** ``run``, ``backward_from``, ``vjp_from`` and
  ``jacobian_from`` (``docs/architecture.md``, "The Node contract"): a pass
  goes into a new :class:`~nn_from_scratch.context.Context` holding its array
  namespace ``ctx.xp`` and whether it takes the fast engine ``ctx.fast``; a
  pass that may change state runs with the journal that undoes it when the
  call is refused (:func:`~nn_from_scratch.context.refusal_undoes`);
* **one derivative from the other**: :func:`jacobian_from_vjp` builds the dense
  Jacobian one output coordinate at a time, :math:`J_{i\cdot} = J^\top e_i`,
  and :func:`vjp_from_jacobian` contracts ``g`` against the dense Jacobian,
  :math:`J^\top g`, per output and per input (several inputs and outputs
  packed as tuples, a constant input getting None); and the Jacobian with
  respect to a parameter from the parameter gradients,
  :func:`jacobian_from_parameter_grads`;
* **one float16 rule**: a function with ``float16_in_float32 = True`` (the
  losses, the activations, the softmax family) takes float16 inputs, computes
  in float32 and rounds each result (output, gradient, Jacobian) to float16
  once, as torch's CPU kernels do: a float16 sum overflows past 65504 and
  :math:`e^x` underflows below :math:`x = -17`.  :func:`float32_for_half` is
  the same rule for a function of arrays.
"""
from __future__ import annotations

import functools
import threading
from types import ModuleType
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from . import engine
from .engine import threads
from .backend import namespace_of
from .context import Context, KeepsPass, output_grad, record_undo, refusal_undoes

__all__ = ["Function", "InputGrad", "float32_for_half", "input_flags", "jacobian_from_parameter_grads",
           "jacobian_from_vjp", "vjp_from_jacobian"]

Fn = TypeVar("Fn", bound=Callable[..., Any])
#: ``input_grad``: one bool for every input, or one per input (torch's ``needs_input_grad``).
InputGrad = Union[bool, Sequence[bool]]
_HALF = np.dtype(np.float16)


def _is_half(value: Any) -> bool:
    """Whether ``value`` is a NumPy float16 array or scalar (the other namespaces here have no float16)."""
    return isinstance(value, (np.ndarray, np.generic)) and value.dtype == _HALF


# ------------------------------------------------------------------ packing: one part alone, several as a tuple
def _parts(value: Any, count: int) -> Tuple[Any, ...]:
    """``value`` as a tuple of ``count`` parts: a single value when ``count`` is 1, else a tuple of that length."""
    return (value,) if count == 1 else tuple(value)


def _packed(parts: Sequence[Any]) -> Any:
    """The inverse of :func:`_parts`: one part alone, several as a tuple."""
    return parts[0] if len(parts) == 1 else tuple(parts)


def _outputs(ctx: Context) -> Tuple[Any, ...]:
    """The outputs of a pass as a tuple (a tuple ``y``, even of one part, is several outputs)."""
    return ctx.y if isinstance(ctx.y, tuple) else (ctx.y,)


def _packed_outputs(parts: Sequence[Any], ctx: Context) -> Any:
    return tuple(parts) if isinstance(ctx.y, tuple) else parts[0]


# ------------------------------------------------------------------ one derivative from the other
def _unit_gradients(ctx: Context, o: int) -> Iterator[Any]:
    r"""The upstream gradients :math:`e_r` of output ``o``, one per coordinate ``r`` in order (the other outputs
    zero), packed as the pass's outputs are."""
    xp, ys = ctx.xp, _outputs(ctx)
    size = int(np.prod(ys[o].shape))
    for r in range(size):
        basis = xp.reshape(xp.astype(xp.arange(size) == r, ys[o].dtype), ys[o].shape)  # e_r in y_o's shape
        yield _packed_outputs([basis if p == o else xp.zeros_like(other) for p, other in enumerate(ys)], ctx)


def jacobian_from_vjp(vjp: Callable[[Any, Context], Any], ctx: Context, constant_inputs: Sequence[int] = ()) -> Any:
    r"""The dense Jacobian from the VJP, row by row: :math:`J_{i\cdot} = J^\top e_i` for each output coordinate.

    Blocks ``y_o.shape + x_i.shape`` per (output, input), packed as the contract
    says; None for a constant input.
    """
    xp, xs, ys = ctx.xp, ctx.inputs, _outputs(ctx)
    blocks = []
    for o, y in enumerate(ys):
        size = int(np.prod(y.shape))
        rows = [None if i in constant_inputs else xp.zeros((size,) + tuple(x.shape), dtype=_result_dtype(xp, x, y))
                for i, x in enumerate(xs)]
        for r, g in enumerate(_unit_gradients(ctx, o)):
            for row, part in zip(rows, _parts(vjp(g, ctx), len(xs))):
                if row is not None and part is not None:
                    row[r, ...] = part
        blocks.append(_packed([None if row is None else xp.reshape(row, tuple(y.shape) + tuple(x.shape))
                               for row, x in zip(rows, xs)]))
    return _packed_outputs(blocks, ctx)


def jacobian_from_parameter_grads(backward: Callable[[Any, Context], None], ctx: Context, parameter: Any,
                                  parameters: Sequence[Any]) -> Any:
    r"""The Jacobian :math:`\partial y / \partial \theta` of a pass with respect to one parameter, row by row.

    Row :math:`i` is what a backward pass adds into :math:`\theta`'s gradient
    for the upstream gradient :math:`e_i`: :math:`(\partial y/\partial\theta)^\top e_i
    = \partial y_i / \partial \theta`.  ``backward(g, ctx)`` adds the gradients
    of the pass ``ctx`` into the ``parameters`` (the
    :class:`~nn_from_scratch.parameter.Parameter` objects it may touch); each
    of them gets a zeroed scratch gradient meanwhile and its own ``.grad`` (and
    ``fresh_zero``) back afterwards, so the real gradients are left as they
    were.  Blocks ``y_o.shape + θ.shape``, one per output (a tuple for
    several), in the parameter's namespace and dtype.
    """
    xp = namespace_of(parameter.value)
    saved = [(p, p.grad, p.fresh_zero) for p in parameters]
    try:
        for p in parameters:
            p.grad = xp.zeros_like(p.value)
        blocks = []
        for o, y in enumerate(_outputs(ctx)):
            size = int(np.prod(y.shape))
            rows = xp.zeros((size,) + parameter.shape, dtype=parameter.dtype)
            for r, g in enumerate(_unit_gradients(ctx, o)):
                for p in parameters:
                    p.zero_grad()
                backward(g, ctx)
                rows[r, ...] = parameter.grad  # d y_r / d theta
            blocks.append(xp.reshape(rows, tuple(y.shape) + parameter.shape))
    finally:
        for p, grad, fresh in saved:
            p.grad = grad
            p.fresh_zero = fresh
    return _packed_outputs(blocks, ctx)


def vjp_from_jacobian(jacobian: Callable[[Context], Any], g: Any, ctx: Context,
                      constant_inputs: Sequence[int] = ()) -> Any:
    r""":math:`J^\top g` by contracting ``g`` against the dense Jacobian: :math:`\sum_o g_o \cdot J_{o,i}` per input."""
    xp, xs = ctx.xp, ctx.inputs
    count = len(_outputs(ctx))
    full = jacobian(ctx)
    jac = [_parts(block, len(xs)) for block in (tuple(full) if isinstance(ctx.y, tuple) else (full,))]
    gs = g if isinstance(ctx.y, tuple) else (g,)
    dx: List[Any] = []
    for i, x in enumerate(xs):
        terms = [xp.tensordot(gs[o], jac[o][i], axes=gs[o].ndim) for o in range(count)
                 if i not in constant_inputs and jac[o][i] is not None]
        dx.append(xp.astype(functools.reduce(lambda a, b: a + b, terms), x.dtype, copy=False) if terms else None)
    return _packed(dx)


def input_flags(input_grad: InputGrad, count: int, who: str = "backward_from") -> Tuple[bool, ...]:
    """``input_grad`` as one flag per input: a single truth value stands for all ``count`` inputs.

    A tuple or list must hold ``count`` bools (``TypeError`` otherwise,
    ``ValueError`` for the wrong length).
    """
    if not isinstance(input_grad, (tuple, list)):
        return (bool(input_grad),) * count
    if len(input_grad) != count:
        raise ValueError(f"{who}: input_grad holds {len(input_grad)} flags for {count} input"
                         f"{'' if count == 1 else 's'}; give one per input, or one bool for all")
    if not all(isinstance(flag, (bool, np.bool_)) for flag in input_grad):
        raise TypeError(f"{who}: input_grad must hold bools, one per input, got {input_grad!r}")
    return tuple(bool(flag) for flag in input_grad)


def _result_dtype(xp: ModuleType, x: Any, y: Any) -> Any:
    return xp.result_type(x.dtype, y.dtype)


# ------------------------------------------------------------------ float16 computed in float32
def _to_float32(value: Any) -> Any:
    """A float16 input or upstream gradient in float32 (tuples part by part); anything else as it is."""
    if isinstance(value, tuple):
        return tuple(_to_float32(part) for part in value)
    return value.astype(np.float32) if _is_half(value) else value


def _to_half(value: Any) -> Any:
    """A result of the float32 pass rounded to float16 once (tuples part by part; None stays None)."""
    if isinstance(value, tuple):
        return tuple(_to_half(part) for part in value)
    return value.astype(np.float16) if isinstance(value, (np.ndarray, np.generic)) else value


def float32_for_half(function: Fn) -> Fn:
    """Decorator for functions of arrays: run ``function`` in float32 when its first argument is float16, and round
    its array result(s) to float16 once (float16 array arguments after the first are converted too)."""
    @functools.wraps(function)
    def wrapper(x: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_half(x):
            return function(x, *args, **kwargs)
        return _to_half(function(_to_float32(x), *map(_to_float32, args), **kwargs))
    return wrapper  # type: ignore[return-value]


# ------------------------------------------------------------------ the machinery
class Function(KeepsPass):
    """The context calls and the float16 rule that :class:`Node` and :class:`Criterion` share (see the module)."""

    num_inputs: int = 1  # how many inputs ``run`` takes
    constant_inputs: Tuple[int, ...] = ()  # inputs taken as given (indices, masks): no gradient, None
    float16_in_float32: bool = False  # float16 inputs computed in float32, results rounded once

    def run(self, *inputs: Any, update_state: bool = True) -> Context:
        """Check and convert the inputs, then run the forward pass into a new :class:`Context` (kept by the caller).

        ``update_state=False`` leaves the function as it was; with
        ``update_state=True`` a call refused anywhere below puts back what
        it changed.  Bad inputs raise ``ValueError`` (``TypeError`` for the
        wrong number of inputs or non-numbers).
        """
        inputs = self._call_inputs(inputs)
        if update_state:
            return refusal_undoes(lambda: self._pass(inputs, True))
        return self._pass(inputs, False)

    def backward_from(self, ctx: Context, dL_dy: Any, *, input_grad: InputGrad = True) -> Any:
        """Add the parameter gradients of the pass ``ctx`` into ``.grad`` and return the input gradient.

        ``dL_dy`` is checked against ``ctx.y``.  Returns ``dL/dx`` (a tuple,
        one per input, when there are several), or None when ``input_grad`` is false.
        ``input_grad`` may also hold one flag per input (torch's
        ``needs_input_grad``): an input whose flag is false gets None.  The
        hook ``_backward`` sees a single bool when the flags agree and the
        tuple otherwise (:func:`input_flags` reads either); a hook that
        reads it as one truth value computes every input gradient, and the
        unwanted ones are dropped here.
        """
        g = output_grad(dL_dy, ctx.y, type(self).__name__)
        flags = input_flags(input_grad, len(ctx.inputs), type(self).__name__)
        wanted: InputGrad = flags[0] if len(set(flags)) == 1 else flags
        dx = self._on_pass(ctx, lambda c: self._backward(_to_float32(g) if c is not ctx else g, c, wanted))
        if isinstance(wanted, tuple):  # a hook that computed every input gradient: the unwanted ones go
            dx = _packed([part if keep else None for part, keep in zip(_parts(dx, len(flags)), flags)])
        return dx

    def vjp_from(self, ctx: Context, dL_dy: Any) -> Any:
        """The input gradient ``Jᵀ dL_dy`` of the pass ``ctx``; parameter gradients are left untouched."""
        g = output_grad(dL_dy, ctx.y, type(self).__name__)
        return self._on_pass(ctx, lambda c: self._vjp(_to_float32(g) if c is not ctx else g, c))

    def jacobian_from(self, ctx: Context) -> Any:
        """The dense Jacobian of the pass ``ctx``, ``y.shape + x.shape`` (a tuple per input when there are several)."""
        return self._on_pass(ctx, self._jacobian)

    # ------------------------------------------------------------ what a subclass provides
    def _call_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Any, ...]:
        """The inputs of a call as the pass takes them: ``num_inputs`` of them (``TypeError`` otherwise).

        A function of optional inputs (a recurrent layer's initial state)
        overrides it, to take a range of counts.
        """
        if len(inputs) != self.num_inputs:
            raise TypeError(f"{type(self).__name__} takes {self.num_inputs} input{'' if self.num_inputs == 1 else 's'}"
                            f", got {len(inputs)}")
        return inputs

    def _prepare_inputs(self, inputs: Tuple[Any, ...]) -> Tuple[Tuple[Any, ...], dict]:
        """The checked, converted inputs, and extra entries for the context (a loss's target)."""
        raise NotImplementedError

    def _forward(self, *args: Any) -> Any:
        raise NotImplementedError

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return vjp_from_jacobian(self._jacobian, g, ctx, self.constant_inputs)

    def _jacobian(self, ctx: Context) -> Any:
        return jacobian_from_vjp(self._vjp, ctx, self.constant_inputs)

    def _backward(self, g: Any, ctx: Context, input_grad: InputGrad) -> Any:
        return self._vjp(g, ctx) if input_grad else None

    # ------------------------------------------------------------ the pass
    def _pass(self, inputs: Tuple[Any, ...], update_state: bool) -> Context:
        xs, extra = self._prepare_inputs(inputs)
        if not (self.float16_in_float32 and any(_is_half(v) for v in xs)):
            return self._make(xs, update_state, extra)
        inner = self._make(tuple(map(_to_float32, xs)), update_state,
                           {key: _to_float32(value) for key, value in extra.items()})
        ctx = Context(**{**vars(inner), **extra})  # the float16 inputs and extras, as given
        ctx.inputs, ctx.x, ctx.y, ctx.float32_pass = xs, xs[0], _to_half(inner.y), inner
        return ctx

    def _make(self, xs: Tuple[Any, ...], update_state: bool, extra: dict) -> Context:
        xp = namespace_of(*xs)
        fast = xp is np and engine.fast_enabled()
        if fast:
            threads.tick()  # the thread policy reads the room on the machine a few times a second
        ctx = Context(inputs=xs, x=xs[0], update_state=update_state, xp=xp, fast=fast, thread=threading.get_ident(),
                      **extra)
        ctx.y = self._forward(*xs, ctx)
        return ctx

    @staticmethod
    def _on_pass(ctx: Context, face: Callable[[Context], Any]) -> Any:
        """``face`` on the pass ``ctx``: on its float32 pass, rounded to float16 once, when float16 ran in float32."""
        inner: Optional[Context] = getattr(ctx, "float32_pass", None)
        return face(ctx) if inner is None else _to_half(face(inner))

    def _state_will_change(self) -> None:
        """Call in a pass with ``ctx.update_state`` before changing this object's buffers or random generators.

        If a later part of the model refuses the call, the buffers (in place)
        and the generators' states are put back as they were here, so a
        rejected call leaves the model unchanged.  Outside a call that can be
        refused it does nothing.
        """
        buffers = [(b, namespace_of(b).asarray(b, copy=True))
                   for b in (getattr(self, name) for name in vars(self).get("_buffers", ())) if b is not None]
        streams = [(g, g.bit_generator.state) for g in vars(self).values() if isinstance(g, np.random.Generator)]

        def undo() -> None:
            for array, saved in buffers:
                array[...] = saved
            for generator, state in streams:
                generator.bit_generator.state = state
        record_undo(undo)
