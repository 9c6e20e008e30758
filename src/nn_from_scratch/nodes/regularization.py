r"""Regularisation layers: inverted Dropout, BatchNorm1d and BatchNorm2d (torch semantics, state-dict keys included)."""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..context import Context
from ..engine import channels
from ..node import Node
from ..node_shortcuts import ElementwiseNode
from ..parameter import Parameter
from ..random import as_generator
from .broadcasting import dtype_in
from .standardization import (Grouping, blend_running, check_eps, layer_dtypes, moments, standardize,
                              standardized_vjp)

__all__ = ["BatchNorm1d", "BatchNorm2d", "Dropout"]


class Dropout(ElementwiseNode):
    r"""Inverted dropout: in training, zero each entry with probability :math:`p` and scale the rest by :math:`1/(1-p)`.

    With a mask :math:`m_k \sim \text{Bernoulli}(1 - p)` drawn at each forward pass:

    .. math::
        y_k = \frac{m_k\, x_k}{1 - p}, \qquad
        \frac{\partial y_k}{\partial x_l} = \delta_{kl}\,\frac{m_k}{1 - p}, \qquad
        J^\top g = g \odot \frac{m}{1 - p}.

    In eval mode (and for :math:`p = 0`) it is the identity, :math:`J = I`.
    :math:`p = 1` drops everything: the output is :math:`0 \cdot x` and the
    gradient zero, with no division by zero.  The expected output equals
    :math:`x`, so nothing needs rescaling at test time.

    The mask lives on the forward pass's context, so ``backward`` and
    ``jacobian()`` use the very mask of that forward pass.  ``rng`` is a
    ``numpy.random.Generator`` (shared, its state advances) or an integer
    seed (the same seed gives the same masks bit for bit).

    ``evaluate(x)`` and ``jacobian(x)`` in training mode must not change the
    node: they apply the mask the *next* forward pass would draw, without
    advancing the generator.  For gradient checks in training mode,
    :meth:`fix_mask` pins a mask that every pass then uses.
    """

    def __init__(self, p: float = 0.5, *, rng: Any = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"dropout probability p must be a real number, got {p!r}")
        if not 0 <= p <= 1:  # also rejects NaN
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = as_generator(rng)
        self._fixed_mask: Optional[np.ndarray] = None

    def config(self) -> Dict[str, Any]:
        return self._config_of("p")

    def fix_mask(self, mask: Optional[Any]) -> None:
        """Use ``mask`` (true = keep) in every training pass instead of drawing one; ``None`` draws again."""
        if mask is None:
            self._fixed_mask = None
            return
        mask = np.asarray(mask)
        if mask.dtype.kind not in "biu" or not np.all((mask == 0) | (mask == 1)):
            raise ValueError("Dropout.fix_mask: the mask must hold booleans (or 0/1)")
        self._fixed_mask = mask.astype(bool)

    def _draw_mask(self, shape: Tuple[int, ...], update_state: bool) -> np.ndarray:
        if self._fixed_mask is not None:
            if self._fixed_mask.shape != shape:
                raise ValueError(
                    f"Dropout: the fixed mask has shape {self._fixed_mask.shape}, the input {shape}"
                )
            return self._fixed_mask
        if update_state:
            self._state_will_change()  # a call refused later in the model puts the stream back
            return self.rng.random(shape) >= self.p
        state = self.rng.bit_generator.state
        try:
            return self.rng.random(shape) >= self.p
        finally:
            self.rng.bit_generator.state = state

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        if not self.training or self.p == 0:
            ctx.mask_scale = None
            return x
        if self.p == 1:
            ctx.mask_scale = xp.zeros_like(x)
        else:  # the mask is drawn by the NumPy generator, then moved to the input's namespace
            keep = xp.asarray(self._draw_mask(tuple(x.shape), ctx.update_state))
            ctx.mask_scale = xp.astype(keep, x.dtype) * (1 / (1 - self.p))  # m / (1 - p)
        return x * ctx.mask_scale

    def _derivative(self, ctx: Context) -> Any:
        return ctx.xp.ones_like(ctx.x) if ctx.mask_scale is None else ctx.mask_scale

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return g if ctx.mask_scale is None else g * ctx.mask_scale  # Jᵀ g = g ⊙ m / (1 - p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def channel_sum(a: Any, ctx: Context) -> Any:
    r""":math:`\sum` over each channel's :math:`m` values (every axis but 1) of a flat ``(N, C)`` or ``(N, C, L)``."""
    if ctx.fast:
        return channels.channel_sum(a)  # the rows summed by a matrix-vector product
    return ctx.xp.sum(a, axis=(0, 2) if a.ndim == 3 else 0)


