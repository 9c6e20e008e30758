r"""float16 computed in float32 and rounded once, as torch's CPU kernels do.

A float16 sum overflows past 65504, :math:`x^3` overflows for :math:`|x| > 40`,
:math:`e^{x}` underflows for :math:`x < -17` and a constant like
``negative_slope = 0.01`` is off by 0.1 %.  So the parameter-free nodes
(activations, the softmax family) and their functions take a float16 input,
compute in float32 and round each result (output, input gradient, Jacobian)
to float16 once: :func:`half_in_float32` for node classes,
:func:`float32_for_half` for functions of arrays.  Every other dtype runs the
code untouched.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Type, TypeVar

import numpy as np

from ..node import Context, Node

__all__ = ["float32_for_half", "half_in_float32"]

NodeType = TypeVar("NodeType", bound=Type[Node])
Function = TypeVar("Function", bound=Callable[..., Any])
_HALF = np.dtype(np.float16)


def _single(value: Any) -> Any:
    return value.astype(np.float32) if isinstance(value, np.ndarray) and value.dtype == _HALF else value


def _derivative_face(method: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Wrap ``method(self, *arrays, ctx)``: for a float16 pass, run it on the float32 context and round once."""
    @functools.wraps(method)
    def face(self: Node, *args: Any) -> np.ndarray:
        ctx = args[-1]
        full = getattr(ctx, "float32_pass", None)
        if full is None:
            return method(self, *args)
        inner = Context(**vars(ctx))
        inner.x, inner.y = full
        inner.float32_pass = None  # derivative faces called from this one must not round in between
        return method(self, *map(_single, args[:-1]), inner).astype(np.float16)
    return face


def half_in_float32(cls: NodeType) -> NodeType:
    """Class decorator for parameter-free nodes: float16 input is computed in float32, as torch's CPU kernels do.

    ``_forward`` sees the input as float32 (``ctx.x`` too) and its output is
    rounded to float16; the derivative faces (``_vjp``, ``_jacobian``,
    ``_derivative``, ``_row_jacobian``) then run on that float32 context,
    with a float32 upstream gradient, and their results are rounded to
    float16 once.  Every other dtype runs the node's own code untouched.
    """
    forward = cls._forward

    @functools.wraps(forward)
    def _forward(self: Node, x: np.ndarray, ctx: Context) -> np.ndarray:
        if x.dtype != _HALF:
            return forward(self, x, ctx)
        single = x.astype(np.float32)
        ctx.x = single
        y = forward(self, single, ctx)
        ctx.x, ctx.float32_pass = x, (single, y)
        return y.astype(np.float16)

    cls._forward = _forward
    for name in ("_vjp", "_jacobian", "_derivative", "_row_jacobian"):
        method = getattr(cls, name, None)
        if method is not None:
            setattr(cls, name, _derivative_face(method))
    return cls


def float32_for_half(function: Function) -> Function:
    """Decorator for functions of arrays: run ``function`` in float32 when its first argument is float16, and round
    its array result(s) to float16 once (float16 array arguments after the first are converted too)."""
    @functools.wraps(function)
    def wrapper(x: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        if x.dtype != np.float16:
            return function(x, *args, **kwargs)
        args = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a for a in args)
        result = function(x.astype(np.float32), *args, **kwargs)
        if isinstance(result, tuple):
            return tuple(r.astype(np.float16) for r in result)
        return result.astype(np.float16)
    return wrapper  # type: ignore[return-value]
