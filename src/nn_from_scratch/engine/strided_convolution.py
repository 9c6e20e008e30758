r"""Conv2d's fast path at strides other than 1, arrays in, arrays out: columns copied from strided windows.

Conv2d (:mod:`nn_from_scratch.nodes.convolution`) builds its columns by
stacking one slice of the padded input per kernel offset and sums them
back with a loop of additions on its textbook path.  With the engine on,
at a stride other than 1 (stride 1 takes :mod:`.convolution`), it calls
these two functions instead: the columns are one copy of the windows'
strided view (:func:`.windows.im2col`), the weight gradient one product
per sample whose output is the small one, and col2im the lattice scatter
(:func:`.windows.col2im`), which adds overlapping offsets along contiguous
rows.  The same sums as the textbook path's, in another order.

A pointwise convolution (a 1x1 kernel at stride 1, no padding) takes them
too: its columns are the images themselves (a free reshape, no copy), so
its three products are all it costs.

Grouped convolutions (``groups`` > 1) take these functions at every stride
but a depthwise one's stride 1 (:mod:`.depthwise`): their products are
batched over the groups, :math:`Y_{n\gamma} = \bar W_\gamma X_{n\gamma}`, the
rows of group :math:`\gamma`'s channels being next to each other in the columns.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from . import windows

__all__ = ["backward", "forward"]


def forward(padded: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], stride: Tuple[int, int],
            dilation: Tuple[int, int], groups: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """``y = W·cols + b`` at any stride: ``padded`` ``(N, C, H + 2p_h, W + 2p_w)``, ``weight`` ``(O, C/g, kh, kw)``.

    Returns the ``(N, O, H_out, W_out)`` output and the columns ``(N, C*kh*kw, H_out*W_out)`` for
    :func:`backward`, copied once from the windows' strided view.
    """
    n, c, (o, _, kh, kw) = padded.shape[0], padded.shape[1], weight.shape
    out = windows.output_size(padded.shape[2:], (kh, kw), stride, dilation)
    if (kh, kw) == (1, 1) and stride == (1, 1):  # a pointwise convolution: the columns are the images themselves
        cols = padded.reshape(n, c, out[0] * out[1])
    else:
        cols = windows.im2col(padded, (kh, kw), stride, dilation, out).reshape(n, c * kh * kw, out[0] * out[1])
    if groups == 1:
        y = np.matmul(weight.reshape(o, -1), cols).reshape((n, o) + out)
    else:  # one product per sample and group
        grouped = cols.reshape(n, groups, cols.shape[1] // groups, cols.shape[2])
        y = np.matmul(weight.reshape(groups, o // groups, -1), grouped).reshape((n, o) + out)
    if bias is not None:
        y += bias[:, np.newaxis, np.newaxis]
    return y, cols


def backward(g: np.ndarray, cols: Optional[np.ndarray], weight: np.ndarray, input_shape: Sequence[int],
             stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int], *,
             input_grad: bool = True, parameter_grads: bool = True, has_bias: bool = True, groups: int = 1
             ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dW, db)`` of :func:`forward` from ``g`` ``(N, O, H_out, W_out)`` and its columns.

    ``input_shape`` is the ``(N, C, H, W)`` shape of the images before padding.

    ``dW = Σ_n G_n·cols_nᵀ`` is computed as ``Σ_n (cols_n·G_nᵀ)ᵀ``: one product per sample (and group) whose
    output is the small ``(C/g*kh*kw, O/g)`` one, then a sum over the stack; ``dx`` is the lattice
    col2im of ``Wᵀ·G``.  ``dx`` is None unless ``input_grad``, ``dW`` and ``db`` unless
    ``parameter_grads`` (``db`` also without ``has_bias``); ``cols`` is needed only for ``dW``.
    """
    n, o = g.shape[0], weight.shape[0]
    G = g.reshape(n, groups, o // groups, g.shape[2] * g.shape[3])  # G_nγ: (N, g, O/g, L), like the columns
    dweight = dbias = dx = None
    if parameter_grads:
        X = cols.reshape(n, groups, cols.shape[1] // groups, cols.shape[2])
        per_sample = np.matmul(X, G.transpose(0, 1, 3, 2))  # (N, g, C/g*kh*kw, O/g)
        dweight = np.sum(per_sample.transpose(1, 3, 2, 0), axis=-1).reshape(weight.shape)  # Σ_n, as (g, O/g, ..)
        if has_bias:
            dbias = np.sum(G, axis=(0, 3)).reshape(o)
    if input_grad:
        W = weight.reshape(groups, o // groups, -1)
        dcols = np.matmul(W.transpose(0, 2, 1), G)  # (N, g, C/g*kh*kw, L)
        if weight.shape[2:] == (1, 1) and stride == (1, 1) and padding == (0, 0):  # pointwise: no windows to undo
            return dcols.reshape(input_shape), dweight, dbias
        columns = dcols.reshape(n, dcols.shape[1] * dcols.shape[2], G.shape[3])
        dx = windows.col2im(columns, input_shape, weight.shape[2:], stride, padding,
                            dilation)
    return dx, dweight, dbias