def channel_dot(a: Any, b: Any, ctx: Context) -> Any:
    r""":math:`\sum a \odot b` over each channel's :math:`m` values of two flat arrays."""
    if ctx.fast:
        return channels.channel_dot(a, b)  # without the product as a temporary
    return channel_sum(a * b, ctx)


class _BatchNorm(Node):
    r"""Batch normalisation per channel (axis 1), shared by :class:`BatchNorm1d` and :class:`BatchNorm2d`.

    For each channel :math:`c`, over its :math:`m` values (all axes but axis 1:
    :math:`m = N`, :math:`N L` or :math:`N H W`), with :math:`\mu`, :math:`\sigma^2`
    the mean and the *biased* variance:

    .. math::
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
        y = \gamma\,\hat x + \beta.

    In training mode :math:`\mu` and :math:`\sigma^2` are the batch's, and the
    gradient runs through them too (sums over the channel's :math:`m` values,
    :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`):

    .. math::
        \frac{\partial y_i}{\partial x_j} = \frac{\gamma s}{m}\big(m\,\delta_{ij} - 1 - \hat x_i \hat x_j\big), \qquad
        \frac{\partial L}{\partial x} = \frac{s}{m}\Big(m\,\hat g - \sum \hat g - \hat x \sum \hat g \odot \hat x\Big),
        \quad \hat g = \gamma\, g,

    and, in both modes, :math:`\partial L/\partial\gamma = \sum g \odot \hat x`,
    :math:`\partial L/\partial\beta = \sum g` (added into ``weight.grad`` and
    ``bias.grad`` with :meth:`~nn_from_scratch.parameter.Parameter.accumulate`).  In eval mode the running statistics stand in for
    :math:`\mu, \sigma^2`, which are then constants: :math:`J = \operatorname{diag}(\gamma s)`.

    Running statistics (as torch): at each training forward pass,
    ``num_batches_tracked += 1`` and, with :math:`f` = ``momentum`` (or
    :math:`1/\text{num\_batches\_tracked}` when ``momentum is None``, a
    cumulative average), :math:`\mu_\text{run} \leftarrow (1 - f)\mu_\text{run} + f\mu`
    and :math:`\sigma^2_\text{run} \leftarrow (1 - f)\sigma^2_\text{run} + f\,\sigma^2 \frac{m}{m - 1}`
    (the *unbiased* variance).  ``jacobian(x)`` and ``evaluate(x)`` leave
    them alone.  With ``track_running_stats=False`` there are no running
    statistics and batch statistics are used in both modes.

    ``weight``/``bias`` (:math:`\gamma`/:math:`\beta`, ones/zeros) and the
    buffers ``running_mean``, ``running_var``, ``num_batches_tracked`` carry
    torch's state-dict keys.  Like :class:`~nn_from_scratch.nodes.Linear`,
    the layer computes in its own ``dtype``: inputs are cast to it, and the
    input gradient comes back in the input's dtype.  A float16 layer keeps
    float16 parameters, buffers and output but computes in float32, as
    torch does (its sums over the batch would overflow float16).

    Internally every input is seen as ``(N, C)`` or, when there are trailing
    axes, as ``(N, C, L)`` with :math:`L` their product (a free reshape), so
    per-channel vectors broadcast along a long contiguous last axis.  The
    per-channel sums :math:`\sum` are :func:`channel_sum` and
    :func:`channel_dot`: ``xp.sum`` over the axes ``(0, 2)`` on the textbook
    path, matrix products on the fast one (:mod:`nn_from_scratch.engine.channels`).
    The standardisation and its derivative are the ones every normalisation
    layer shares (:mod:`nn_from_scratch.nodes.standardization`), with the
    channels as the groups.
    A subclass only names the input layouts it accepts (``_layouts``).
    """

    _layouts: Tuple[str, ...] = ()  # accepted input shapes, "(N, C, ...)" with C written as {c}

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float64,
    ) -> None:
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        eps = check_eps(eps)
        if momentum is not None and not isinstance(momentum, (int, float, np.integer, np.floating)):
            raise TypeError(f"momentum must be a number or None, got {momentum!r}")
        # float16 statistics are computed in float32, as torch does: a float16 sum overflows past 65504
        dtype, self._compute = layer_dtypes(dtype)
        super().__init__()
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = dtype
        self.weight: Optional[Parameter] = None
        self.bias: Optional[Parameter] = None
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        tracked = self.track_running_stats  # without running statistics the buffers are None (torch keeps none)
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype) if tracked else None)
        self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype) if tracked else None)
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64) if tracked else None)

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_features", "eps", "momentum", "affine", "track_running_stats", "dtype")

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked (in place, as torch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _flat(xp: ModuleType, a: Any) -> Any:
        """``a`` as ``(N, C)`` when it has no trailing axes of size > 1, else as ``(N, C, L)``."""
        if a.ndim == 2:
            return a
        n, c = a.shape[0], a.shape[1]
        length = math.prod(a.shape[2:])
        return xp.reshape(a, (n, c) if length == 1 else (n, c, length))

    @staticmethod
    def _unflat(xp: ModuleType, a: Any, shape: Tuple[int, ...], dtype: Any) -> Any:
        """A flat array back in the input's ``shape``, in ``dtype``: the inverse of :meth:`_flat`."""
        if tuple(a.shape) != tuple(shape):
            a = xp.reshape(a, tuple(shape))
        return xp.astype(a, dtype, copy=False)

    def _grouping(self, ndim: int, ctx: Context) -> Grouping:
        """The channels as the groups of :mod:`~nn_from_scratch.nodes.standardization`."""
        return Grouping(lambda a: channel_sum(a, ctx), lambda a, b: channel_dot(a, b, ctx),
                        lambda v: self._per_channel(v, ndim))

    @staticmethod
    def _per_channel(v: Any, ndim: int) -> Any:
        """Broadcast a ``(C,)`` vector against a flat ``(N, C)`` or ``(N, C, L)`` array."""
        return v if ndim == 2 else v[:, None]

    def _check_input(self, x: Any) -> None:
        name, c = type(self).__name__, self.num_features
        if x.ndim not in {layout.count(",") + 1 for layout in self._layouts}:
            shapes = " or ".join(layout.format(c=c) for layout in self._layouts)
            raise ValueError(f"{name} expects input of shape {shapes}, got {x.ndim}-d input of shape {x.shape}")
        if x.shape[1] != c:
            raise ValueError(f"{name}({c}) expects {c} features on axis 1, got {x.shape[1]} (input shape {x.shape})")

    # ---------------------------------------------------------------- faces
    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        compute = dtype_in(xp, self._compute)
        xf = self._flat(xp, xp.astype(x, compute, copy=False))  # (N, C) or (N, C, L)
        nd = xf.ndim
        grouping = self._grouping(nd, ctx)
        m = math.prod(x.shape) // self.num_features
        ctx.batch_stats = self.training or not self.track_running_stats
        ctx.m = m
        if ctx.batch_stats:
            if m <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)} "
                    f"({m} value{'s' if m != 1 else ''} per channel)"
                )
            mean, centered, var = moments(xf, m, grouping)  # μ = Σ x / m, x − μ, σ² = Σ (x − μ)² / m
            if ctx.update_state and self.training and self.track_running_stats:
                self._update_running_stats(xp, mean, var, m)
        else:
            centered = xf - self._per_channel(xp.astype(self.running_mean, compute, copy=False), nd)
            var = xp.astype(self.running_var, compute, copy=False)
        ctx.inv_std, ctx.x_hat = standardize(xp, centered, var, self.eps, grouping)  # s = 1/√(σ² + ε), x̂ = (x − μ)s
        y = ctx.x_hat
        if self.affine:
            y = ctx.x_hat * self._per_channel(self.weight.value, nd)  # y = γ x̂ + β
            y += self._per_channel(self.bias.value, nd)
        return self._unflat(xp, y, x.shape, dtype_in(xp, self.dtype))

    def _update_running_stats(self, xp: ModuleType, mean: Any, var: Any, m: int) -> None:
        self._state_will_change()  # a call refused later in the model puts the statistics back
        self.num_batches_tracked += 1
        rate = 1 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
        factor = xp.asarray(rate, dtype=mean.dtype)  # f, in the computing dtype
        blend_running(self.running_mean, mean, factor)
        blend_running(self.running_var, var * (m / (m - 1)), factor)  # the unbiased variance

    def _scale(self, ctx: Context) -> Any:
        r""":math:`\gamma s` per channel."""
        return ctx.inv_std * self.weight.value if self.affine else ctx.inv_std

    def _flat_grad(self, g: Any, ctx: Context) -> Any:
        """``g`` flat, ``(N, C)`` or ``(N, C, L)``, in the computing dtype."""
        return self._flat(ctx.xp, ctx.xp.astype(g, dtype_in(ctx.xp, self._compute), copy=False))

    def _grad_sums(self, g: Any, ctx: Context) -> Tuple[Any, Any, Any]:
        r"""The flat ``g``, :math:`\sum g` and :math:`\sum g \odot \hat x` per channel."""
        gf = self._flat_grad(g, ctx)
        return gf, channel_sum(gf, ctx), channel_dot(gf, ctx.x_hat, ctx)

    def _input_grad(self, gf: Any, sum_g: Optional[Any], sum_gx: Optional[Any], ctx: Context) -> Any:
        r"""``dL/dx`` = :math:`\frac{\gamma s}{m}(m g - \sum g - \hat x \sum g \odot \hat x)`, or :math:`\gamma s g` in eval."""
        xp, nd = ctx.xp, gf.ndim
        scale = self._scale(ctx)
        dx = gf * self._per_channel(scale, nd)
        if ctx.batch_stats:  # γ is constant over a channel: folded into k = γ s / m, with the sums of g
            dx = standardized_vjp(dx, ctx.x_hat, scale / ctx.m, sum_g, sum_gx, self._grouping(nd, ctx))
        return self._unflat(xp, dx, ctx.x.shape, ctx.x.dtype)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if ctx.batch_stats:
            return self._input_grad(*self._grad_sums(g, ctx), ctx)
        return self._input_grad(self._flat_grad(g, ctx), None, None, ctx)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        if self.affine:
            _, sum_g, sum_gx = self._grad_sums(g, ctx)
            self.weight.accumulate(sum_gx)  # dL/dγ = Σ g ⊙ x̂
            self.bias.accumulate(sum_g)  # dL/dβ = Σ g

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        """``_accumulate_grads`` then ``_vjp``, computing the per-channel sums they share once."""
        if not (self.affine and ctx.batch_stats):
            return super()._backward(g, ctx, input_grad)
        gf, sum_g, sum_gx = self._grad_sums(g, ctx)
        self.weight.accumulate(sum_gx)
        self.bias.accumulate(sum_g)
        return self._input_grad(gf, sum_g, sum_gx, ctx) if input_grad else None

    def _jacobian(self, ctx: Context) -> Any:
        r"""Per channel :math:`\gamma s B`, :math:`B = I - (1 + \hat x \hat x^\top)/m` (training) or :math:`I`; 0 across."""
        xp, x = ctx.xp, ctx.x
        n, c = x.shape[0], x.shape[1]
        length = math.prod(x.shape[2:])
        eye = xp.reshape(xp.eye(n * length, dtype=dtype_in(xp, self._compute)), (1, n, length, n, length))
        if ctx.batch_stats:
            x_hat = xp.permute_dims(xp.reshape(ctx.x_hat, (n, c, length)), (1, 0, 2))  # (C, N, L)
            outer = xp.reshape(x_hat, (c, n, length, 1, 1)) * xp.reshape(x_hat, (c, 1, 1, n, length))
            blocks = eye - (1 + outer) / ctx.m
        else:
            blocks = xp.broadcast_to(eye, (c, n, length, n, length))
        scaled = xp.reshape(self._scale(ctx), (c, 1, 1, 1, 1)) * blocks  # (C, N, L, N, L)
        placed = xp.reshape(xp.permute_dims(scaled, (1, 0, 2, 3, 4)), (n, c, length, n, 1, length))
        same_channel = xp.reshape(xp.eye(c) != 0, (1, c, 1, 1, c, 1))
        full = xp.where(same_channel, placed, xp.zeros_like(placed))  # channels do not mix
        return xp.astype(xp.reshape(full, tuple(ctx.y.shape) + tuple(x.shape)), dtype_in(xp, self.dtype))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    r"""Batch normalisation over the batch (and length) axes of ``(N, C)`` or ``(N, C, L)`` input, as ``torch.nn.BatchNorm1d``.

    Per channel :math:`c`, over its :math:`m = N` (or :math:`N L`) values,

    .. math::
        y = \gamma\,\frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}} + \beta, \qquad
        \frac{\partial L}{\partial x} = \frac{\gamma s}{m}\Big(m\, g - \sum g - \hat x \sum g \odot \hat x\Big)
        \ \text{(training)}, \qquad
        \frac{\partial L}{\partial x} = \gamma s\, g \ \text{(eval)},

    with :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`.  Modes, running
    statistics, parameters, state-dict keys and dtype handling are those of
    :class:`_BatchNorm`, whose docstring derives the formulas.
    """

    _layouts = ("(N, {c})", "(N, {c}, L)")


