r"""Gradient clipping, as ``torch.nn.utils.clip_grad_norm_`` and ``clip_grad_value_``: the gradients changed in place.

Both work on the gradients the backward pass accumulated in each
Parameter's ``grad``, between ``backward`` and the optimizer's ``step``
(``fit(..., clip_grad_norm=...)`` does it there), in the gradients' array
namespace.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, List

import numpy as np

from ..parameter import Parameter
from .arguments import as_scalar
from .base import checked_namespace
from .vectors import Parameters, common_namespace, parameter_list

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _real(name: str, value: Any, *, allow_inf: bool) -> float:
    value = as_scalar(value)
    if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf"):  # torch's float(norm_type)
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    result = float(value)
    if math.isnan(result) or (math.isinf(result) and not allow_inf):
        raise ValueError(f"Invalid {name}: {value!r}")
    return result


def _gradients(parameters: Parameters, what: str) -> List[Any]:
    params = parameter_list(parameters, what)
    for i, p in enumerate(params):
        checked_namespace(what, i, p)
    return params


def vector_norm(x: Any, ord: float, xp: Any) -> Any:
    r"""The :math:`p`-norm of ``x`` as one vector, a 0-d array: :math:`(\sum_i |x_i|^p)^{1/p}`; max/min of
    :math:`|x_i|` for :math:`p = \pm\infty`, the count of non-zeros for :math:`p = 0` (torch's ``vector_norm``)."""
    linalg = getattr(xp, "linalg", None)
    if linalg is not None and hasattr(linalg, "vector_norm"):
        return linalg.vector_norm(x, ord=ord)
    a = xp.abs(xp.reshape(x, (-1,)))
    if ord == math.inf:
        return xp.max(a)
    if ord == -math.inf:
        return xp.min(a)
    if ord == 0:
        return xp.astype(xp.sum(xp.astype(a != 0, a.dtype)), a.dtype)
    return xp.sum(a**ord) ** (1.0 / ord)


def clip_grad_norm_(parameters: Parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Any:
    r"""Scale every gradient so that, as one vector, their norm is at most ``max_norm``; return that norm before.

    With :math:`G = \lVert(\lVert g_1\rVert_p, \dots, \lVert g_k\rVert_p)\rVert_p`
    (the ``norm_type`` :math:`p` norm of all the gradients together, as
    torch forms it: the norm of the per-parameter norms), each gradient
    becomes

    .. math::
        g_i \leftarrow g_i \cdot \min\!\left(1, \frac{\text{max\_norm}}{G + 10^{-6}}\right)

    and :math:`G` is returned as a 0-d array of the gradients' namespace and
    (widest) dtype, as torch returns a 0-d tensor.  A non-finite :math:`G`
    scales the gradients to NaN, as torch's; with ``error_if_nonfinite`` it
    raises ``RuntimeError`` (torch's error) and changes nothing.  Gradients
    with no numbers add nothing; with none at all :math:`G = 0`.
    """
    params = _gradients(parameters, "clip_grad_norm_")
    max_norm = _real("max_norm", max_norm, allow_inf=True)
    if max_norm < 0:
        raise ValueError(f"Invalid max_norm: {max_norm!r} (must be >= 0)")
    norm_type = _real("norm_type", norm_type, allow_inf=True)
    grads = [p.grad for p in params if math.prod(p.grad.shape) > 0]
    if not grads:
        return np.asarray(0.0)
    xp = common_namespace(grads, "clip_grad_norm_")
    dtype = xp.result_type(*[g.dtype for g in grads])
    norms = [xp.astype(vector_norm(g, norm_type, xp), dtype) for g in grads]
    total = vector_norm(xp.stack(norms), norm_type, xp)
    if error_if_nonfinite and not math.isfinite(float(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
                           "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
                           "anyway, set `error_if_nonfinite=False`")
    coefficient = max_norm / (total + 1e-6)
    factor = float(xp.minimum(coefficient, xp.asarray(1.0, dtype=coefficient.dtype)))
    if factor != 1.0:  # (a factor of one leaves every gradient as it is)
        for p in params:
            grad = p.edit_grad()
            grad *= factor
    return total


def clip_grad_value_(parameters: Parameters, clip_value: float) -> None:
    r"""Clip every gradient entry into :math:`[-c, c]`, ``clip_value`` :math:`= c \ge 0`, in place (NaN stays NaN)."""
    params: List[Parameter] = _gradients(parameters, "clip_grad_value_")
    clip_value = _real("clip_value", clip_value, allow_inf=True)
    if clip_value < 0:
        raise ValueError(f"Invalid clip_value: {clip_value!r} (must be >= 0)")
    for p in params:
        xp = checked_namespace("clip_grad_value_", 0, p)
        clipped = xp.clip(p.grad, -clip_value, clip_value)
        p.edit_grad()[...] = clipped
