r"""Regularisation layers: inverted Dropout and BatchNorm1d (torch semantics, state-dict keys included)."""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from ..node import Context, ElementwiseNode, Node
from ..parameter import Parameter
from ..random import as_generator

__all__ = ["BatchNorm1d", "Dropout"]


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
            return self.rng.random(shape) >= self.p
        state = self.rng.bit_generator.state
        try:
            return self.rng.random(shape) >= self.p
        finally:
            self.rng.bit_generator.state = state

    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        if not self.training or self.p == 0:
            ctx.mask_scale = None
            return x
        t = x.dtype.type
        if self.p == 1:
            ctx.mask_scale = np.zeros_like(x)
        else:
            keep = self._draw_mask(x.shape, ctx.update_state)
            ctx.mask_scale = keep.astype(x.dtype) * t(1 / (1 - self.p))
        return x * ctx.mask_scale

    def _derivative(self, ctx: Context) -> np.ndarray:
        return np.ones_like(ctx.x) if ctx.mask_scale is None else ctx.mask_scale

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        return g if ctx.mask_scale is None else g * ctx.mask_scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Node):
    r"""Batch normalisation over the batch (and length) axes of ``(N, C)`` or ``(N, C, L)`` input, as ``torch.nn.BatchNorm1d``.

    For each channel :math:`c`, over its :math:`m = N` (or :math:`N L`) values,
    with :math:`\mu`, :math:`\sigma^2` the mean and the *biased* variance:

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
    ``bias.grad``).  In eval mode the running statistics stand in for
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
    input gradient comes back in the input's dtype.
    """

    _buffer_names: Tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")

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
        if not (isinstance(eps, (int, float, np.integer, np.floating)) and eps >= 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        if momentum is not None and not isinstance(momentum, (int, float, np.integer, np.floating)):
            raise TypeError(f"momentum must be a number or None, got {momentum!r}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a floating type, got {dtype}")
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        self.dtype = dtype
        self.weight: Optional[Parameter] = None
        self.bias: Optional[Parameter] = None
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        if self.track_running_stats:
            self.running_mean = np.zeros(self.num_features, dtype=dtype)
            self.running_var = np.ones(self.num_features, dtype=dtype)
            self.num_batches_tracked = np.array(0, dtype=np.int64)
        else:
            self._buffer_names = ()  # torch keeps no buffers then
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked (in place, as torch)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _axes(ndim: int) -> Tuple[int, ...]:
        return (0,) if ndim == 2 else (0, 2)

    @staticmethod
    def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
        """Broadcast a ``(C,)`` vector against ``(N, C)`` or ``(N, C, L)``."""
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim not in (2, 3):
            raise ValueError(
                f"BatchNorm1d expects input of shape (N, {self.num_features}) or (N, {self.num_features}, L), "
                f"got {x.ndim}-d input of shape {x.shape}"
            )
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm1d({self.num_features}) expects {self.num_features} features on axis 1, "
                f"got {x.shape[1]} (input shape {x.shape})"
            )

    # ---------------------------------------------------------------- faces
    def _forward(self, x: np.ndarray, ctx: Context) -> np.ndarray:
        t = self.dtype.type
        xc = x.astype(self.dtype, copy=False)
        axes, nd = self._axes(x.ndim), x.ndim
        m = x.size // self.num_features
        ctx.batch_stats = self.training or not self.track_running_stats
        ctx.m = m
        if ctx.batch_stats:
            if m <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training, got input size {x.shape} "
                    f"({m} value{'s' if m != 1 else ''} per channel)"
                )
            mean = xc.mean(axis=axes)
            centered = xc - self._per_channel(mean, nd)
            var = np.mean(centered * centered, axis=axes)
            if ctx.update_state and self.training and self.track_running_stats:
                self._update_running_stats(mean, var, m)
        else:
            centered = xc - self._per_channel(self.running_mean, nd)
            var = self.running_var
        ctx.inv_std = t(1) / np.sqrt(var + t(self.eps))
        ctx.x_hat = centered * self._per_channel(ctx.inv_std, nd)
        if not self.affine:
            return ctx.x_hat
        return ctx.x_hat * self._per_channel(self.weight.value, nd) + self._per_channel(self.bias.value, nd)

    def _update_running_stats(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        t = self.dtype.type
        self.num_batches_tracked += 1
        factor = t(1 / int(self.num_batches_tracked)) if self.momentum is None else t(self.momentum)
        unbiased = var * t(m / (m - 1))
        self.running_mean[...] = factor * mean + (t(1) - factor) * self.running_mean
        self.running_var[...] = factor * unbiased + (t(1) - factor) * self.running_var

    def _scale(self, ctx: Context) -> np.ndarray:
        r""":math:`\gamma s` per channel."""
        return ctx.inv_std * self.weight.value if self.affine else ctx.inv_std

    def _vjp(self, g: np.ndarray, ctx: Context) -> np.ndarray:
        nd = g.ndim
        g = g.astype(self.dtype, copy=False)
        g_hat = g * self._per_channel(self.weight.value, nd) if self.affine else g
        if not ctx.batch_stats:
            dx = g_hat * self._per_channel(ctx.inv_std, nd)
        else:
            axes = self._axes(nd)
            mean_g = self._per_channel(g_hat.mean(axis=axes), nd)
            mean_gx = self._per_channel(np.mean(g_hat * ctx.x_hat, axis=axes), nd)
            dx = self._per_channel(ctx.inv_std, nd) * (g_hat - mean_g - ctx.x_hat * mean_gx)
        return dx.astype(ctx.x.dtype, copy=False)

    def _accumulate_grads(self, g: np.ndarray, ctx: Context) -> None:
        if not self.affine:
            return
        axes = self._axes(g.ndim)
        g = g.astype(self.dtype, copy=False)
        self.weight.grad += np.sum(g * ctx.x_hat, axis=axes)
        self.bias.grad += np.sum(g, axis=axes)

    def _jacobian(self, ctx: Context) -> np.ndarray:
        x = ctx.x
        n, c = x.shape[0], x.shape[1]
        length = x.shape[2] if x.ndim == 3 else 1
        scale = self._scale(ctx)  # (C,)
        full = np.zeros((n, c, length, n, c, length), dtype=self.dtype)
        channels = np.arange(c)
        eye = np.eye(n * length, dtype=self.dtype).reshape(n, length, n, length)
        if ctx.batch_stats:
            t = self.dtype.type
            x_hat = ctx.x_hat.reshape(n, c, length).transpose(1, 0, 2)  # (C, N, L)
            outer = x_hat[:, :, :, None, None] * x_hat[:, None, None, :, :]
            blocks = eye[None] - (t(1) + outer) / t(ctx.m)
        else:
            blocks = np.broadcast_to(eye, (c, n, length, n, length))
        # advanced indices on axes 1 and 4 put the channel axis first: (C, N, L, N, L)
        full[:, channels, :, :, channels, :] = scale[:, None, None, None, None] * blocks
        return full.reshape(ctx.y.shape + x.shape)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )
