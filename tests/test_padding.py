"""Padding: pad_edges and fold_edges against torch.nn.functional.pad in every mode; ZeroPad2d and ReflectionPad2d."""
from __future__ import annotations

import numpy as np
import pytest

from layer_oracle import assert_like_torch
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import ReflectionPad2d, ZeroPad2d
from nn_from_scratch.nodes.padding import fold_edges, pad_edges

PADS = [(1, 2, 3, 0), (2, 2, 1, 1), (0, 3, 2, 3), (3, 3, 3, 3), (0, 0, 0, 0)]
TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


@pytest.mark.parametrize("mode", list(TORCH_MODE))
@pytest.mark.parametrize("pads", PADS, ids=str)
def test_pad_and_fold_are_torchs_pad_and_its_gradient(torch, rng, mode, pads):
    x = rng.standard_normal((2, 3, 4, 5))
    if mode == "reflect" and max(pads) >= 4:
        pytest.skip("reflection needs less padding than the input")
    y = pad_edges(x, pads, mode)
    g = rng.standard_normal(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.pad(tx, pads, mode=TORCH_MODE[mode])
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(fold_edges(g, pads, mode, (4, 5)), tx.grad.numpy(), rtol=1e-14, atol=1e-14)
    # the fold is the transpose: <P x, g> = <x, Pᵀ g>
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, fold_edges(g, pads, mode, (4, 5))), rtol=1e-12)


@pytest.mark.parametrize("pads", [(-1, 2, 1, -2), (-2, -3, 0, 0), (1, 1, -4, 0)], ids=str)
def test_zero_padding_crops_with_negative_amounts(torch, rng, pads):
    node = ZeroPad2d(pads)
    assert_like_torch(torch, node, torch.nn.ZeroPad2d(pads), rng.standard_normal((2, 3, 4, 5)), rng=rng)


@pytest.mark.parametrize("cls, name", [(ZeroPad2d, "ZeroPad2d"), (ReflectionPad2d, "ReflectionPad2d")])
@pytest.mark.parametrize("padding", [1, (2, 0, 1, 3)], ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layers_match_torch(engine_path, torch, rng, cls, name, padding, dtype):
    node, twin = cls(padding), getattr(torch.nn, name)(padding)
    for shape in [(2, 3, 4, 5), (3, 4, 5)]:
        assert_like_torch(torch, node, twin, rng.standard_normal(shape).astype(dtype), rng=rng)
    assert repr(node) == repr(twin)
    assert node.parameters() == [] and node.state_dict() == {}


@pytest.mark.parametrize("node", [ZeroPad2d((1, 2, 0, 1)), ReflectionPad2d((1, 2, 3, 1)), ZeroPad2d((-1, 2, 1, 0))],
                         ids=repr)
def test_gradcheck(engine_path, rng, node):
    report = assert_gradients(node, rng.standard_normal((2, 2, 4, 3)), rng=rng)
    assert [c.name for c in report.comparisons] == ["backward vs Jᵀg", "jacobian vs finite diff."]


def test_zero_padding_takes_any_input_of_two_axes_or_more(torch, rng):
    for shape in [(4, 5), (1, 2, 2, 4, 5)]:
        assert_like_torch(torch, ZeroPad2d(1), torch.nn.ZeroPad2d(1), rng.standard_normal(shape), rng=rng)
    with pytest.raises(ValueError, match=r"ZeroPad2d expects at least 2-d input \(\.\.\., H, W\), got 1-d"):
        ZeroPad2d(1).forward(np.zeros(5))


def test_float16_is_padded_in_float32_and_rounded_once(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float16)
    node = ReflectionPad2d(2)
    y = node.forward(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, pad_edges(x.astype(np.float64), (2, 2, 2, 2), "reflect").astype(np.float16))
    g = rng.standard_normal(y.shape).astype(np.float16)
    dx = node.backward(g)
    expected = fold_edges(g.astype(np.float32), (2, 2, 2, 2), "reflect", (3, 4)).astype(np.float16)
    assert dx.dtype == np.float16
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("make, shape, message", [
    (lambda: ReflectionPad2d(2), (1, 1, 2, 5), r"reflect padding must be smaller than the input along the height: "
                                               r"padding \(2, 2\), height 2"),
    (lambda: ReflectionPad2d(1), (4, 5), r"ReflectionPad2d expects 3-d or 4-d input \(\.\.\., H, W\), got 2-d"),
    (lambda: ReflectionPad2d(1), (1, 1, 1, 1, 1), "got 5-d input"),
    (lambda: ZeroPad2d((-3, -3, 0, 0)), (1, 1, 2, 5), r"the padding \(-3, -3\) crops more than the width 5"),
])
def test_bad_input_is_refused(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make().forward(np.zeros(shape))


@pytest.mark.parametrize("make, message", [
    (lambda: ZeroPad2d((1, 2)), r"ZeroPad2d: padding must be an integer or four integers \(left, right, top, bottom\)"),
    (lambda: ZeroPad2d(1.5), "padding must be an integer or four integers"),
    (lambda: ZeroPad2d(True), "padding must be an integer or four integers"),
    (lambda: ReflectionPad2d((1, -1, 0, 0)), r"ReflectionPad2d: padding must be non-negative, got \(1, -1, 0, 0\)"),
])
def test_bad_padding_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
