r"""Normalisation of each sample's channels, alone or in groups: GroupNorm and InstanceNorm2d (torch semantics).

Both standardise, per sample, groups of channels over their spatial
values, then scale and shift each channel (a per-channel :math:`\gamma`
and :math:`\beta`, as BatchNorm's): InstanceNorm2d is GroupNorm with one
channel per group, plus torch's optional running statistics.  The math is
:class:`~nn_from_scratch.nodes.standardization.RowStandardizer`'s, with the
rows of a sample's ``(G, m)`` view; the parameter gradients are BatchNorm's
per-channel sums (:func:`~nn_from_scratch.nodes.regularization.channel_sum`).
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..context import Context
from ..parameter import Parameter
from .broadcasting import dtype_in
from .linear import positive_sizes
from .regularization import channel_dot, channel_sum
from .standardization import RowStandardizer, blend_running, check_momentum

__all__ = ["GroupNorm", "InstanceNorm2d"]


class _ChannelNorm(RowStandardizer):
    """What GroupNorm and InstanceNorm2d share: per-channel parameters, over an ``(N, C, L)`` view of the input."""

    def __init__(self, num_channels: int, eps: float, affine: bool, bias: bool, dtype: Any) -> None:
        super().__init__(eps, dtype)
        self.affine = bool(affine)
        if self.affine:
            self.weight = Parameter(np.ones(num_channels, dtype=self.dtype))
            if bias:
                self.bias = Parameter(np.zeros(num_channels, dtype=self.dtype))

    def _per_feature(self, xp: ModuleType, value: Any) -> Any:
        return value[:, None]

    def _feature_sum(self, a: Any, ctx: Context) -> Any:
        return channel_sum(a, ctx)  # over (N, L), as BatchNorm's

    def _feature_dot(self, a: Any, b: Any, ctx: Context) -> Any:
        return channel_dot(a, b, ctx)


class GroupNorm(_ChannelNorm):
    r"""Group normalisation of ``(N, C, *)`` input, as ``torch.nn.GroupNorm``.

    The :math:`C` channels of each sample fall into ``num_groups`` groups
    :math:`G` of :math:`C/G` consecutive channels; each group's
    :math:`m = (C/G)\,L` values (:math:`L` the product of the trailing axes)
    are standardised with their own mean :math:`\mu` and biased variance
    :math:`\sigma^2`, :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`, then each
    channel :math:`c` is scaled and shifted:

    .. math::
        \hat x = (x - \mu)\,s, \qquad y_{n,c,l} = \gamma_c\,\hat x_{n,c,l} + \beta_c, \qquad
        \frac{\partial L}{\partial x} = s\Big(\hat g - \operatorname{mean}(\hat g)
            - \hat x \operatorname{mean}(\hat g \odot \hat x)\Big),

    the means over the group's :math:`m` values, :math:`\hat g_{n,c,l} = \gamma_c g_{n,c,l}`;
    :math:`\partial L/\partial\gamma_c = \sum_{n,l} g \odot \hat x` and
    :math:`\partial L/\partial\beta_c = \sum_{n,l} g`.  Training and eval
    are the same.  ``affine=False`` has no parameters, ``bias=False``
    (keyword, as torch's) no :math:`\beta`; ``weight`` and ``bias`` are
    ``(C,)``, torch's keys.  ``num_channels`` must be a multiple of
    ``num_groups``.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 bias: bool = True, dtype: Any = np.float64) -> None:
        self.num_groups, self.num_channels = positive_sizes(num_groups=num_groups, num_channels=num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"num_channels ({self.num_channels}) must be divisible by num_groups ({self.num_groups})")
        super().__init__(self.num_channels, eps, affine, bias, dtype)

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_groups", "num_channels", "eps", "affine", "dtype",
                              bias=not self.affine or self.bias is not None)

    def _affine_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape[0], shape[1], math.prod(shape[2:])

    def _check_input(self, x: Any) -> None:
        if x.ndim < 2:
            raise ValueError(f"GroupNorm expects input of shape (N, C, *) with at least 2 axes, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) expects {self.num_channels} "
                             f"channels on axis 1, got {x.shape[1]} (input shape {tuple(x.shape)})")

    def _rows_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        return shape[0] * self.num_groups, self.num_channels // self.num_groups * math.prod(shape[2:])

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(_ChannelNorm):
    r"""Instance normalisation of ``(N, C, H, W)`` (or ``(C, H, W)``) images per sample and channel, as torch's.

    Each channel of each sample is standardised over its :math:`m = H W`
    pixels, with their mean :math:`\mu` and biased variance :math:`\sigma^2`,
    :math:`s = 1/\sqrt{\sigma^2 + \varepsilon}`:

    .. math::
        \hat x = (x - \mu)\,s, \qquad y_{n,c} = \gamma_c\,\hat x_{n,c} + \beta_c, \qquad
        \frac{\partial L}{\partial x} = s\Big(\hat g - \operatorname{mean}(\hat g)
            - \hat x \operatorname{mean}(\hat g \odot \hat x)\Big), \quad \hat g = \gamma_c\, g,

    means over the :math:`H W` pixels; :math:`\partial L/\partial\gamma_c = \sum_{n,h,w} g \odot \hat x`,
    :math:`\partial L/\partial\beta_c = \sum_{n,h,w} g` (``affine=True``;
    the default has no parameters, as torch's).

    ``track_running_stats=True`` keeps ``running_mean`` and ``running_var``
    (and ``num_batches_tracked``, torch's keys) as torch does: at a training
    forward pass, with :math:`f` = ``momentum``,
    :math:`\mu_\text{run} \leftarrow (1 - f)\mu_\text{run} + f \operatorname{mean}_n \mu_{n,c}` and
    :math:`\sigma^2_\text{run} \leftarrow (1 - f)\sigma^2_\text{run}
    + f \operatorname{mean}_n \sigma^2_{n,c}\frac{m}{m - 1}`;
    in eval mode they stand in for the statistics, which are then constants
    (:math:`\partial L/\partial x = \gamma_c s\, g`).  As in torch,
    ``momentum=None`` leaves them where they are (torch passes it on as 0)
    and ``num_batches_tracked`` stays 0.  Training needs more than one pixel
    per channel; an empty batch leaves the running statistics alone (torch
    makes them NaN).  ``bias=False`` (keyword, as torch's) drops :math:`\beta`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = False,
                 track_running_stats: bool = False, *, bias: bool = True, dtype: Any = np.float64) -> None:
        (self.num_features,) = positive_sizes(num_features=num_features)
        self.momentum = check_momentum(momentum)
        super().__init__(self.num_features, eps, affine, bias, dtype)
        self.track_running_stats = bool(track_running_stats)
        tracked = self.track_running_stats
        self.register_buffer("running_mean", np.zeros(self.num_features, dtype=self.dtype) if tracked else None)
        self.register_buffer("running_var", np.ones(self.num_features, dtype=self.dtype) if tracked else None)
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64) if tracked else None)

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_features", "eps", "momentum", "affine", "track_running_stats", "dtype",
                              bias=not self.affine or self.bias is not None)

    def _check_input(self, x: Any) -> None:
        if x.ndim not in (3, 4):
            raise ValueError(f"InstanceNorm2d expects input of shape (N, {self.num_features}, H, W) or "
                             f"({self.num_features}, H, W), got {x.ndim}-d input of shape {tuple(x.shape)}")
        if x.shape[-3] != self.num_features:
            raise ValueError(f"InstanceNorm2d({self.num_features}) expects {self.num_features} channels, got "
                             f"{x.shape[-3]} (input shape {tuple(x.shape)})")
        if (self.training or not self.track_running_stats) and x.shape[-1] * x.shape[-2] == 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {tuple(x.shape)}")

    def _rows_shape(self, shape: Tuple[int, ...]) -> Tuple[int, int]:
        return math.prod(shape[:-2]), shape[-1] * shape[-2]

    def _affine_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return math.prod(shape[:-3]), self.num_features, shape[-1] * shape[-2]  # an unbatched image is N = 1

    def _fixed_statistics(self, xp: ModuleType, ctx: Context) -> Optional[Tuple[Any, Any]]:
        if self.training or not self.track_running_stats:
            return None
        n, c = math.prod(ctx.x.shape[:-3]), self.num_features
        mean, var = (xp.reshape(xp.broadcast_to(xp.astype(b, dtype_in(xp, self._compute)), (n, c)), (n * c, 1))
                     for b in (self.running_mean, self.running_var))
        return mean, var  # each channel's running statistics, for every sample's row of it

    def _statistics_seen(self, xp: ModuleType, mean: Any, var: Any, ctx: Context) -> None:
        if not (ctx.update_state and self.training and self.track_running_stats) or 0 in ctx.x.shape:
            return  # a batch without values leaves them alone (torch makes them NaN for an empty batch)
        self._state_will_change()  # a call refused later in the model puts the statistics back
        m, c = ctx.m, self.num_features
        rate = xp.asarray(0.0 if self.momentum is None else self.momentum, dtype=mean.dtype)  # f; None is 0, as torch
        blend_running(self.running_mean, xp.mean(xp.reshape(mean, (-1, c)), axis=0), rate)
        blend_running(self.running_var, xp.mean(xp.reshape(var, (-1, c)), axis=0) * (m / (m - 1)), rate)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")
