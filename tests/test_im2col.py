"""im2col / col2im, textbook and engine: against naive loops, the adjoint identity, layouts, the output-size errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_from_scratch.engine import windows as fast_windows
from nn_from_scratch.nodes.windows import as_pair, col2im, conv_output_size, im2col, pad


def _pairs(kernel, stride, padding, dilation):
    return as_pair("k", kernel), as_pair("s", stride), as_pair("p", padding, 0), as_pair("d", dilation)


def engine_im2col(x, kernel, stride=1, padding=0, dilation=1, fill_value=0.0):
    """The engine's im2col (one copy of the strided windows) behind the textbook one's signature."""
    kernel, stride, padding, dilation = _pairs(kernel, stride, padding, dilation)
    out = conv_output_size(x.shape[2:], kernel, stride, padding, dilation)
    return fast_windows.im2col(pad(x, padding, fill_value), kernel, stride, dilation, out)


def engine_col2im(cols, shape, kernel, stride=1, padding=0, dilation=1):
    """The engine's col2im (the lattice scatter) behind the textbook one's signature."""
    return fast_windows.col2im(cols, shape, *_pairs(kernel, stride, padding, dilation))


#: the textbook helpers of nodes/windows.py and the engine's forms, held to the same naive loops
IMPLEMENTATIONS = {"textbook": (im2col, col2im), "engine": (engine_im2col, engine_col2im)}
both = pytest.mark.parametrize("which", list(IMPLEMENTATIONS))


def naive_im2col(x, kernel, stride, padding, dilation, fill_value=0.0):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cols = np.full((n, c, kh, kw, ho, wo), fill_value, dtype=x.dtype)
    for s, ch, a, b, i, j in itertools.product(range(n), range(c), range(kh), range(kw), range(ho), range(wo)):
        u, v = i * sh + a * dh - ph, j * sw + b * dw - pw
        if 0 <= u < h and 0 <= v < w:
            cols[s, ch, a, b, i, j] = x[s, ch, u, v]
    return cols


def naive_col2im(cols, shape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, kh, kw, ho, wo = cols.shape
    dx = np.zeros(shape, dtype=cols.dtype)
    for s, ch, a, b, i, j in itertools.product(range(n), range(c), range(kh), range(kw), range(ho), range(wo)):
        u, v = i * sh + a * dh - ph, j * sw + b * dw - pw
        if 0 <= u < shape[2] and 0 <= v < shape[3]:
            dx[s, ch, u, v] += cols[s, ch, a, b, i, j]
    return dx


GEOMETRIES = [
    # (H, W), kernel, stride, padding, dilation
    ((5, 5), (3, 3), (1, 1), (0, 0), (1, 1)),
    ((5, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((6, 7), (2, 3), (2, 1), (1, 2), (1, 1)),
    ((7, 6), (3, 2), (2, 2), (0, 1), (2, 1)),
    ((7, 7), (3, 3), (3, 2), (2, 0), (2, 3)),
    ((4, 9), (1, 4), (1, 3), (0, 0), (1, 2)),
    ((3, 3), (1, 1), (2, 2), (2, 2), (1, 1)),  # more padding than kernel: pure-padding windows
    ((2, 2), (5, 5), (1, 1), (2, 2), (1, 1)),  # kernel as large as the padded input
    ((6, 5), (2, 2), (4, 3), (1, 1), (3, 2)),  # stride larger than the kernel: unread pixels
]


@both
@pytest.mark.parametrize("hw, kernel, stride, padding, dilation", GEOMETRIES)
def test_im2col_and_col2im_match_naive_loops(rng, which, hw, kernel, stride, padding, dilation):
    im2col, col2im = IMPLEMENTATIONS[which]
    x = rng.standard_normal((2, 3) + hw)
    cols = im2col(x, kernel, stride, padding, dilation)
    expected = naive_im2col(x, kernel, stride, padding, dilation)
    assert cols.shape == expected.shape and cols.flags.c_contiguous and cols.dtype == x.dtype
    np.testing.assert_array_equal(cols, expected)
    c = rng.standard_normal(cols.shape)
    dx = col2im(c, x.shape, kernel, stride, padding, dilation)
    assert dx.shape == x.shape and dx.dtype == c.dtype
    np.testing.assert_allclose(dx, naive_col2im(c, x.shape, stride, padding, dilation), rtol=1e-13, atol=1e-13)


@both
@pytest.mark.parametrize("hw, kernel, stride, padding, dilation", GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(rng, which, hw, kernel, stride, padding, dilation):
    im2col, col2im = IMPLEMENTATIONS[which]
    x = rng.standard_normal((3, 2) + hw)
    cols = im2col(x, kernel, stride, padding, dilation)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, col2im(c, x.shape, kernel, stride, padding, dilation))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw, kernel, stride, padding, dilation", GEOMETRIES)
def test_the_lattice_scatter_gives_the_textbook_col2ims_bits(rng, hw, kernel, stride, padding, dilation):
    """Both add each pixel's parts in offset order from zero: the engine changes the passes, not the sums."""
    x = rng.standard_normal((2, 3) + hw)
    c = rng.standard_normal(im2col(x, kernel, stride, padding, dilation).shape)
    np.testing.assert_array_equal(engine_col2im(c, x.shape, kernel, stride, padding, dilation),
                                  col2im(c, x.shape, kernel, stride, padding, dilation))


