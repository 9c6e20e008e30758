"""SiLU, Mish, SELU, LogSigmoid, Hardtanh, ReLU6, Hardswish and PReLU: gradient checks, the torch oracle (at the
kinks, at NaN and infinities, for infinite upstream gradients), dtypes, PReLU's parameter, bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import SELU, Hardswish, Hardtanh, LogSigmoid, Mish, PReLU, ReLU6, SiLU


def _prelu(torch, t, weight=(0.25,)):
    return torch.nn.functional.prelu(t, torch.tensor(weight, dtype=t.dtype))


# name -> (our node, the torch function of a tensor, the kinks)
CASES = {
    "SiLU": (SiLU, lambda torch, t: torch.nn.functional.silu(t), ()),
    "Mish": (Mish, lambda torch, t: torch.nn.functional.mish(t), ()),
    "SELU": (SELU, lambda torch, t: torch.nn.functional.selu(t), (0.0,)),
    "LogSigmoid": (LogSigmoid, lambda torch, t: torch.nn.functional.logsigmoid(t), ()),
    "Hardtanh": (Hardtanh, lambda torch, t: torch.nn.functional.hardtanh(t), (-1.0, 1.0)),
    "Hardtanh[-2, 0.5]": (lambda: Hardtanh(-2, 0.5), lambda torch, t: torch.nn.functional.hardtanh(t, -2, 0.5),
                          (-2.0, 0.5)),
    "ReLU6": (ReLU6, lambda torch, t: torch.nn.functional.relu6(t), (0.0, 6.0)),
    "Hardswish": (Hardswish, lambda torch, t: torch.nn.functional.hardswish(t), (-3.0, 3.0)),
    "PReLU": (PReLU, _prelu, (0.0,)),
}
NAMES = sorted(CASES)
#: The kinks of every case, infinities, NaN, saturation, the edges of float32's exponential, the smallest numbers.
SPECIAL = np.array([0.0, -0.0, -1.0, 1.0, -2.0, 0.5, -3.0, 3.0, 6.0, np.nan, np.inf, -np.inf, 20.0, -20.0, 1000.0,
                    -1000.0, 88.0, -88.0, 1e-300, -1e-300, 1e300, -1e300])


def make(name, dtype=np.float64):
    """The case's node; PReLU, which has its own dtype, in ``dtype``."""
    return PReLU(dtype=dtype) if name == "PReLU" else CASES[name][0]()


def away_from_kinks(x: np.ndarray, kinks) -> np.ndarray:
    for kink in kinks:
        x = np.where(np.abs(x - kink) < 0.05, x + 0.2, x)
    return x


