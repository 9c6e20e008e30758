r"""1-d pooling over sequences, as torch's MaxPool1d and AvgPool1d: the 2-d pools on images of height 1.

A sequence ``(N, C, L)`` (or ``(C, L)``) is an image ``(N, C, 1, L)``, and a
1-d window of kernel :math:`k`, stride :math:`s`, padding :math:`p` and
dilation :math:`d` is the 2-d window ``(1, k)``, ``(1, s)``, ``(0, p)``,
``(1, d)``: the classes below are :class:`~nn_from_scratch.nodes.MaxPool2d`
and :class:`~nn_from_scratch.nodes.AvgPool2d` with those settings, the same
window helper (:mod:`nn_from_scratch.nodes.windows`), slices, col2im and
engine, and :math:`L_\text{out} = \lfloor (L + 2p - d(k-1) - 1)/s \rfloor + 1`
(a ceiling with ``ceil_mode``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from .pooling import AvgPool2d, MaxPool2d
from .windows import Pair

__all__ = ["AvgPool1d", "MaxPool1d"]


class MaxPool1d(MaxPool2d):
    r"""Max pooling over sequences, as ``torch.nn.MaxPool1d(kernel_size, stride, padding, dilation,
    return_indices, ceil_mode)``: on one channel,

    .. math::
        y_i = \max_{0 \le a < k} \tilde x_{i s - p + a d}, \qquad
        \frac{\partial L}{\partial x_t} = \sum_{i:\ a_i = t} g_i,

    :math:`a_i` the window's first maximum (its last NaN), as
    :class:`~nn_from_scratch.nodes.MaxPool2d`, which this is on ``(N, C, 1, L)``.
    ``return_indices=True`` returns ``(y, indices)``, the positions :math:`a_i`
    along the sequence (int64, no gradient).  Input ``(N, C, L)`` or ``(C, L)``;
    the settings are ints or 1-tuples.
    """

    _spatial = 1


class AvgPool1d(AvgPool2d):
    r"""Average pooling over sequences, as ``torch.nn.AvgPool1d(kernel_size, stride, padding, ceil_mode,
    count_include_pad)``: on one channel,

    .. math::
        y_i = \frac{1}{d_i} \sum_{0 \le a < k} \tilde x_{i s - p + a}, \qquad
        \frac{\partial L}{\partial x_t} = \sum_{i:\ t \in W_i} \frac{g_i}{d_i},

    the divisor :math:`d_i` as :class:`~nn_from_scratch.nodes.AvgPool2d`'s
    (torch's AvgPool1d has no ``divisor_override``), which this is on
    ``(N, C, 1, L)``.  Input ``(N, C, L)`` or ``(C, L)``.
    """

    _spatial = 1

    def __init__(self, kernel_size: Pair, stride: Optional[Pair] = None, padding: Pair = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
    def config(self) -> Dict[str, Any]:
        return self._config_of("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")

