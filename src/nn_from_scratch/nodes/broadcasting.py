r"""Broadcasting and dtype rules shared by the nodes of several inputs (arithmetic, MatMul, Concat, Stack).

Inputs are broadcast as NumPy and torch do: shapes aligned on the right, a
size-1 (or missing) axis stretched.  A broadcast input is *used* several
times, so its gradient is the output gradient summed over every place it was
used (:func:`sum_to_shape`), and the Jacobian of broadcasting is the
identity placed at each use (:func:`broadcast_identity`).  float16 is
computed and summed in float32 (:func:`work_dtype`) and rounded once.

Every function takes the array namespace ``xp`` of the pass (``ctx.xp``) and
works on its arrays and dtypes: NumPy's, ``array_api_strict``'s, CuPy's.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Sequence, Tuple

import numpy as np

__all__ = ["broadcast_identity", "broadcast_shape", "dtype_in", "identity_jacobian", "result_dtype", "sum_to_shape",
           "work_dtype"]


def dtype_in(xp: ModuleType, dtype: Any) -> Any:
    """The dtype of namespace ``xp`` named like the NumPy dtype ``dtype`` (``float32`` is ``xp.float32``)."""
    return dtype if xp is np else getattr(xp, np.dtype(dtype).name)


def work_dtype(xp: ModuleType, dtype: Any) -> Any:
    """The dtype a node computes and accumulates in: float32 for float16 (as torch's CPU kernels), else ``dtype``.

    A namespace without float16 (the array API standard has none) computes in ``dtype`` itself.
    """
    half = getattr(xp, "float16", None)
    return xp.float32 if half is not None and dtype == half else dtype


def broadcast_shape(who: str, *shapes: Tuple[int, ...]) -> Tuple[int, ...]:
    """The broadcast shape of ``shapes``; ``ValueError`` naming every shape when they cannot be broadcast."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError:
        shown = ", ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{who}: input shapes {shown} cannot be broadcast together") from None


def sum_to_shape(xp: ModuleType, g: Any, shape: Tuple[int, ...], dtype: Any = None) -> Any:
    r"""``g`` summed back to ``shape``, the shape it was broadcast from: :math:`\sum` over added and stretched axes.

    The result has ``dtype`` (default ``g.dtype``); float16 is summed in float32 and rounded once.
    """
    dtype = g.dtype if dtype is None else dtype
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return xp.astype(g, dtype, copy=False)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    total = xp.reshape(xp.sum(g, axis=axes, dtype=work_dtype(xp, g.dtype)), shape)
    with np.errstate(over="ignore"):  # a sum past float16's range is inf, as in torch, without a warning
        return xp.astype(total, dtype, copy=False)


def result_dtype(xp: ModuleType, inputs: Sequence[Any]) -> Any:
    """torch's rule for the output dtype: arrays with axes decide; 0-d inputs only when all are 0-d."""
    shaped = [x.dtype for x in inputs if x.ndim > 0]
    return xp.result_type(*(shaped or [x.dtype for x in inputs]))


def identity_jacobian(xp: ModuleType, x_shape: Tuple[int, ...], dtype: Any, y_shape: Any = None) -> Any:
    r"""The Jacobian of a map that keeps every entry in its flat place, :math:`\delta_{ij}`: ``y_shape + x_shape``.

    ``y_shape`` defaults to ``x_shape`` (the identity itself); a reshape gives its output shape.
    """
    x_shape = tuple(x_shape)
    y_shape = x_shape if y_shape is None else tuple(y_shape)
    return xp.reshape(xp.eye(math.prod(x_shape), dtype=dtype), y_shape + x_shape)


def broadcast_identity(xp: ModuleType, x_shape: Tuple[int, ...], y_shape: Tuple[int, ...], dtype: Any) -> Any:
    r"""The Jacobian of broadcasting ``x`` to ``y_shape``: ``J[i..., j...]`` :math:`= \delta_{\operatorname{bcast}(i), j}`."""
    x_shape, y_shape = tuple(x_shape), tuple(y_shape)
    eye = identity_jacobian(xp, x_shape, dtype, (1,) * (len(y_shape) - len(x_shape)) + x_shape)
    return xp.broadcast_to(eye, y_shape + x_shape)
