r"""Batch normalisation over the whole global batch: the statistics and their gradient summed across processes.

In data-parallel training a :class:`~nn_from_scratch.nodes.BatchNorm1d` or
``BatchNorm2d`` normalises each process's part of the batch by that part's
own mean and variance: a smaller batch, and another result than one process
at the whole batch.  A synchronised one computes, per channel over the
:math:`M` values of every process,

.. math::
    \mu = \frac{1}{M}\sum x, \qquad \sigma^2 = \frac{1}{M}\sum (x - \mu)^2, \qquad
    \frac{\partial L}{\partial x} = \frac{\gamma s}{M}\Big(M g - \sum g - \hat x \sum g \odot \hat x\Big),

each sum taken over all processes (an allreduce of :math:`C` numbers, two in
the forward pass, in the order one process computes them, and one in the
backward pass), so that the output, the running statistics and the input
gradient are those of one process at the whole batch.  The parameter
gradients :math:`\sum g \odot \hat x` and :math:`\sum g` stay this
process's own: the gradient reduction sums them with every other gradient.

:func:`convert_sync_batchnorm` turns the batch norms of a model into
synchronised ones in place (the node keeps its identity, its parameters,
buffers and state-dict keys; only its class changes, to a subclass that
overrides the batch statistics, so that the containers holding it need not
know).  In eval mode, and with ``track_running_stats=False`` in eval mode,
a synchronised batch norm uses its running statistics and talks to no one.

The forward pass repeats the arithmetic of ``nodes/regularization.py`` with
the sums in between; it is kept step for step the same, so that one process
gives the same bits either way.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple, Type

import numpy as np

from ..context import Context
from ..node import Node
from ..nodes import BatchNorm1d, BatchNorm2d
from ..nodes.broadcasting import dtype_in
from ..nodes.regularization import _BatchNorm, channel_dot, channel_sum
from .communicator import Communicator

__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batchnorm"]


class _SyncStatistics:
    """The batch statistics of a batch norm summed over the processes of ``self.communicator``."""

    communicator: Communicator

    def _forward(self, x: Any, ctx: Context) -> Any:
        if not (self.training or not self.track_running_stats):
            return super()._forward(x, ctx)  # running statistics: nothing to share
        xp, c = ctx.xp, self.num_features
        compute = dtype_in(xp, self._compute)
        xf = self._flat(xp, xp.astype(x, compute, copy=False))
        nd = xf.ndim
        totals = np.empty(c + 1, dtype=np.float64)  # the sums and the count, one message
        totals[:c] = channel_sum(xf, ctx)
        totals[c] = math.prod(x.shape) // c
        self.communicator.allreduce(totals, "the batch statistics of a synchronised batch norm")
        m = int(totals[c])
        ctx.batch_stats, ctx.m = True, m
        if m <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {m} over all processes "
                             f"(input size {tuple(x.shape)} on this one)")
        mean = xp.asarray(totals[:c], dtype=compute) / m  # μ = Σ x / M
        centered = xf - self._per_channel(mean, nd)
        squares = np.asarray(channel_dot(centered, centered, ctx), dtype=np.float64)
        self.communicator.allreduce(squares, "the batch statistics of a synchronised batch norm")
        var = xp.asarray(squares, dtype=compute) / m  # σ² = Σ (x − μ)² / M
        if ctx.update_state and self.training and self.track_running_stats:
            self._update_running_stats(xp, mean, var, m)
        ctx.inv_std = 1 / xp.sqrt(var + self.eps)  # s = 1 / √(σ² + ε)
        centered *= self._per_channel(ctx.inv_std, nd)
        ctx.x_hat = centered  # x̂ = (x − μ) s, flat
        y = centered
        if self.affine:
            y = centered * self._per_channel(self.weight.value, nd)  # y = γ x̂ + β
            y += self._per_channel(self.bias.value, nd)
        return self._unflat(xp, y, x.shape, dtype_in(xp, self.dtype))

    def _all_sums(self, sum_g: Any, sum_gx: Any) -> Tuple[Any, Any]:
        """:math:`\\sum g` and :math:`\\sum g \\odot \\hat x` over every process (this process's given)."""
        c = self.num_features
        both = np.empty(2 * c, dtype=np.float64)
        both[:c], both[c:] = sum_g, sum_gx
        self.communicator.allreduce(both, "the input gradient of a synchronised batch norm")
        return both[:c].astype(sum_g.dtype, copy=False), both[c:].astype(sum_gx.dtype, copy=False)

    def _vjp(self, g: Any, ctx: Context) -> Any:
        if not ctx.batch_stats:
            return super()._vjp(g, ctx)
        gf, sum_g, sum_gx = self._grad_sums(g, ctx)
        return self._input_grad(gf, *self._all_sums(sum_g, sum_gx), ctx)

    def _backward(self, g: Any, ctx: Context, input_grad: bool) -> Optional[Any]:
        if not ctx.batch_stats:
            return super()._backward(g, ctx, input_grad)
        gf, sum_g, sum_gx = self._grad_sums(g, ctx)
        if self.affine:  # this process's parts: the gradient reduction adds the others'
            self.weight.accumulate(sum_gx)
            self.bias.accumulate(sum_g)
        if not input_grad:
            return None
        return self._input_grad(gf, *self._all_sums(sum_g, sum_gx), ctx)

    def _jacobian(self, ctx: Context) -> Any:
        if ctx.batch_stats and self.communicator.size > 1:
            raise NotImplementedError(f"{type(self).__name__}: in training mode the Jacobian spans the samples of "
                                      "every process; compute it in one process, or in eval mode")
        return super()._jacobian(ctx)


class SyncBatchNorm1d(_SyncStatistics, BatchNorm1d):
    """:class:`~nn_from_scratch.nodes.BatchNorm1d` with the batch statistics of every process (see the module)."""

    described_class = BatchNorm1d  # a saved model holds the plain batch norm: one process reads it back


class SyncBatchNorm2d(_SyncStatistics, BatchNorm2d):
    """:class:`~nn_from_scratch.nodes.BatchNorm2d` with the batch statistics of every process (see the module)."""

    described_class = BatchNorm2d  # a saved model holds the plain batch norm: one process reads it back


_SYNCHRONISED: Dict[Type[Any], Type[Any]] = {BatchNorm1d: SyncBatchNorm1d, BatchNorm2d: SyncBatchNorm2d}


def convert_sync_batchnorm(model: Node, communicator: Communicator) -> int:
    """Make every BatchNorm1d/BatchNorm2d of ``model`` synchronised over ``communicator``, in place; how many.

    A batch norm of another class (a subclass of one's own) is refused with
    ``TypeError``, before anything changes: its own arithmetic cannot be
    synchronised from outside.
    """
    found: Dict[int, Any] = {}  # a node reached along two paths is converted once
    for path, node in model.named_nodes():
        if isinstance(node, _SyncStatistics):
            node.communicator = communicator
        elif type(node) in _SYNCHRONISED:
            found[id(node)] = node
        elif isinstance(node, _BatchNorm):
            raise TypeError(f"{path or 'the model'} is a {type(node).__name__}, a batch norm of its own: "
                            "sync_batchnorm converts BatchNorm1d and BatchNorm2d only")
    for node in found.values():
        node.__class__ = _SYNCHRONISED[type(node)]
        node.communicator = communicator
    return len(found)
