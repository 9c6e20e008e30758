r"""Normalisation over each sample's trailing axes: LayerNorm and RMSNorm (torch semantics and state-dict keys)."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..context import Context
from ..engine import normalization as kernels
from ..parameter import Parameter
from .linear import positive_sizes
from .standardization import RowStandardizer

__all__ = ["LayerNorm", "RMSNorm"]

ShapeLike = Union[int, Sequence[int]]


def _normalized_shape(value: Any) -> Tuple[int, ...]:
    """torch's ``normalized_shape``: an int or a sequence of ints, each positive."""
    sizes = (value,) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got {value!r}") from None
    return positive_sizes(**{f"normalized_shape[{i}]": size for i, size in enumerate(sizes)})


class _TrailingNorm(RowStandardizer):
    """What LayerNorm and RMSNorm share: the rows are the trailing ``normalized_shape`` of each sample, and
    each of their values has its own weight (and bias)."""

    def __init__(self, normalized_shape: ShapeLike, eps: Optional[float], elementwise_affine: bool, bias: bool,
                 dtype: Any) -> None:
        super().__init__(eps, dtype)
        self.normalized_shape = _normalized_shape(normalized_shape)
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=self.dtype))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=self.dtype))

    @property
    def _size(self) -> int:
        return math.prod(self.normalized_shape)

    def _check_input(self, x: Any) -> None:
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"{type(self).__name__}: given normalized_shape={list(self.normalized_shape)}, expected "
                             f"input with shape [*, {', '.join(map(str, self.normalized_shape))}], but got input of "
                             f"shape {tuple(x.shape)}")

    def _rows_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        return math.prod(shape) // self._size, self._size

    def _affine_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return self._rows_shape(shape)

    def _per_feature(self, xp: ModuleType, value: Any) -> Any:
        return xp.reshape(value, (self._size,))

    def _feature_sum(self, a: Any, ctx: Context) -> Any:
        return ctx.xp.sum(a, axis=0)  # over the rows

    # ---------------------------------------------------------------- the fast path: the engine's row blocks
    def _forward(self, x: Any, ctx: Context) -> Any:
        if not ctx.fast:
            return super()._forward(x, ctx)
        ctx.m, ctx.batch_stats = self._size, True
        ctx.rows = np.ascontiguousarray(x.reshape(self._rows_shape(x.shape)), dtype=self._compute)
        weight, bias = (None if p is None else p.value.reshape(-1) for p in (self.weight, self.bias))
        y, ctx.mean, ctx.inv_std = kernels.standardize_rows(ctx.rows, self._eps, weight, bias, self.centered)
        return y.reshape(x.shape).astype(self.dtype, copy=False)  # x_hat is made again when needed

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Any:
        if not ctx.fast:
            return super()._backward(g, ctx, input_grad)
        return self._fast_backward(g, ctx, input_grad, True)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return self._fast_backward(g, ctx, True, False) if ctx.fast else super()._vjp(g, ctx)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        if not ctx.fast:
            super()._accumulate_grads(g, ctx)
        else:
            self._fast_backward(g, ctx, False, True)

    def _fast_backward(self, g: Any, ctx: Context, input_grad: bool, params: bool) -> Any:
        rows = np.ascontiguousarray(g.reshape(ctx.rows.shape), dtype=self._compute)
        weight = None if self.weight is None else self.weight.value.reshape(-1)
        dx, d_weight, d_bias = kernels.standardized_rows_backward(
            rows, ctx.rows, ctx.mean, ctx.inv_std, weight, self.centered, input_grad=input_grad,
            weight_grad=params and self.weight is not None, bias_grad=params and self.bias is not None)
        if d_weight is not None:
            self.weight.accumulate(d_weight.reshape(self.normalized_shape))
        if d_bias is not None:
            self.bias.accumulate(d_bias.reshape(self.normalized_shape))
        return None if dx is None else dx.reshape(ctx.x.shape).astype(ctx.x.dtype, copy=False)

    def _jacobian(self, ctx: Context) -> Any:
        if ctx.fast:
            ctx.x_hat = kernels.standardized_rows(ctx.rows, ctx.mean, ctx.inv_std, self.centered)
        return super()._jacobian(ctx)