@both
@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    dh=st.integers(1, 3),
    dw=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_random_geometries_match_naive_loops(which, h, w, kh, kw, sh, sw, ph, pw, dh, dw, seed):
    im2col, col2im = IMPLEMENTATIONS[which]
    geometry = ((kh, kw), (sh, sw), (ph, pw), (dh, dw))
    fits = dh * (kh - 1) + 1 <= h + 2 * ph and dw * (kw - 1) + 1 <= w + 2 * pw
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, h, w))
    if not fits:
        with pytest.raises(ValueError, match="larger than the padded input"):
            im2col(x, *geometry)
        return
    cols = im2col(x, *geometry)
    np.testing.assert_array_equal(cols, naive_im2col(x, *geometry))
    c = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(
        col2im(c, x.shape, *geometry), naive_col2im(c, x.shape, *geometry[1:]), rtol=1e-13, atol=1e-13
    )


@both
def test_fill_value_pads_for_max_pooling(rng, which):
    im2col = IMPLEMENTATIONS[which][0]
    x = rng.standard_normal((1, 2, 3, 4))
    cols = im2col(x, 2, 2, 1, fill_value=-np.inf)
    np.testing.assert_array_equal(cols, naive_im2col(x, (2, 2), (2, 2), (1, 1), (1, 1), fill_value=-np.inf))
    assert np.isneginf(cols[:, :, 0, 0, 0, 0]).all()


@both
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(rng, which, dtype):
    im2col, col2im = IMPLEMENTATIONS[which]
    x = rng.standard_normal((2, 3, 5, 5)).astype(dtype)
    cols = im2col(x, 3, 1, 1)
    assert cols.dtype == dtype
    assert col2im(cols, x.shape, 3, 1, 1).dtype == dtype


def test_matrix_layout_gives_the_convolution_as_one_matmul(rng):
    x, weight = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 2, 3))
    cols = im2col(x, (2, 3), 1, 0)
    y = weight.reshape(4, -1) @ cols.reshape(2, 3 * 2 * 3, -1)
    expected = np.einsum("ocab,ncabij->noij", weight, naive_im2col(x, (2, 3), (1, 1), (0, 0), (1, 1)))
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
    # col2im takes the flat (N, C*kh*kw, H_out*W_out) layout as well
    flat = rng.standard_normal((2, 18, 5 * 3))
    np.testing.assert_array_equal(
        col2im(flat, x.shape, (2, 3)), col2im(flat.reshape(2, 3, 2, 3, 5, 3), x.shape, (2, 3))
    )


@both
def test_non_contiguous_input(rng, which):
    im2col = IMPLEMENTATIONS[which][0]
    x = rng.standard_normal((3, 4, 9, 8)).transpose(1, 0, 3, 2)[:, :, ::2]  # (4, 3, 4, 9), odd strides
    np.testing.assert_array_equal(im2col(x, 2, (1, 2), 1), naive_im2col(x, (2, 2), (1, 2), (1, 1), (1, 1)))


@both
def test_empty_batch(which):
    im2col, col2im = IMPLEMENTATIONS[which]
    cols = im2col(np.zeros((0, 2, 5, 5)), 3, 1, 1)
    assert cols.shape == (0, 2, 3, 3, 5, 5)
    assert col2im(cols, (0, 2, 5, 5), 3, 1, 1).shape == (0, 2, 5, 5)


