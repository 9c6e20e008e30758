r"""The 1-d convolution layer, with torch.nn.Conv1d's semantics, weight layout and default initialisation."""
from __future__ import annotations

from typing import Any

from .convolution import Conv2d

__all__ = ["Conv1d"]


class Conv1d(Conv2d):
    r"""1-d convolution (cross-correlation) over sequences: on one sequence,
    :math:`y_{o,i} = b_o + \sum_{c,a} W_{o,c,a}\, \tilde x_{c,\, i s + a d}`.

    Shapes: ``x`` ``(C_in, L)``, ``W`` = ``weight`` ``(C_out, C_in/groups, k)``,
    ``b`` = ``bias`` ``(C_out,)``, ``y`` ``(C_out, L_out)`` with
    :math:`L_\text{out} = \lfloor (L + 2p - d(k-1) - 1)/s \rfloor + 1`; a
    leading axis ``N`` is a batch, and ``(N, C_in, L)`` gives ``(N, C_out, L_out)``,
    exactly ``torch.nn.Conv1d``.  The arguments are torch's, in torch's order:
    ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are ints (or
    1-tuples), ``padding`` also ``'valid'`` or ``'same'``, and ``groups``,
    ``bias``, ``padding_mode`` (and the keyword-only ``init``, ``rng``,
    ``dtype``) are :class:`~nn_from_scratch.nodes.Conv2d`'s, whose constructor
    this is.

    The sequence is an image of height 1, the kernel a ``1 x k`` one: the
    layer *is* :class:`~nn_from_scratch.nodes.Conv2d` on ``(N, C, 1, L)``, with
    its columns, products and gradients (the weight viewed as
    ``(C_out, C_in/groups, 1, k)``, its gradient read back in torch's
    ``(C_out, C_in/groups, k)`` layout):

    .. math::
        Y_n = \bar W X_n + b\,\mathbf 1^\top, \qquad
        \frac{\partial L}{\partial \bar W} = \sum_n G_n X_n^\top, \qquad
        \frac{\partial L}{\partial b} = \sum_{n,i} G_{n,:,i}, \qquad
        \frac{\partial L}{\partial x} = \text{col2im}\big(\bar W^\top G_n\big),

    with :math:`X_n` ``(C_in k, L_out)`` the windows of sample :math:`n`, one per
    column, and group by group when ``groups`` > 1.
    """

    _spatial = 1

    def output_size(self, length: int) -> int:  # type: ignore[override]
        """``L_out`` for a sequence of ``length``; ``ValueError`` when the kernel does not fit."""
        return self._output_size((1, length))[1]

    def _kernel(self, xp: Any) -> Any:
        o, c, k = self.weight.shape
        return xp.reshape(self.weight.value, (o, c, 1, k))