class LayerNorm(_TrailingNorm):
    r"""Layer normalisation over the last ``len(normalized_shape)`` axes, as ``torch.nn.LayerNorm``.

    On one sample ``x`` of shape ``normalized_shape`` (:math:`m` values),
    with its mean :math:`\mu`, its biased variance :math:`\sigma^2` and
    :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`; ``weight`` :math:`\gamma`
    and ``bias`` :math:`\beta` of shape ``normalized_shape``:

    .. math::
        \hat x = (x - \mu)\,s, \qquad y = \gamma \odot \hat x + \beta, \qquad
        \frac{\partial y_i}{\partial x_j} = \gamma_i\, s\Big(\delta_{ij} - \frac{1 + \hat x_i \hat x_j}{m}\Big),

    .. math::
        \frac{\partial L}{\partial x} = s\Big(\hat g - \operatorname{mean}(\hat g)
            - \hat x \operatorname{mean}(\hat g \odot \hat x)\Big), \quad \hat g = \gamma \odot g, \qquad
        \frac{\partial L}{\partial \gamma} = \sum_n g \odot \hat x, \qquad \frac{\partial L}{\partial \beta} = \sum_n g,

    the means over the sample's :math:`m` values, the parameter sums over
    the samples (every leading axis).  The statistics are the sample's own in
    training and in eval mode alike.  ``elementwise_affine=False`` has no
    parameters (:math:`\gamma = 1, \beta = 0`), ``bias=False`` no
    :math:`\beta`; ``weight`` and ``bias`` carry torch's keys and layout.
    The layer computes in its own ``dtype`` (see
    :class:`~nn_from_scratch.nodes.standardization.RowStandardizer`).

    The fast path (NumPy arrays, the engine on) runs the same formulas over
    cache-sized blocks of rows on a few threads
    (:mod:`nn_from_scratch.engine.normalization`), its sums in another
    order: the two paths agree to rounding.
    """

    def __init__(self, normalized_shape: ShapeLike, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, dtype: Any = np.float64) -> None:
        super().__init__(normalized_shape, eps, elementwise_affine, bias, dtype)

    def config(self) -> Dict[str, Any]:
        return self._config_of("normalized_shape", "eps", "elementwise_affine", "dtype",
                              bias=not self.elementwise_affine or self.bias is not None)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(_TrailingNorm):
    r"""Root-mean-square normalisation over the last ``len(normalized_shape)`` axes, as ``torch.nn.RMSNorm``.

    On one sample ``x`` of shape ``normalized_shape`` (:math:`m` values),
    ``weight`` :math:`\gamma` of that shape, and
    :math:`r = 1/\sqrt{\operatorname{mean}(x^2) + \varepsilon}`:

    .. math::
        \hat x = x\,r, \qquad y = \gamma \odot \hat x, \qquad
        \frac{\partial y_i}{\partial x_j} = \gamma_i\, r\Big(\delta_{ij} - \frac{\hat x_i \hat x_j}{m}\Big),

    .. math::
        \frac{\partial L}{\partial x} = r\Big(\hat g - \hat x \operatorname{mean}(\hat g \odot \hat x)\Big),
        \quad \hat g = \gamma \odot g, \qquad
        \frac{\partial L}{\partial \gamma} = \sum_n g \odot \hat x:

    LayerNorm's formulas without the mean.  ``eps=None`` (torch's default)
    is the machine epsilon of the dtype the layer computes in
    (``np.finfo(dtype).eps``; float32 for a float16 layer, as torch).  No
    bias; ``elementwise_affine=False`` has no weight either.
    """

    centered = False

    def __init__(self, normalized_shape: ShapeLike, eps: Optional[float] = None, elementwise_affine: bool = True,
                 *, dtype: Any = np.float64) -> None:
        super().__init__(normalized_shape, eps, elementwise_affine, False, dtype)

    def config(self) -> Dict[str, Any]:
        return self._config_of("normalized_shape", "eps", "elementwise_affine", "dtype")

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
