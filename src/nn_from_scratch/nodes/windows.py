r"""Windows of ``(N, C, H, W)`` images: the geometry, im2col and col2im behind convolution and pooling.

Geometry
--------
A window operation with kernel :math:`(k_h, k_w)`, stride :math:`(s_h, s_w)`,
padding :math:`(p_h, p_w)` and dilation :math:`(d_h, d_w)` reads, for the
output position :math:`(i, j)` and the kernel offset :math:`(a, b)`, the input
pixel

.. math::
    (u, v) = (i s_h + a d_h - p_h,\; j s_w + b d_w - p_w),

which is padding (``fill_value``: zero for convolution and average pooling,
:math:`-\infty` for max pooling) when it falls outside :math:`0 \le u < H`,
:math:`0 \le v < W`.  The output has (torch's rule, ``ceil_mode=False``)

.. math::
    H_\text{out} = \left\lfloor \frac{H + 2 p_h - d_h (k_h - 1) - 1}{s_h} \right\rfloor + 1,
    \qquad
    W_\text{out} = \left\lfloor \frac{W + 2 p_w - d_w (k_w - 1) - 1}{s_w} \right\rfloor + 1

positions per axis (:func:`conv_output_size`).

im2col, and col2im its adjoint
------------------------------
Kernel offset :math:`(a, b)` reads one number per output position: the
strided slice ``padded[:, :, a*dh : ... : sh, b*dw : ... : sw]`` of the padded
batch :math:`\tilde x`, of shape ``(N, C, H_out, W_out)`` (:func:`offset_slices`).
:func:`im2col` stacks the :math:`k_h k_w` slices,

.. math::
    \text{cols}[n, c, a, b, i, j] = \tilde x[n, c,\; i s_h + a d_h,\; j s_w + b d_w];

reshaped to ``(N, C*kh*kw, H_out*W_out)``, sample :math:`n` of ``cols`` is
the matrix :math:`X_n` whose column :math:`(i, j)` is one receptive field,
flattened in the order of a ``(C, kh, kw)`` weight: a convolution is the
batched matrix product ``W.reshape(O, C*kh*kw) @ X``, landing in
``(N, O, H_out*W_out)``, i.e. NCHW.  :func:`col2im` is its transpose: it
*adds* each offset's columns back onto the strided slice they were read
from, in a zero padded gradient, then crops the padding off, so that
:math:`\langle \text{im2col}(x), c\rangle = \langle x, \text{col2im}(c)\rangle`:
the backward pass of every window operation.  Both loop over the kernel
offsets only, and use the array API standard's functions of the input's
namespace (:mod:`nn_from_scratch.backend`).  The engine's forms, one copy
through strided views and a scatter that adds overlapping offsets along
contiguous rows, are :mod:`nn_from_scratch.engine.windows`.
"""
from __future__ import annotations

from typing import Any, List, Sequence, Tuple, Union

import numpy as np

from ..backend import is_array, namespace_of

__all__ = ["Pair", "as_batch", "as_pair", "as_tuple", "check_images", "col2im", "conv_output_size", "extend",
           "from_images", "im2col", "lift", "offset_slices", "pad", "to_images", "window_output_size"]

Pair = Union[int, Sequence[int]]
Pairs = Tuple[int, int]


def as_pair(name: str, value: Any, minimum: int = 1) -> Pairs:
    """``value`` (an int or a pair of ints) as a pair of ints, each at least ``minimum``.

    Raises ``ValueError`` naming ``name`` and ``value`` for anything else
    (booleans and floats included).
    """
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int
            and value[0] >= minimum and value[1] >= minimum):
        return value  # already a valid pair (the layers' own settings, on every pass): no message to build
    return as_tuple(name, value, 2, minimum)  # type: ignore[return-value]