def torch_faces(torch, name, x, g):
    tx = torch.tensor(x, requires_grad=True)
    ty = CASES[name][1](torch, tx)
    ty.backward(torch.tensor(g))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_in_float64(rng, name, shape):
    x = away_from_kinks(rng.standard_normal(shape) * 3, CASES[name][2])
    assert_gradients(CASES[name][0](), x, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_torch_in_float64(torch, rng, name):
    x = np.concatenate([rng.standard_normal(200) * 5, rng.uniform(-30, 30, 100)])
    g = rng.standard_normal(x.shape)
    y, dx = torch_faces(torch, name, x, g)
    node = CASES[name][0]()
    np.testing.assert_allclose(node.forward(x), y, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(node.backward(g), dx, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_at_the_kinks_infinities_and_nan_as_torch(torch, name, dtype):
    """Each special point alone (torch's scalar kernel) and all together (its vectorised one): the output, and the
    derivative at exactly each kink.  At NaN the derivative is NaN here, which torch gives in some kernels and
    not in others (see nn_from_scratch.nodes.activations_more)."""
    with np.errstate(over="ignore"):
        x = SPECIAL.astype(dtype)
    for points in [x] + [x[i:i + 1] for i in range(x.size)]:
        y, dx = torch_faces(torch, name, points, np.ones_like(points))
        node = make(name, dtype)
        with np.errstate(all="raise"):  # and silently: every overflow is part of the formula
            ours_y, ours_dx = node.forward(points), node.backward(np.ones_like(points))
        assert ours_y.dtype == ours_dx.dtype == dtype
        rtol = 1e-12 if dtype == np.float64 else 1e-6
        np.testing.assert_allclose(ours_y, y, rtol=rtol, atol=0, err_msg=f"{name} at {points}")
        nan = np.isnan(points)
        assert np.all(np.isnan(ours_dx[nan]) | (name == "PReLU")), f"{name}'(NaN) = {ours_dx[nan]}"
        np.testing.assert_allclose(ours_dx[~nan], dx[~nan], rtol=rtol, atol=0, err_msg=f"{name}' at {points}")


@pytest.mark.parametrize("name", NAMES)
def test_the_derivative_at_each_kink_is_torchs(torch, name):
    kinks = np.array(CASES[name][2] + (0.0,))
    _, expected = torch_faces(torch, name, kinks, np.ones_like(kinks))
    np.testing.assert_array_equal(CASES[name][0]().jacobian(kinks).diagonal(), expected)


@pytest.mark.parametrize("g_value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("name", NAMES)
def test_an_infinite_or_nan_upstream_gradient_gives_what_torch_gives(torch, name, g_value):
    x = SPECIAL[~np.isnan(SPECIAL)]
    g = np.full_like(x, g_value)
    _, expected = torch_faces(torch, name, x, g)
    node = CASES[name][0]()
    node.forward(x)
    with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as in torch
        np.testing.assert_allclose(node.backward(g), expected, rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_torch_float32(torch, rng, name):
    x = (rng.standard_normal(500) * 5).astype(np.float32)
    g = rng.standard_normal(500).astype(np.float32)
    y, dx = torch_faces(torch, name, x, g)
    node = make(name, np.float32)
    ours_y, ours_dx = node.forward(x), node.backward(g)
    assert ours_y.dtype == ours_dx.dtype == np.float32
    np.testing.assert_allclose(ours_y, y, rtol=3e-6, atol=1e-7)
    np.testing.assert_allclose(ours_dx, dx, rtol=3e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "PReLU"])
def test_float16_is_computed_in_float32_and_rounded_once(rng, name):
    x = (rng.standard_normal((4, 5)) * 4).astype(np.float16)
    g = rng.standard_normal((4, 5)).astype(np.float16)
    node = CASES[name][0]()
    y, dx = node.forward(x), node.backward(g)
    twin = CASES[name][0]()
    y32, dx32 = twin.forward(x.astype(np.float32)), twin.backward(g.astype(np.float32))
    assert y.dtype == dx.dtype == np.float16
    np.testing.assert_array_equal(y, y32.astype(np.float16))
    np.testing.assert_array_equal(dx, dx32.astype(np.float16))


@pytest.mark.parametrize("name", NAMES)
def test_the_jacobian_is_diagonal_and_gives_the_backward_pass(rng, name):
    x = away_from_kinks(rng.standard_normal((2, 3)) * 3, CASES[name][2])
    g = rng.standard_normal((2, 3))
    node = CASES[name][0]()
    node.forward(x)
    dx = node.backward(g, reset_after=False)
    jacobian = node.jacobian().reshape(6, 6)
    np.testing.assert_array_equal(jacobian, np.diag(np.diag(jacobian)))
    np.testing.assert_allclose(dx.reshape(-1), g.reshape(-1) @ jacobian, rtol=1e-14, atol=1e-15)


def test_silent_and_finite_at_plus_minus_1000(rng):
    x = np.array([-1000.0, 1000.0, -1e30, 1e30], dtype=np.float32)
    for name in NAMES:
        with np.errstate(all="raise"):
            node = CASES[name][0]()
            assert np.all(np.isfinite(node.forward(x))) and np.all(np.isfinite(node.backward(np.ones_like(x))))


# ================================================================= PReLU's parameter
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 2, 2)])
def test_prelu_per_channel_agrees_with_torch(torch, rng, shape):
    ours = PReLU(3, init=0.1)
    ours.weight.value[...] = [0.1, -0.5, 2.0]
    theirs = torch.nn.PReLU(3, init=0.1).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for _ in range(2):  # the weight's gradient accumulates on both sides
        x, g = rng.standard_normal(shape), rng.standard_normal(shape)
        x.flat[0] = 0.0
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert_gradients(ours, away_from_kinks(rng.standard_normal(shape), (0.0,)), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("shape", [(), (5,), (4, 3), (2, 3, 2)])
def test_prelu_with_one_slope_agrees_with_torch_on_any_shape(torch, rng, shape):
    ours = PReLU()
    theirs = torch.nn.PReLU().double()
    x, g = rng.standard_normal(shape), rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.backward(g), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-12)


def test_prelu_float32_state_dict_and_dtypes(torch, rng):
    ours = PReLU(2, dtype=np.float32)
    assert list(ours.state_dict()) == ["weight"] and ours.weight.dtype == np.float32
    np.testing.assert_array_equal(ours.weight.value, [0.25, 0.25])
    theirs = torch.nn.PReLU(2)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x, g = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)).astype(np.float32)
    y, dx = ours.forward(x), ours.backward(g)
    assert y.dtype == np.float32 and dx.dtype == np.float64  # the layer's dtype out, the input's gradient back
    tx = torch.tensor(x.astype(np.float32), requires_grad=True)
    theirs(tx).backward(torch.tensor(g))
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-6)
    half = PReLU(dtype=np.float16)
    assert half.forward(x).dtype == np.float16 and half.jacobian(x).dtype == np.float16


# ================================================================= bad arguments and bad input
@pytest.mark.parametrize("make, error, match", [
    (lambda: Hardtanh(1.0, -1.0), ValueError, "max_val .* must be greater than min_val"),
    (lambda: Hardtanh(1.0, 1.0), ValueError, "greater"),
    (lambda: Hardtanh("a"), TypeError, "min_val"),
    (lambda: Hardtanh(0.0, float("nan")), ValueError, "max_val"),
    (lambda: PReLU(0), ValueError, "num_parameters"),
    (lambda: PReLU(2.5), ValueError, "num_parameters"),
    (lambda: PReLU(init=float("inf")), ValueError, "init"),
    (lambda: PReLU(init=None), TypeError, "init"),
    (lambda: PReLU(dtype=np.int64), TypeError, "dtype"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("shape", [(), (3,), (4, 2), (2, 4, 3)])
def test_prelu_refuses_input_without_its_channels(shape):
    with pytest.raises(ValueError, match="needs 3 channels on axis 1"):
        PReLU(3).forward(np.zeros(shape))


def test_parameter_free_and_reprs():
    for name in NAMES:
        node = CASES[name][0]()
        assert list(node.state_dict()) == (["weight"] if name == "PReLU" else [])
    assert repr(Hardtanh(-2, 0.5)) == "Hardtanh(min_val=-2.0, max_val=0.5)" and repr(ReLU6()) == "ReLU6()"
    assert repr(PReLU(3)) == "PReLU(num_parameters=3)"