@pytest.mark.parametrize(
    "args, expected",
    [
        (((28, 28), 3, 1, 1, 1), (28, 28)),
        (((28, 28), 3, 2, 1, 1), (14, 14)),
        (((7, 9), (3, 2), (2, 1), (0, 1), (1, 2)), (3, 9)),
        (((5, 5), 3, 1, 0, 2), (1, 1)),
        (((1, 1), 3, 1, 1, 1), (1, 1)),
    ],
)
def test_output_size(args, expected):
    assert conv_output_size(*args) == expected


def test_output_size_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"kernel \(5, 5\) is larger than the padded input along the height: "
                                         r"height 3 \+ 2 \* padding 0 = 3 < 5"):
        conv_output_size((3, 8), 5)
    with pytest.raises(ValueError, match=r"\(dilated by 3: 7\).*width 4 \+ 2 \* padding 1 = 6 < 7"):
        conv_output_size((9, 4), 3, padding=1, dilation=3)
    with pytest.raises(ValueError, match=r"stride must be a positive integer .*got 0"):
        conv_output_size((5, 5), 3, stride=0)
    with pytest.raises(ValueError, match=r"stride .*got \(1, -2\)"):
        conv_output_size((5, 5), 3, stride=(1, -2))
    with pytest.raises(ValueError, match=r"dilation must be a positive integer .*got 0"):
        conv_output_size((5, 5), 3, dilation=0)
    with pytest.raises(ValueError, match=r"padding must be a non-negative integer .*got -1"):
        conv_output_size((5, 5), 3, padding=-1)
    with pytest.raises(ValueError, match=r"kernel_size must be a positive integer .*got \(0, 3\)"):
        conv_output_size((5, 5), (0, 3))
    with pytest.raises(ValueError, match=r"larger than the padded input"):
        im2col(np.zeros((1, 1, 2, 2)), 3)


@pytest.mark.parametrize("value", [2.0, True, (1, 2, 3), "3", (1, 1.5), None])
def test_as_pair_rejects_non_integers(value):
    with pytest.raises(ValueError, match="stride must be a positive integer or a pair"):
        as_pair("stride", value)


def test_as_pair_accepts_ints_and_pairs():
    assert as_pair("k", 3) == (3, 3)
    assert as_pair("k", (2, np.int64(5))) == (2, 5)
    assert as_pair("p", 0, 0) == (0, 0)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"4-d \(N, C, H, W\).*\(3, 5, 5\)"):
        im2col(np.zeros((3, 5, 5)), 3)
    with pytest.raises(ValueError, match=r"must have shape \(1, 2, 3, 3, 3, 3\) or \(1, 18, 9\), got \(1, 2, 9\)"):
        col2im(np.zeros((1, 2, 9)), (1, 2, 5, 5), 3)


# ------------------------------------------------------------------ wide columns (stride 1)
@pytest.mark.parametrize("hw, kernel, padding, dilation", [
    ((5, 6), (3, 3), (1, 1), (1, 1)), ((4, 7), (2, 3), (0, 2), (1, 1)), ((6, 5), (3, 2), (2, 1), (2, 1)),
    ((3, 3), (1, 1), (0, 0), (1, 1)), ((4, 6), (3, 3), (0, 0), (1, 2))])
