"""Linear: gradients, torch's layout and initialisation, parameter-gradient accumulation."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients, check_node
from nn_from_scratch.nodes import Linear


@pytest.mark.parametrize("shape", [(4, 3), (3,), (2, 5, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_for_inputs_and_parameters(rng, shape, bias):
    layer = Linear(3, 2, bias=bias, rng=1)
    report = assert_gradients(layer, rng.standard_normal(shape))
    names = [c.name for c in report.comparisons]
    assert "d/d weight vs finite diff." in names
    assert ("d/d bias vs finite diff." in names) == bias


def test_jacobian_is_block_diagonal_in_the_weight(rng):
    layer = Linear(3, 2, rng=0)
    jac = layer.jacobian(rng.standard_normal((4, 3)))
    assert jac.shape == (4, 2, 4, 3)
    for n in range(4):
        np.testing.assert_array_equal(jac[n, :, n, :], layer.weight.value)
    np.testing.assert_array_equal(jac[0, :, 1, :], np.zeros((2, 3)))


def test_parameter_gradients_accumulate_until_zero_grad(rng):
    layer = Linear(3, 2, rng=0)
    x, g1, g2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    layer.forward(x)
    layer.backward(g1)
    layer.forward(x)
    layer.backward(g2)
    np.testing.assert_allclose(layer.weight.grad, (g1 + g2).T @ x, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.bias.grad, (g1 + g2).sum(0), rtol=1e-12, atol=1e-14)
    layer.zero_grad()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((2, 3)))
    np.testing.assert_array_equal(layer.bias.grad, np.zeros(2))


def test_jacobian_does_not_touch_parameter_gradients(rng):
    layer = Linear(3, 2, rng=0)
    layer.forward(rng.standard_normal((2, 3)))
    layer.jacobian()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros((2, 3)))


def test_default_init_follows_torch_bounds():
    layer = Linear(400, 300, rng=0)
    bound = 1 / math.sqrt(400)
    assert np.max(np.abs(layer.weight.value)) <= bound
    np.testing.assert_allclose(np.max(np.abs(layer.weight.value)), bound, rtol=1e-3, atol=0)
    np.testing.assert_allclose(layer.weight.value.std(), bound / math.sqrt(3), rtol=1e-2, atol=0)
    assert np.max(np.abs(layer.bias.value)) <= bound


@pytest.mark.parametrize("init, std", [("he", math.sqrt(2 / 500)), ("xavier", math.sqrt(2 / 800))])
def test_other_inits(init, std):
    layer = Linear(500, 300, init=init, rng=0)
    np.testing.assert_allclose(layer.weight.value.std(), std, rtol=2e-2, atol=0)
    np.testing.assert_array_equal(layer.bias.value, np.zeros(300))


def test_callable_and_zero_init():
    layer = Linear(2, 3, init=lambda shape, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(layer.weight.value, np.full((3, 2), 0.5))
    np.testing.assert_array_equal(Linear(2, 3, init="zeros").weight.value, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        Linear(2, 3, init=lambda shape, rng: np.zeros((2, 2)))
    with pytest.raises(ValueError, match="init must be one of"):
        Linear(2, 3, init="bogus")


def test_same_seed_same_weights():
    np.testing.assert_array_equal(Linear(4, 3, rng=7).weight.value, Linear(4, 3, rng=7).weight.value)
    assert not np.array_equal(Linear(4, 3, rng=7).weight.value, Linear(4, 3, rng=8).weight.value)


def test_float32_layer_stays_float32(rng):
    layer = Linear(3, 2, rng=0, dtype=np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones((4, 2), dtype=np.float32))
    assert y.dtype == np.float32 and dx.dtype == np.float32 and layer.weight.grad.dtype == np.float32


@pytest.mark.parametrize("args", [(0, 2), (2, -1), (2.5, 2), (True, 2)])
def test_bad_sizes(args):
    with pytest.raises(ValueError, match="positive integer"):
        Linear(*args)


def test_wrong_input_width_names_both(rng):
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\), got \(4, 2\)"):
        Linear(3, 2).forward(np.zeros((4, 2)))


def test_state_dict_keys_and_oracle(torch, rng):
    layer = Linear(5, 4, rng=3)
    ref = torch.nn.Linear(5, 4).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    assert sorted(layer.state_dict()) == sorted(ref.state_dict())
    x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 4))
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, ref.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_check_node_report_lists_parameters(rng):
    report = check_node(Linear(2, 2, rng=0), rng.standard_normal((3, 2)))
    assert report.ok, repr(report)
    assert len(report.comparisons) == 4
