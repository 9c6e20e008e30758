r"""Positional embeddings: learned (a table of positions) and sinusoidal (Vaswani et al., 2017), added to the input.

Both add a vector per position :math:`t` to every sample's :math:`x_t`,
``(N, T, E)`` (``batch_first=True``, the default), ``(T, N, E)`` or
unbatched ``(T, E)``:

.. math::
    y_{n,t} = x_{n,t} + p_t, \qquad \frac{\partial y}{\partial x} = I, \qquad
    \frac{\partial L}{\partial p_t} = \sum_n g_{n,t}.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np

from ..backend import numpy_dtype
from ..context import Context
from ..node import Node
from ..parameter import Parameter
from ..random import as_generator
from .attention import check_flag
from .linear import float_dtype, positive_sizes

__all__ = ["LearnedPositionalEmbedding", "SinusoidalPositionalEncoding"]


class _AddPositions(Node):
    """What both share: the shape checks and :math:`y = x + p_{:T}` along the time axis."""

    def __init__(self, num_positions: int, embedding_dim: int, batch_first: bool) -> None:
        super().__init__()
        self.num_positions, self.embedding_dim = positive_sizes(num_positions=num_positions,
                                                                embedding_dim=embedding_dim)
        self.batch_first = check_flag(type(self).__name__, batch_first, "batch_first")

    def _time_axis(self, x: Any) -> int:
        return 1 if x.ndim == 3 and self.batch_first else 0

    def _check_input(self, x: Any) -> None:
        who = type(self).__name__
        if x.ndim not in (2, 3) or x.shape[-1] != self.embedding_dim:
            raise ValueError(f"{who} expects input (N, T, {self.embedding_dim}) (batch_first), "
                             f"(T, N, {self.embedding_dim}) or (T, {self.embedding_dim}); got {tuple(x.shape)}")
        if x.shape[self._time_axis(x)] > self.num_positions:
            raise ValueError(f"{who}: a sequence of {x.shape[self._time_axis(x)]} positions is longer than the "
                             f"{self.num_positions} it has")

    def _positions(self, x: Any, table: Any, xp: Any) -> Any:
        """The rows ``p_{:T}`` shaped to broadcast against ``x``."""
        rows = table[:x.shape[self._time_axis(x)], :]
        return xp.expand_dims(rows, axis=1) if x.ndim == 3 and not self.batch_first else rows

    def _vjp(self, g: Any, ctx: Context) -> Any:
        return ctx.xp.astype(g, ctx.x.dtype, copy=False)  # dL/dx = g


class LearnedPositionalEmbedding(_AddPositions):
    r"""A learned vector per position, added to the input: ``weight`` ``(num_positions, embedding_dim)``.

    The formula is the module's, :math:`\partial L/\partial p_t = \sum_n g_{n,t}`
    for the positions used.  The weight is drawn from :math:`\mathcal N(0, 1)`
    as ``torch.nn.Embedding``'s; its torch twin is ``x + embedding(torch.arange(T))``
    (state-dict key ``weight``).  The layer computes in its ``dtype``.
    """

    def __init__(self, num_positions: int, embedding_dim: int, *, batch_first: bool = True, rng: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_positions, embedding_dim, batch_first)
        dtype = float_dtype(np.float64 if dtype is None else dtype)
        self.weight = Parameter(as_generator(rng).standard_normal((self.num_positions, self.embedding_dim))
                                .astype(dtype))

    def config(self) -> Dict[str, Any]:
        return self._config_of("num_positions", "embedding_dim", "batch_first",
                               dtype=numpy_dtype(self.weight.value))

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        return xp.astype(x, self.weight.dtype, copy=False) + self._positions(x, self.weight.value, xp)

    def _accumulate_grads(self, g: Any, ctx: Context) -> None:
        xp, x = ctx.xp, ctx.x
        time = self._time_axis(x)
        per_position = g if x.ndim == 2 else xp.sum(g, axis=1 - time)  # Σ_n g_{n,t}
        rows = xp.zeros_like(self.weight.value)
        rows[:x.shape[time], :] = per_position
        self.weight.accumulate(rows)

    def extra_repr(self) -> str:
        return f"{self.num_positions}, {self.embedding_dim}, batch_first={self.batch_first}"


class SinusoidalPositionalEncoding(_AddPositions):
    r"""Fixed sinusoids added to the input (Vaswani et al., 2017), as PyTorch's transformer tutorial.

    :math:`p_{t,2i} = \sin(t\,\omega_i)`, :math:`p_{t,2i+1} = \cos(t\,\omega_i)`,
    :math:`\omega_i = 10000^{-2i/E}`; the derivative is the module's
    (:math:`\partial y/\partial x = I`, no parameters).  Positions up to
    ``max_len``; the table is made again, not saved.  The output keeps the
    input's dtype (float16 computed in float32).
    """

    float16_in_float32 = True

    def __init__(self, embedding_dim: int, max_len: int = 5000, *, batch_first: bool = True) -> None:
        super().__init__(max_len, embedding_dim, batch_first)
        position = np.arange(self.num_positions, dtype=np.float64)[:, None]
        frequencies = np.exp(np.arange(0, self.embedding_dim, 2, dtype=np.float64) * (-math.log(10000.0)
                                                                                      / self.embedding_dim))
        table = np.zeros((self.num_positions, self.embedding_dim))
        table[:, 0::2] = np.sin(position * frequencies)
        table[:, 1::2] = np.cos(position * frequencies[:self.embedding_dim // 2])
        self.table = table

    def config(self) -> Dict[str, Any]:
        return self._config_of("embedding_dim", "batch_first", max_len=self.num_positions)

    def _forward(self, x: Any, ctx: Context) -> Any:
        xp = ctx.xp
        table = xp.asarray(self.table[:x.shape[self._time_axis(x)]], dtype=x.dtype)
        return x + self._positions(x, table, xp)

    def extra_repr(self) -> str:
        return f"{self.embedding_dim}, max_len={self.num_positions}, batch_first={self.batch_first}"
