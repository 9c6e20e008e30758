r"""Broadcasting and dtype rules shared by the nodes of several inputs (arithmetic, MatMul, Concat, Stack).

Inputs are broadcast as NumPy and torch do: shapes aligned on the right, a
size-1 (or missing) axis stretched.  A broadcast input is *used* several
times, so its gradient is the output gradient summed over every place it was
used (:func:`sum_to_shape`), and the Jacobian of broadcasting is the
identity placed at each use (:func:`broadcast_identity`).  float16 is
computed and summed in float32 (:func:`work_dtype`) and rounded once.
"""
from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np

__all__ = ["broadcast_identity", "broadcast_shape", "result_dtype", "sum_to_shape", "work_dtype"]

_HALF = np.dtype(np.float16)


def work_dtype(dtype: Any) -> np.dtype:
    """The dtype a node computes and accumulates in: float32 for float16 (as torch's CPU kernels), else ``dtype``."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == _HALF else dtype


def broadcast_shape(who: str, *shapes: Tuple[int, ...]) -> Tuple[int, ...]:
    """The broadcast shape of ``shapes``; ``ValueError`` naming every shape when they cannot be broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = ", ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{who}: input shapes {shown} cannot be broadcast together") from None


def sum_to_shape(g: np.ndarray, shape: Tuple[int, ...], dtype: Any = None) -> np.ndarray:
    """``g`` summed back to ``shape``, the shape it was broadcast from (over added and stretched axes).

    The result has ``dtype`` (default ``g.dtype``); float16 is summed in float32 and rounded once.
    """
    dtype = g.dtype if dtype is None else np.dtype(dtype)
    shape = tuple(shape)
    if g.shape == shape:
        return g.astype(dtype, copy=False)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    accumulate = work_dtype(g.dtype)
    total = g.sum(axis=axes, dtype=accumulate).reshape(shape)
    with np.errstate(over="ignore"):  # a sum past float16's range is inf, as in torch, without a warning
        return total.astype(dtype, copy=False)


def result_dtype(inputs: Sequence[np.ndarray]) -> np.dtype:
    """torch's rule for the output dtype: arrays with axes decide; 0-d inputs only when all are 0-d."""
    shaped = [x.dtype for x in inputs if x.ndim > 0]
    return np.result_type(*(shaped or [x.dtype for x in inputs]))


def broadcast_identity(x_shape: Tuple[int, ...], y_shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
    r"""The Jacobian of broadcasting ``x`` to ``y_shape``: ``J[i..., j...]`` :math:`= \delta_{\operatorname{bcast}(i), j}`."""
    size = int(np.prod(x_shape, dtype=np.int64))
    eye = np.eye(size, dtype=dtype).reshape((1,) * (len(y_shape) - len(x_shape)) + tuple(x_shape) + tuple(x_shape))
    return np.broadcast_to(eye, tuple(y_shape) + tuple(x_shape))