def as_tuple(name: str, value: Any, length: int, minimum: int = 1) -> Tuple[int, ...]:
    """``value`` (an int, or ``length`` ints) as a tuple of ``length`` ints, each at least ``minimum``.

    ``length`` 2 is :func:`as_pair`; the 1-d layers take ``length`` 1
    (``3`` or ``(3,)``).  Raises ``ValueError`` naming ``name`` and ``value``
    for anything else (booleans and floats included).
    """
    kind = "positive" if minimum == 1 else ("non-negative" if minimum == 0 else f">= {minimum}")
    several = {1: "a 1-tuple", 2: "a pair"}.get(length, f"a tuple of {length}")
    message = f"{name} must be a {kind} integer or {several} of {kind} integers, got {value!r}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        items: Tuple[Any, ...] = (value,) * length
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(message) from None
    if len(items) != length or any(
        isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in items
    ):
        raise ValueError(message)
    result = tuple(int(v) for v in items)
    if min(result) < minimum:
        raise ValueError(message)
    return result


def conv_output_size(
    input_size: Pair,
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> Pairs:
    r"""``(H_out, W_out)`` of a window operation on an ``(H, W)`` image (see the module docstring).

    Raises ``ValueError`` naming the numbers when a size, kernel, stride or
    dilation is not positive, a padding is negative, or the dilated kernel
    :math:`d (k - 1) + 1` is larger than the padded input :math:`H + 2p`.
    """
    height, width = as_pair("input size", input_size, 0)
    kernel = as_pair("kernel_size", kernel_size, 1)
    strides = as_pair("stride", stride, 1)
    pads = as_pair("padding", padding, 0)
    dilations = as_pair("dilation", dilation, 1)
    result = []
    for axis, size, k, s, p, d in zip(("height", "width"), (height, width), kernel, strides, pads, dilations):
        extent = d * (k - 1) + 1
        if extent > size + 2 * p:
            dilated = f" (dilated by {d}: {extent})" if d != 1 else ""
            raise ValueError(
                f"kernel {kernel}{dilated} is larger than the padded input along the {axis}: "
                f"{axis} {size} + 2 * padding {p} = {size + 2 * p} < {extent}"
            )
        result.append((size + 2 * p - extent) // s + 1)
    return result[0], result[1]


def _geometry(
    shape: Tuple[int, ...], kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Tuple[Pairs, Pairs, Pairs, Pairs, Pairs]:
    """Validated ``kernel, stride, padding, dilation, (H_out, W_out)`` for an ``(N, C, H, W)`` shape."""
    if len(shape) != 4:
        raise ValueError(f"expected a 4-d (N, C, H, W) image batch, got shape {tuple(shape)}")
    kernel = as_pair("kernel_size", kernel_size, 1)
    strides = as_pair("stride", stride, 1)
    pads = as_pair("padding", padding, 0)
    dilations = as_pair("dilation", dilation, 1)
    out = conv_output_size(shape[2:], kernel, strides, pads, dilations)
    return kernel, strides, pads, dilations, out


def pad(x: Any, padding: Pairs, fill_value: float = 0.0) -> Any:
    """``x`` ``(N, C, H, W)`` in a new array with ``padding`` ``(ph, pw)`` rows/columns of ``fill_value`` around
    each image; ``x`` itself when there is no padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = namespace_of(x)
    n, c, h, w = x.shape
    shape = (n, c, h + 2 * ph, w + 2 * pw)
    padded = xp.zeros(shape, dtype=x.dtype) if fill_value == 0 else xp.full(shape, fill_value, dtype=x.dtype)
    padded[:, :, ph:ph + h, pw:pw + w] = x
    return padded


def window_output_size(
    size: Sequence[int], kernel: Pairs, stride: Pairs, padding: Pairs, dilation: Pairs = (1, 1),
    ceil_mode: bool = False,
) -> Tuple[Pairs, Pairs]:
    r"""``((H_out, W_out), (e_h, e_w))``: a pool's output size (torch's rule) and the extension its windows read.

    Per axis, with the dilated kernel :math:`e = d(k-1) + 1`,
    :math:`o = \lfloor (S + 2p - e + [\text{ceil}](s - 1)) / s \rfloor + 1`, less
    one when ``ceil_mode`` would start the last window in the right padding
    (:math:`(o - 1)s \ge S + p`), as torch's ``pooling_output_shape``.  The
    extension is how far the last window runs past the padded input,
    :math:`\max(0, (o - 1)s + e - (S + 2p))` (zero without ``ceil_mode``).
    The geometry comes as pairs already checked; ``ValueError`` names the
    numbers when the kernel is larger than the padded input, or (``ceil_mode``)
    when no window fits.
    """
    outs, extras = [], []
    for axis, n, k, s, p, d in zip(("height", "width"), size, kernel, stride, padding, dilation):
        extent = d * (k - 1) + 1
        if extent > n + 2 * p and not ceil_mode:
            shown = f"{k}" if d == 1 else f"{k} (dilated by {d}: {extent})"
            raise ValueError(f"kernel_size {kernel} is larger than the padded input along the {axis}: "
                             f"{axis} {n} + 2 * padding {p} = {n + 2 * p} < {shown}")
        out = (n + 2 * p - extent + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        if out < 1:
            raise ValueError(f"the output is too small along the {axis}: {axis} {n}, padding {p}, kernel {k}, "
                             f"dilation {d}, stride {s} give {out} positions")
        outs.append(out)
        extras.append(max(0, (out - 1) * s + extent - (n + 2 * p)))
    return (outs[0], outs[1]), (extras[0], extras[1])


def extend(x: Any, extra: Pairs, fill_value: float = 0.0) -> Any:
    """``x`` ``(N, C, H, W)`` with ``extra`` ``(e_h, e_w)`` rows and columns of ``fill_value`` appended at the
    bottom and the right (what a ``ceil_mode`` window reads past the padding); ``x`` itself when there are none."""
    if extra == (0, 0):
        return x
    xp = namespace_of(x)
    n, c, h, w = x.shape
    grown = xp.full((n, c, h + extra[0], w + extra[1]), fill_value, dtype=x.dtype)
    grown[:, :, :h, :w] = x
    return grown


def as_batch(x: Any, spatial: int = 2) -> Any:
    """An image batch ``(N, C, *spatial)`` as given, an unbatched image ``(C, *spatial)`` as a batch of one."""
    return x if x.ndim == spatial + 2 else namespace_of(x).expand_dims(x, axis=0)


def lift(values: Tuple[int, ...], fill: int) -> Pairs:
    """A 1-d layer's setting ``(v,)`` as the ``(fill, v)`` of the images of height 1 it runs on; a pair as it is."""
    return (fill,) * (2 - len(values)) + tuple(values)  # type: ignore[return-value]


def to_images(x: Any, spatial: int = 2) -> Any:
    """A layer's input as the image batch ``(N, C, H, W)`` its windows run on: a batch of one for an unbatched
    input, and, for the 1-d layers (``spatial=1``), ``(N, C, L)`` as images of height 1 ``(N, C, 1, L)``."""
    batch = as_batch(x, spatial)
    return batch if spatial == 2 else namespace_of(x).expand_dims(batch, axis=2)


def from_images(y: Any, x: Any, spatial: int = 2) -> Any:
    """The inverse of :func:`to_images`: an image batch back in the layout of the layer's input ``x``."""
    y = y if spatial == 2 else y[:, :, 0, :]
    return y if x.ndim == spatial + 2 else y[0, ...]


def _offset(a: int, b: int, stride: Pairs, dilation: Pairs, out: Pairs) -> Tuple[slice, ...]:
    """The index of offset ``(a, b)``'s strided slice of a padded batch: rows ``i*sh + a*dh``, columns
    ``j*sw + b*dw``."""
    (sh, sw), (dh, dw), (ho, wo) = stride, dilation, out
    return (slice(None), slice(None), slice(a * dh, a * dh + (ho - 1) * sh + 1, sh),
            slice(b * dw, b * dw + (wo - 1) * sw + 1, sw))


def offset_slices(padded: Any, kernel: Pairs, stride: Pairs, dilation: Pairs, out: Pairs) -> List[Any]:
    """The ``(N, C, H_out, W_out)`` slice of each kernel offset ``k = a*kw + b`` (row-major) of a padded batch.

    The geometry comes in as pairs of ints already checked
    (:func:`conv_output_size` gives ``out``).
    """
    kh, kw = kernel
    return [padded[_offset(a, b, stride, dilation, out)] for a in range(kh) for b in range(kw)]


def im2col(
    x: Any,
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    fill_value: float = 0.0,
) -> Any:
    r"""All windows of ``x`` ``(N, C, H, W)`` as a new ``(N, C, kh, kw, H_out, W_out)`` array.

    ``cols[n, c, a, b, i, j] = x_padded[n, c, i*sh + a*dh, j*sw + b*dw]``,
    padding with ``fill_value`` (``-inf`` suits a max pool): the padded
    input sliced once per kernel offset, the slices stacked.  The dtype and
    the array namespace are ``x``'s.  ``cols.reshape(N, C*kh*kw, H_out*W_out)``
    gives the matrices of a convolution as a batched matmul (see the module
    docstring).
    """
    x = x if is_array(x) else np.asarray(x)
    xp = namespace_of(x)
    kernel, strides, pads, dilations, out = _geometry(tuple(x.shape), kernel_size, stride, padding, dilation)
    slices = offset_slices(pad(x, pads, fill_value), kernel, strides, dilations, out)
    return xp.reshape(xp.stack(slices, axis=2), tuple(x.shape[:2]) + kernel + out)


def col2im(
    cols: Any,
    input_shape: Sequence[int],
    kernel_size: Pair,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
) -> Any:
    r"""The adjoint of :func:`im2col` (zero padding): sum the columns back onto an ``input_shape`` image.

    ``cols`` has the layout ``(N, C, kh, kw, H_out, W_out)`` of :func:`im2col`
    or its reshape ``(N, C*kh*kw, H_out*W_out)``.  Returns a ``(N, C, H, W)``
    array of ``cols``' dtype and namespace with

    .. math::
        \text{dx}[n, c, u, v] = \sum_{a, b, i, j:\ i s_h + a d_h - p_h = u,\ j s_w + b d_w - p_w = v}
        \text{cols}[n, c, a, b, i, j],

    entries that fall on the padding being dropped: the backward pass of a
    convolution or pool, :math:`\partial L/\partial x` from
    :math:`\partial L/\partial\,\text{cols}`.  Each pixel collects its parts in
    offset order, row-major, from zero.
    """
    cols = cols if is_array(cols) else np.asarray(cols)
    xp = namespace_of(cols)
    input_shape = tuple(int(d) for d in input_shape)
    kernel, strides, (ph, pw), dilations, (ho, wo) = _geometry(input_shape, kernel_size, stride, padding, dilation)
    n, c, h, w = input_shape
    (kh, kw) = kernel
    six = (n, c, kh, kw, ho, wo)
    if tuple(cols.shape) != six and tuple(cols.shape) != (n, c * kh * kw, ho * wo):
        raise ValueError(
            f"col2im: columns for input {input_shape} must have shape {six} or "
            f"{(n, c * kh * kw, ho * wo)}, got {tuple(cols.shape)}"
        )
    cols = xp.reshape(cols, six)
    dx = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)  # the padded gradient
    for a in range(kh):
        for b in range(kw):
            dx[_offset(a, b, strides, dilations, (ho, wo))] += cols[:, :, a, b, :, :]  # offset (a, b)'s columns
    return dx[:, :, ph:ph + h, pw:pw + w]  # the padding cropped off


def check_images(node: Any, x: Any, spatial: int = 2, batched_only: bool = False) -> None:
    """Refuse anything but an image batch ``(N, C, H, W)`` or one image ``(C, H, W)``, naming the node.

    ``spatial=1`` is the 1-d layers' ``(N, C, L)`` or ``(C, L)``; ``batched_only``
    refuses the unbatched form.
    """
    axes = "H, W" if spatial == 2 else "L"
    if x.ndim == spatial + 2 or (x.ndim == spatial + 1 and not batched_only):
        return
    forms = f"{spatial + 2}-d input (N, C, {axes})" + ("" if batched_only else f" or {spatial + 1}-d input (C, {axes})")
    raise ValueError(f"{type(node).__name__} expects {forms}, got {x.ndim}-d input of shape {tuple(x.shape)}")
