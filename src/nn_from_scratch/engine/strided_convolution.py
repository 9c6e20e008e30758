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
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from . import windows

__all__ = ["backward", "forward"]


def forward(padded: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], stride: Tuple[int, int],
            dilation: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """``y = W·cols + b`` at any stride: ``padded`` ``(N, C, H + 2p_h, W + 2p_w)``, ``weight`` ``(O, C, kh, kw)``.

    Returns the ``(N, O, H_out, W_out)`` output and the columns ``(N, C*kh*kw, H_out*W_out)`` for
    :func:`backward`, copied once from the windows' strided view.
    """
    n, (o, c, kh, kw) = padded.shape[0], weight.shape
    out = windows.output_size(padded.shape[2:], (kh, kw), stride, dilation)
    cols = windows.im2col(padded, (kh, kw), stride, dilation, out).reshape(n, c * kh * kw, out[0] * out[1])
    y = np.matmul(weight.reshape(o, -1), cols).reshape((n, o) + out)
    if bias is not None:
        y += bias[:, np.newaxis, np.newaxis]
    return y, cols


def backward(g: np.ndarray, cols: np.ndarray, weight: np.ndarray, input_shape: Sequence[int],
             stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int], *,
             input_grad: bool = True, parameter_grads: bool = True, has_bias: bool = True
             ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """``(dx, dW, db)`` of :func:`forward` from ``g`` ``(N, O, H_out, W_out)`` and its columns.

    ``input_shape`` is the ``(N, C, H, W)`` shape of the images before padding.

    ``dW = Σ_n G_n·cols_nᵀ`` is computed as ``Σ_n (cols_n·G_nᵀ)ᵀ``: one product per sample whose
    output is the small ``(C*kh*kw, O)`` one, then a sum over the stack; ``dx`` is the lattice
    col2im of ``Wᵀ·G``.  ``dx`` is None unless ``input_grad``, ``dW`` and ``db`` unless
    ``parameter_grads`` (``db`` also without ``has_bias``).
    """
    n, o = cols.shape[0], weight.shape[0]
    G = g.reshape(n, o, cols.shape[2])  # G_n: (N, O, L), like the columns
    dweight = dbias = dx = None
    if parameter_grads:
        per_sample = np.matmul(cols, G.transpose(0, 2, 1))
        dweight = np.sum(per_sample.T.reshape(weight.shape + (n,)), axis=-1)
        if has_bias:
            dbias = np.sum(G, axis=(0, 2))
    if input_grad:
        dcols = np.matmul(weight.reshape(o, -1).T, G)  # (N, C*kh*kw, L)
        dx = windows.col2im(dcols, input_shape, weight.shape[2:], stride, padding, dilation)
    return dx, dweight, dbias