class BatchNorm2d(_BatchNorm):
    r"""Batch normalisation of ``(N, C, H, W)`` images per channel, as ``torch.nn.BatchNorm2d``.

    Per channel :math:`c`, over its :math:`m = N H W` values (the statistics
    are reduced over the axes ``(0, 2, 3)``),

    .. math::
        y_{n,c,h,w} = \gamma_c\,\frac{x_{n,c,h,w} - \mu_c}{\sqrt{\sigma_c^2 + \varepsilon}} + \beta_c, \qquad
        \frac{\partial L}{\partial x} = \frac{\gamma s}{m}\Big(m\, g - \sum g - \hat x \sum g \odot \hat x\Big)
        \ \text{(training)}, \qquad
        \frac{\partial L}{\partial x} = \gamma s\, g \ \text{(eval)},

    with :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}` and the sums over the
    channel's :math:`m` values; :math:`\partial L/\partial\gamma = \sum g \odot \hat x`,
    :math:`\partial L/\partial\beta = \sum g`.  Modes, running statistics
    (unbiased variance, ``momentum=None`` for a cumulative average),
    parameters, state-dict keys (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``, loadable into torch) and dtype
    handling are those of :class:`BatchNorm1d` (see :class:`_BatchNorm`).
    """

    _layouts = ("(N, {c}, H, W)",)
