r"""The recurrent layers' loop over time, in place: one direction of one layer, forward and backward.

The layers of ``nodes/recurrent.py`` state each step with whole-array
operations (their textbook path: a new array per operation, per step).
These kernels run the same formulas into buffers made once per pass, with
``out=`` writes, so that a step is the recurrent product and a dozen
ufunc calls on arrays of ``N × G·H`` numbers that stay in cache:

* the input's pre-activations :math:`a^x = x W_{ih}^\top + b_{ih}` of every
  step come in as one array ``(T, N, G·H)``, computed by one product; the
  kernel adds :math:`b_{hh}` to it once (the Elman and LSTM steps add
  :math:`a^h` whole) and turns each step's slice into the gates in place;
* the LSTM's four gates are one sigmoid over the ``(N, 4H)`` block, ``g``'s
  tanh taken first; their derivatives :math:`s(1-s)` are one product over
  the block too, and the gates' gradient one multiplication;
* the states of all steps are kept in ``(T + 1, N, H)`` buffers in the order
  of processing, from which the layer's parameter gradients are one product
  over all steps.

``kind`` is ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``; ``mask``
``(T, N, 1)`` (true where a step counts) carries the state over the steps
that do not, and zeroes their outputs and gate gradients.  The results
agree with the textbook path to rounding (:math:`b_{hh}` is added in another
order); NaN and infinities propagate as there (selections are ``copyto``
with ``where=``, never products by a mask).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["Saved", "run", "run_back"]

States = Tuple[np.ndarray, ...]


class Saved:
    """What :func:`run` keeps for :func:`run_back`.

    ``gates`` ``(T, N, G·H)`` in time order (the LSTM's and GRU's activated
    gates; the Elman step's nothing), ``h`` and ``c`` ``(T + 1, N, H)`` in
    the order of processing (``h[0]`` the initial state), ``tanh_c``
    ``(T, N, H)`` in that order, ``a_hn`` the GRU's :math:`h W_{hn}^\top +
    b_{hn}` ``(T, N, H)`` in time order.
    """

    def __init__(self, kind: str, reverse: bool, gates: np.ndarray, h: np.ndarray, c: Optional[np.ndarray],
                 tanh_c: Optional[np.ndarray], a_hn: Optional[np.ndarray]) -> None:
        self.kind, self.reverse, self.gates, self.h, self.c, self.tanh_c, self.a_hn = (
            kind, reverse, gates, h, c, tanh_c, a_hn)


def _sigmoid(a: np.ndarray) -> None:
    r""":math:`1/(1 + e^{-a})` in place (:math:`e^{-a} = \infty` gives 0)."""
    np.negative(a, out=a)
    with np.errstate(over="ignore"):
        np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)


def _times(slope: np.ndarray, out: np.ndarray) -> None:
    """``out = slope (1 - slope)``: a sigmoid's derivative from its value."""
    np.subtract(1, slope, out=out)
    out *= slope


def run(kind: str, a_x: np.ndarray, start: States, w_hh: np.ndarray, b_hh: Optional[np.ndarray],
        mask: Optional[np.ndarray], reverse: bool) -> Tuple[np.ndarray, States, Saved]:
    """One direction over the sequence: outputs ``(T, N, H)`` in time order, the final state, and :class:`Saved`.

    ``a_x`` ``(T, N, G·H)`` is the caller's own array: the kernel overwrites it with the gates.
    """
    steps, batch, width = a_x.shape
    size = start[0].shape[-1]
    dtype = a_x.dtype
    h = np.empty((steps + 1, batch, size), dtype)
    h[0] = start[0]
    lstm, gru = kind == "LSTM", kind == "GRU"
    c = tanh_c = a_hn = None
    if lstm:
        c, tanh_c = np.empty((steps + 1, batch, size), dtype), np.empty((steps, batch, size), dtype)
        c[0] = start[1]
        scratch = np.empty((batch, size), dtype)
    a_h = np.empty((batch, width), dtype)  # h W_hhᵀ
    if gru:
        a_hn = np.empty((steps, batch, size), dtype)
    elif b_hh is not None:
        a_x += b_hh  # the Elman and LSTM steps add a^h whole: b_hh once for every step
    w_t = w_hh.T
    for k in range(steps):
        t = steps - 1 - k if reverse else k
        a, h_old, h_new = a_x[t], h[k], h[k + 1]
        np.matmul(h_old, w_t, out=a_h)
        if lstm:
            a += a_h
            g = a[:, 2 * size:3 * size]
            np.tanh(g, out=scratch)
            _sigmoid(a)  # i, f, o (and g, overwritten next)
            g[...] = scratch
            c_new = c[k + 1]
            np.multiply(a[:, size:2 * size], c[k], out=c_new)  # f c
            np.multiply(a[:, :size], g, out=scratch)  # i g
            c_new += scratch
            np.tanh(c_new, out=tanh_c[k])
            np.multiply(a[:, 3 * size:], tanh_c[k], out=h_new)  # o tanh c
        elif gru:
            if b_hh is not None:
                a_h += b_hh
            rz = a[:, :2 * size]
            rz += a_h[:, :2 * size]
            _sigmoid(rz)
            n = a[:, 2 * size:]
            np.multiply(a[:, :size], a_h[:, 2 * size:], out=h_new)  # r (h W_hn + b_hn)
            a_hn[t] = a_h[:, 2 * size:]
            n += h_new
            np.tanh(n, out=n)
            np.subtract(h_old, n, out=h_new)  # n + z (h - n), torch's arrangement
            h_new *= a[:, size:2 * size]
            h_new += n
        else:
            a += a_h
            if kind == "RNN_TANH":
                np.tanh(a, out=h_new)
            else:
                np.maximum(a, 0, out=h_new)
        if mask is not None:  # a step that does not count carries the state
            skip = ~mask[t]
            np.copyto(h_new, h_old, where=skip)
            if lstm:
                np.copyto(c[k + 1], c[k], where=skip)
    outputs = h[1:] if not reverse else h[:0:-1]  # time order
    if mask is not None:
        outputs = np.where(mask, outputs, dtype.type(0))
    final = (h[steps],) if not lstm else (h[steps], c[steps])
    return outputs, final, Saved(kind, reverse, a_x, h, c, tanh_c, a_hn)


def run_back(kind: str, saved: Saved, gy: np.ndarray, d_final: States, w_hh: np.ndarray,
             mask: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, States]:
    """Backward through time: ``dL/da^x`` and ``dL/da^h`` ``(T, N, G·H)`` in time order, the old states ``h_{t-1}``
    ``(T, N, H)`` in time order, and the initial state's gradient."""
    gates, h, reverse = saved.gates, saved.h, saved.reverse
    steps, batch, width = gates.shape
    size = h.shape[-1]
    dtype = gates.dtype
    lstm, gru = kind == "LSTM", kind == "GRU"
    d_ax = np.empty((steps, batch, width), dtype)
    d_ah = np.empty_like(d_ax) if gru else d_ax
    dh = np.array(d_final[0], dtype=dtype, copy=True)
    dc = np.array(d_final[1], dtype=dtype, copy=True) if lstm else None
    scratch = np.empty((batch, size), dtype)
    slopes = np.empty((batch, width), dtype) if lstm else None
    back = np.empty((batch, size), dtype)
    for k in range(steps - 1, -1, -1):
        t = steps - 1 - k if reverse else k
        skip = None if mask is None else ~mask[t]
        if skip is None:
            dh += gy[t]
        else:
            np.add(dh, gy[t], out=dh, where=mask[t])
            kept_h = dh.copy()
            kept_c = dc.copy() if lstm else None
        da, h_new = d_ax[t], h[k + 1]
        if lstm:
            a, tanh_c = gates[t], saved.tanh_c[k]
            i, f, g, o = (a[:, j * size:(j + 1) * size] for j in range(4))
            _times(a, slopes)  # s (1 - s) for i, f, o
            np.multiply(g, g, out=slopes[:, 2 * size:3 * size])
            np.subtract(1, slopes[:, 2 * size:3 * size], out=slopes[:, 2 * size:3 * size])  # 1 - g²
            np.multiply(tanh_c, tanh_c, out=scratch)
            np.subtract(1, scratch, out=scratch)
            scratch *= o
            scratch *= dh
            dc += scratch  # c̄ = dL/dc' + dL/dh' o (1 - tanh² c')
            np.multiply(dc, g, out=da[:, :size])
            np.multiply(dc, saved.c[k], out=da[:, size:2 * size])
            np.multiply(dc, i, out=da[:, 2 * size:3 * size])
            np.multiply(dh, tanh_c, out=da[:, 3 * size:])
            da *= slopes
            dc *= f
            np.matmul(da, w_hh, out=back)
        elif gru:
            a = gates[t]
            r, z, n = a[:, :size], a[:, size:2 * size], a[:, 2 * size:]
            dah = d_ah[t]
            dn, dr, dz = da[:, 2 * size:], da[:, :size], da[:, size:2 * size]
            np.multiply(n, n, out=scratch)
            np.subtract(1, scratch, out=scratch)
            np.subtract(1, z, out=dn)
            dn *= scratch
            dn *= dh  # n̄ = dL/dh' (1 - z)(1 - n²)
            _times(r, dr)
            dr *= saved.a_hn[t]
            dr *= dn  # r̄ = n̄ a^h_n r (1 - r)
            _times(z, dz)
            np.subtract(h[k], n, out=scratch)
            dz *= scratch
            dz *= dh
            dah[:, :2 * size] = da[:, :2 * size]
            np.multiply(dn, r, out=dah[:, 2 * size:])
            np.matmul(dah, w_hh, out=back)
            dh *= z
        else:
            if kind == "RNN_TANH":
                np.multiply(h_new, h_new, out=da)
                np.subtract(1, da, out=da)
                da *= dh
            else:
                np.copyto(da, dh)
                np.copyto(da, 0, where=h_new <= 0)  # a selection: an infinite dh where h <= 0 gives 0
            np.matmul(da, w_hh, out=back)
        if gru:
            dh += back
        else:
            dh, back = back, dh
        if skip is not None:  # a step that does not count: no gate gradient, the state's gradient carried
            np.copyto(da, 0, where=skip)
            if gru:
                np.copyto(d_ah[t], 0, where=skip)
            np.copyto(dh, kept_h, where=skip)
            if lstm:
                np.copyto(dc, kept_c, where=skip)
    h_prev = h[:-1] if not reverse else h[-2::-1]
    return d_ax, d_ah, h_prev, ((dh,) if not lstm else (dh, dc))
