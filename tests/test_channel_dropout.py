"""Dropout2d: whole channels dropped by the node's generator, torch's scaling, eval mode and input layouts."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Dropout2d


def test_dropout2d_zeroes_whole_channels_and_scales_the_rest(rng):
    node = Dropout2d(0.4, rng=0)
    x = rng.standard_normal((64, 8, 3, 5)) + 5
    y = node.forward(x)
    kept = (y != 0).all(axis=(2, 3))
    assert np.array_equal(kept, (y != 0).any(axis=(2, 3)))  # a map is all kept or all dropped
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-15)
    assert abs(kept.mean() - 0.6) < 0.06
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(node.backward(g, reset_after=False), np.where(y != 0, g / 0.6, 0))
    assert node.jacobian().shape == y.shape + x.shape


def test_dropout2d_three_axes_is_torchs_n_c_l(rng):
    y = Dropout2d(0.5, rng=1).forward(np.ones((6, 4, 5)))
    assert np.array_equal((y == 0).all(axis=2), (y == 0).any(axis=2))  # one entry per (n, c), as torch today


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dropout2d_agrees_with_torch_given_the_mask(torch, rng, dtype):
    x = rng.standard_normal((3, 4, 2, 3)).astype(dtype)
    mask = rng.random((3, 4, 1, 1)) > 0.3
    node = Dropout2d(0.3, rng=0)
    node.fix_mask(mask)
    tx = torch.tensor(x, requires_grad=True)
    ty = tx * torch.tensor(mask.astype(dtype)) / 0.7  # torch's formula with this mask
    g = rng.standard_normal(x.shape).astype(dtype)
    ty.backward(torch.tensor(g))
    y, dx = node.forward(x), node.backward(g)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6 if dtype == np.float32 else 1e-15)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-6 if dtype == np.float32 else 1e-15)
    if dtype == np.float64:
        assert_gradients(node, x)


def test_dropout2d_eval_p0_p1_seeds_and_arguments(torch, rng):
    x = rng.standard_normal((2, 3, 4, 4))
    node = Dropout2d(0.5, rng=7)
    node.eval()
    assert node.forward(x) is x or np.array_equal(node.forward(x), x)
    np.testing.assert_array_equal(Dropout2d(0.0).forward(x), x)
    np.testing.assert_array_equal(Dropout2d(1.0).forward(x), 0 * x)
    np.testing.assert_array_equal(Dropout2d(0.5, rng=3).forward(x), Dropout2d(0.5, rng=3).forward(x))
    seeded = Dropout2d(0.5, rng=3)
    expected = seeded.evaluate(x)  # the next mask, without drawing it
    np.testing.assert_array_equal(seeded.forward(x), expected)
    assert repr(Dropout2d(0.3)) == repr(torch.nn.Dropout2d(0.3)) == "Dropout2d(p=0.3, inplace=False)"
    assert Dropout2d(0.3, True).inplace
    with pytest.raises(ValueError, match=r"Dropout2d expects 4-d input \(N, C, H, W\) or 3-d input \(N, C, L\)"):
        Dropout2d().forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        Dropout2d(1.5)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        Dropout2d(0.5, "no")
    original = x.copy()
    Dropout2d(0.5, True, rng=0).forward(x)
    np.testing.assert_array_equal(x, original)  # never in place


def test_dropout2d_float16_in_float32(rng):
    x = rng.standard_normal((2, 3, 2, 2)).astype(np.float16)
    node = Dropout2d(0.5, rng=0)
    y = node.forward(x)
    assert y.dtype == np.float16
    node.fix_mask(y[:, :, :1, :1] != 0)
    np.testing.assert_array_equal(node.forward(x), (x.astype(np.float32) * (y[:, :, :1, :1] != 0) * 2).astype(
        np.float16))