@pytest.mark.parametrize("block_samples", [1, 2, 3])
def test_wide_columns_agree_with_im2col_and_col2im_is_their_adjoint(rng, hw, kernel, padding, dilation,
                                                                    block_samples):
    from nn_from_scratch.engine.convolution import WideColumns

    x = rng.standard_normal((3, 2) + hw)
    probe = WideColumns(x.shape, kernel, padding, dilation)
    sample_bytes = probe.rows * probe.segment * x.itemsize
    wide = WideColumns(x.shape, kernel, padding, dilation, block_bytes=block_samples * sample_bytes)
    blocks = wide.blocks()
    assert [len(range(*s.indices(3))) for s in blocks] == [block_samples] * (3 // block_samples) + (
        [3 % block_samples] if 3 % block_samples else [])
    padded = wide.pad(x)
    buffer = wide.buffer(wide.rows, x.dtype)
    cols = np.concatenate([wide.im2col(padded, s, buffer).copy() for s in blocks], axis=1)
    (ho, wo), (hp, wp) = wide.out, wide.grid  # rows and row length of one image in the flat layout
    reference = im2col(x, kernel, 1, padding, dilation)  # (N, C, kh, kw, H_out, W_out)
    n, c, kh, kw = reference.shape[:4]
    assert cols.shape == (c * kh * kw, n * hp * wp)  # one image with its share of padding per sample, side by side
    kept = cols.reshape(c, kh, kw, n, hp, wp)[..., :ho, :wo].transpose(3, 0, 1, 2, 4, 5)
    np.testing.assert_array_equal(kept, reference)
    # col2im of offset-major columns (zero in the scratch columns) is the transpose of im2col
    g = rng.standard_normal(reference.shape)
    widened = np.zeros(reference.shape[:4] + (hp, wp))
    widened[..., :ho, :wo] = g
    offset_major = widened.transpose(2, 3, 1, 0, 4, 5).reshape(cols.shape)
    dx = np.full(x.shape, np.nan)
    for s in blocks:
        block = np.ascontiguousarray(offset_major[:, s.start * wide.segment:s.stop * wide.segment])
        wide.col2im(block, s, dx)
    np.testing.assert_allclose(dx, col2im(g, x.shape, kernel, 1, padding, dilation), rtol=1e-13, atol=1e-13)
    weight = rng.standard_normal((4, 2) + tuple(kernel))
    np.testing.assert_array_equal(WideColumns.offset_major(weight),
                                  weight.transpose(2, 3, 1, 0).reshape(-1, 4))
    # widen and crop are inverse on every block, and widen leaves zeros in the scratch columns
    out_grad = rng.standard_normal((3, 4, ho, wo))
    out_buffer = wide.buffer(4, x.dtype)
    out_buffer.fill(np.nan)  # stale contents must not leak into the scratch columns
    back = np.full(out_grad.shape, np.nan)
    for s in blocks:
        block = wide.widen(out_grad, s, out_buffer)
        scratch = np.ones((hp, wp), dtype=bool)
        scratch[:ho, :wo] = False
        np.testing.assert_array_equal(block.reshape(4, -1, hp, wp)[:, :, scratch], 0)
        wide.crop(block, s, back)
    np.testing.assert_array_equal(back, out_grad)


# ------------------------------------------------------------------ windows that run past the end (ceil_mode)
@settings(max_examples=80, deadline=None)
@given(size=st.integers(1, 9), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 3),
       ceil=st.booleans())
def test_window_output_size_is_torchs_and_the_extension_holds_the_last_window(torch, size, k, s, p, d, ceil):
    from nn_from_scratch.nodes.windows import window_output_size

    if p > k // 2:
        return
    try:
        expected = torch.nn.functional.max_pool1d(torch.zeros(1, 1, size), k, s, p, d, ceil).shape[-1]
    except RuntimeError:
        expected = None
    if expected is None or expected < 1:
        with pytest.raises(ValueError, match="larger than the padded input|output is too small"):
            window_output_size((1, size), (1, k), (1, s), (0, p), (1, d), ceil)
        return
    (_, out), (_, extra) = window_output_size((1, size), (1, k), (1, s), (0, p), (1, d), ceil)
    assert out == expected
    last_end = (out - 1) * s + d * (k - 1) + 1  # in padded coordinates
    assert extra == max(0, last_end - (size + 2 * p)) and (extra == 0 or ceil)
    assert (out - 1) * s - p < size  # the last window starts inside the input or the left padding


def test_extend_and_the_image_layouts(rng):
    from nn_from_scratch.nodes.windows import as_tuple, extend, from_images, to_images

    x = rng.standard_normal((2, 3, 4, 5))
    grown = extend(x, (1, 2), -np.inf)
    assert grown.shape == (2, 3, 5, 7) and np.isneginf(grown[:, :, 4]).all() and np.isneginf(grown[..., 5:]).all()
    np.testing.assert_array_equal(grown[:, :, :4, :5], x)
    assert extend(x, (0, 0)) is x
    assert to_images(x[0]).shape == (1, 3, 4, 5) and from_images(to_images(x[0]), x[0]).shape == (3, 4, 5)
    sequence = x[:, :, 0]
    assert to_images(sequence, 1).shape == (2, 3, 1, 5)
    np.testing.assert_array_equal(from_images(to_images(sequence[0], 1), sequence[0], 1), sequence[0])
    assert as_tuple("k", 3, 1) == (3,) and as_tuple("k", (2, 3, 4), 3) == (2, 3, 4)
    with pytest.raises(ValueError, match=r"k must be a positive integer or a 1-tuple of positive integers, "
                                         r"got \(3, 3\)"):
        as_tuple("k", (3, 3), 1)
