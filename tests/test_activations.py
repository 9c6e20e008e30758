"""Activations: gradient checks, the torch oracle, dtypes, stability, and the erf behind the exact GELU.

The checks of numbers run on both paths (the ``engine_path`` fixture): the textbook formulas and the engine's
kernels (``nn_from_scratch.engine.activations``).  The last section holds the two paths against each other and
checks that the switch really chooses between them."""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nn_from_scratch import engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from nn_from_scratch.nodes.special import erf, erfc

# name -> (our node, the torch function applied to a tensor)
CASES = {
    "relu": (ReLU, lambda torch, t: torch.nn.functional.relu(t)),
    "leaky_relu": (LeakyReLU, lambda torch, t: torch.nn.functional.leaky_relu(t)),
    "leaky_relu_0.2": (lambda: LeakyReLU(0.2), lambda torch, t: torch.nn.functional.leaky_relu(t, 0.2)),
    "elu": (ELU, lambda torch, t: torch.nn.functional.elu(t)),
    "elu_0.5": (lambda: ELU(alpha=0.5), lambda torch, t: torch.nn.functional.elu(t, alpha=0.5)),
    "sigmoid": (Sigmoid, lambda torch, t: torch.sigmoid(t)),
    "tanh": (Tanh, lambda torch, t: torch.tanh(t)),
    "gelu": (GELU, lambda torch, t: torch.nn.functional.gelu(t)),
    "gelu_tanh": (lambda: GELU("tanh"), lambda torch, t: torch.nn.functional.gelu(t, approximate="tanh")),
    "softplus": (Softplus, lambda torch, t: torch.nn.functional.softplus(t)),
    "softplus_2_3": (
        lambda: Softplus(beta=2.0, threshold=3.0),
        lambda torch, t: torch.nn.functional.softplus(t, beta=2.0, threshold=3.0),
    ),
}
NAMES = sorted(CASES)
SHAPES = [(7,), (3, 4), (2, 3, 5)]


def away_from_kinks(x: np.ndarray) -> np.ndarray:
    """Keep |x| >= 0.05 (ReLU-type kinks at 0) and away from Softplus(2, 3)'s switch at x = 1.5."""
    x = np.sign(x) * (0.05 + np.abs(x))
    x[np.abs(x - 1.5) < 0.05] += 0.2
    x[np.abs(x - 20.0) < 0.05] += 0.2
    return x


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_gradients_in_float64(rng, name, shape, engine_path):
    x = away_from_kinks(rng.standard_normal(shape) * 2)
    assert_gradients(CASES[name][0](), x, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_softplus_linear_region_and_large_inputs_pass_gradcheck(rng, name, engine_path):
    # inputs spread over [-25, 25], away from the kinks
    x = away_from_kinks(rng.uniform(-25, 25, size=(4, 6)))
    assert_gradients(CASES[name][0](), x, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_torch(torch, rng, name, shape, engine_path):
    factory, torch_fn = CASES[name]
    x = rng.standard_normal(shape) * 4
    x.flat[0] = 0.0  # torch's derivative convention at the kink
    if x.size > 3:
        x.flat[1], x.flat[2], x.flat[3] = 30.0, -30.0, 1.5  # saturation, and Softplus(2, 3)'s switch
    g = rng.standard_normal(shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_fn(torch, tx)
    ty.backward(torch.tensor(g))
    node = factory()
    np.testing.assert_allclose(node.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch_on_a_wide_grid(torch, approximate, engine_path):
    x = np.concatenate([np.linspace(-40, 40, 40001), [0.0, 0.46875 * math.sqrt(2), 4 * math.sqrt(2), -1e-300]])
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    ty.backward(torch.ones_like(tx))
    node = GELU(approximate)
    np.testing.assert_allclose(node.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.backward(np.ones_like(x)), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_erf_and_erfc_are_accurate_in_float64(torch, engine_path):
    x = np.concatenate([np.linspace(-10, 10, 100001), [0.0, -0.0, 1e-300, 0.46875, -0.46875, 4.0, -4.0]])
    expected_erf = np.array([math.erf(v) for v in x])
    expected_erfc = np.array([math.erfc(v) for v in x])
    np.testing.assert_allclose(erf(x), expected_erf, rtol=2e-15, atol=1e-300)
    np.testing.assert_allclose(erfc(x), expected_erfc, rtol=2e-15, atol=1e-300)
    np.testing.assert_allclose(erf(x), torch.erf(torch.tensor(x)).numpy(), rtol=2e-15, atol=1e-300)
    # the far tail, down to the edge of the normal range
    tail = np.linspace(4, 26, 2001)
    np.testing.assert_allclose(erfc(tail), [math.erfc(v) for v in tail], rtol=1e-14, atol=0)


def test_erf_edge_values(engine_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = np.array([np.inf, -np.inf, 1e300, -1e300, 40.0, np.nan])
        np.testing.assert_array_equal(erf(values)[:5], [1.0, -1.0, 1.0, -1.0, 1.0])
        np.testing.assert_array_equal(erfc(values)[:5], [0.0, 2.0, 0.0, 2.0, 0.0])
        assert np.isnan(erf(values)[5]) and np.isnan(erfc(values)[5])
        assert erf(np.float32(0.5)).dtype == np.float32
        np.testing.assert_allclose(erf(np.float32(0.5)), math.erf(0.5), rtol=1e-6, atol=0)
        np.testing.assert_allclose(erf(0.5), math.erf(0.5), rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(rng, name, engine_path):
    x = (rng.standard_normal((3, 5)) * 3).astype(np.float32)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    node = CASES[name][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x)
        dx = node.backward(g, reset_after=False)
        jac = node.jacobian()
    assert y.dtype == np.float32 and dx.dtype == np.float32 and jac.dtype == np.float32
    reference = CASES[name][0]()
    y64 = reference.forward(x.astype(np.float64))
    dx64 = reference.backward(g.astype(np.float64))
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dx64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stable_and_silent_at_plus_minus_1000(name, dtype, engine_path):
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype)
    node = CASES[name][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = node.forward(x)
        dx = node.backward(np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_values_are_correct(dtype, engine_path):
    x = np.array([-1000.0, 1000.0], dtype=dtype)
    ones = np.ones(2, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sig = Sigmoid()
        np.testing.assert_allclose(sig.forward(x), [0.0, 1.0], rtol=0, atol=1e-30)
        np.testing.assert_allclose(sig.backward(ones), [0.0, 0.0], rtol=0, atol=1e-30)
        sp = Softplus()
        np.testing.assert_allclose(sp.forward(x), [0.0, 1000.0], rtol=1e-15, atol=1e-30)
        np.testing.assert_allclose(sp.backward(ones), [0.0, 1.0], rtol=1e-15, atol=1e-30)
        # a threshold so large that torch's log1p(exp(z)) would overflow: still exact here
        wide = Softplus(threshold=1e6)
        np.testing.assert_allclose(wide.forward(x), [0.0, 1000.0], rtol=1e-15, atol=1e-30)
        np.testing.assert_allclose(wide.backward(ones), [0.0, 1.0], rtol=1e-15, atol=1e-30)
        elu = ELU(alpha=2.0)
        np.testing.assert_allclose(elu.forward(x), [-2.0, 1000.0], rtol=1e-15, atol=1e-30)
        np.testing.assert_allclose(elu.backward(ones), [0.0, 1.0], rtol=1e-15, atol=1e-30)
        gelu = GELU()
        np.testing.assert_allclose(gelu.forward(x), [0.0, 1000.0], rtol=1e-15, atol=1e-30)
        np.testing.assert_allclose(gelu.backward(ones), [0.0, 1.0], rtol=1e-15, atol=1e-30)


def test_derivatives_at_zero_follow_torch_conventions(engine_path):
    zero = np.zeros(1)
    cases = [(ReLU(), 0.0), (LeakyReLU(0.1), 0.1), (ELU(alpha=0.7), 0.7), (GELU(), 0.5), (Sigmoid(), 0.25)]
    for node, expected in cases:
        node.forward(zero)
        np.testing.assert_allclose(node.backward(np.ones(1)), [expected], rtol=1e-15, atol=0)


def test_jacobian_is_diagonal(rng, engine_path):
    x = away_from_kinks(rng.standard_normal((2, 3)))
    node = GELU()
    jac = node.jacobian(x)
    assert jac.shape == (2, 3, 2, 3)
    flat = jac.reshape(6, 6)
    np.testing.assert_array_equal(flat - np.diag(np.diag(flat)), np.zeros((6, 6)))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"approximate must be one of \('none', 'tanh'\), got 'erf'"):
        GELU("erf")
    with pytest.raises(ValueError, match="beta must be non-zero"):
        Softplus(beta=0)
    with pytest.raises(ValueError, match="alpha must be finite, got nan"):
        ELU(alpha=float("nan"))
    with pytest.raises(TypeError, match="negative_slope must be a real number"):
        LeakyReLU("0.1")


def test_parameter_free_and_modes_are_no_ops(rng):
    x = rng.standard_normal((3, 4))
    for name in NAMES:
        node = CASES[name][0]()
        assert node.parameters() == [] and node.state_dict() == {}
        y_train = node.forward(x)
        np.testing.assert_array_equal(node.eval().forward(x), y_train)


# ------------------------------------------------------------------ properties
small_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@pytest.mark.parametrize("path", ["fast", "textbook"])
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_backward_equals_g_times_jacobian(name, path, data):
    shape = data.draw(small_shapes)
    x = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-30, 30)))
    g = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10)))
    node = CASES[name][0]()
    with engine.textbook() if path == "textbook" else contextlib.nullcontext():
        node.forward(x)
        dx = node.backward(g, reset_after=False)
        jac = node.jacobian()
    assert dx.shape == x.shape and jac.shape == x.shape + x.shape
    np.testing.assert_allclose(dx, np.tensordot(g, jac, axes=g.ndim), rtol=1e-12, atol=1e-300)


SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.7, -88.7, 1e30, -1e30, 700.0, -700.0, 1.0, -1.0]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_branch_free_forms_give_the_values_of_the_two_branch_definitions(rng, dtype, engine_path):
    """Sigmoid, LeakyReLU and ELU pick no branch with np.where (far slower on mixed signs): the results
    and derivatives are the definitions' exactly, NaN and infinities included (float16: the definitions
    evaluated in float32 and rounded once; ELU's slope at NaN is 1, torch's rule).  Sigmoid's definition
    is torch's one formula, 1 / (1 + e^-x)."""
    with np.errstate(all="ignore"):
        x_in = np.concatenate([SPECIAL, rng.standard_normal(2000) * 10]).astype(dtype)
        x = x_in.astype(np.float32) if dtype == np.float16 else x_in
        g = np.ones_like(x_in)
        t = x.dtype.type
        cases = [
            (Sigmoid(), t(1) / (t(1) + np.exp(-x)), None),
            (ELU(0.7), np.where(x > 0, x, t(0.7) * np.expm1(np.minimum(x, t(0)))),
             np.where(x <= 0, t(0.7) * np.exp(np.minimum(x, t(0))), t(1))),
        ]
        cases += [(LeakyReLU(a), np.where(x > 0, x, x * t(a)), np.where(x > 0, t(1), t(a)))
                  for a in (0.01, 0.0, -0.5, 1.0, 3.0)]
        for node, y, dy in cases:
            np.testing.assert_array_equal(node.forward(x_in), y.astype(dtype), err_msg=repr(node))
            if dy is not None:
                np.testing.assert_array_equal(node.backward(g), dy.astype(dtype), err_msg=repr(node))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_as_accurate_as_the_two_branch_form_over_the_whole_range(dtype, engine_path):
    """1 / (1 + e^-x) lets e^-x overflow to inf for very negative x (giving 0, the limit) and is within a
    few units in the last place of sigma over the whole range, as e^x / (1 + e^x) is for x < 0: both are
    measured against the two-branch form evaluated in a wider type (longdouble, or float64 for float32)."""
    finfo = np.finfo(dtype)
    wide = np.float64 if dtype == np.float32 else np.longdouble
    x = np.linspace(-1.1 * np.log(finfo.max), 1.1 * np.log(finfo.max), 200_001).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        xw = x.astype(wide)
        e = np.exp(-np.abs(xw))
        exact = np.where(xw >= 0, 1 / (1 + e), e / (1 + e))
        ours = Sigmoid().forward(x).astype(wide)
        e = np.exp(-np.abs(x))
        two_branch = np.where(x >= 0, dtype(1) / (dtype(1) + e), e / (dtype(1) + e)).astype(wide)
    normal = exact >= finfo.tiny  # below it the results are subnormal and lose relative precision in both
    ulp = np.spacing(exact[normal].astype(dtype)).astype(wide)
    ours_error = np.abs(ours[normal] - exact[normal]) / ulp
    two_branch_error = np.abs(two_branch[normal] - exact[normal]) / ulp
    assert ours_error.max() <= 3.0, ours_error.max()  # measured: 2.7 (float32), 1.8 (float64)
    assert ours_error.mean() <= 0.35, ours_error.mean()  # 0.30, 0.18
    assert ours_error.max() <= two_branch_error.max() + 0.5  # the two-branch form's own: 3.0, 1.8
    assert np.all(np.isfinite(ours)) and ours.min() >= 0 and ours.max() <= 1
    assert Sigmoid().forward(np.array([-np.inf, np.inf, np.nan], dtype))[:2].tolist() == [0.0, 1.0]
    assert np.isnan(Sigmoid().forward(np.array([np.nan], dtype))[0])


def test_the_sigmoid_function_computes_float16_in_float32(engine_path):
    """e^-x overflows float16 below x = -11.1: the function (which BCEWithLogitsLoss's probabilities use),
    not only the node, rounds the float32 result once."""
    from nn_from_scratch.nodes.activations import sigmoid

    x = np.concatenate([np.linspace(-17, 12, 2901), [-np.inf, np.inf]]).astype(np.float16)
    expected = (1 / (1 + np.exp(-x.astype(np.float64)))).astype(np.float16)
    ours = sigmoid(x)
    assert ours.dtype == np.float16
    np.testing.assert_allclose(ours.astype(np.float64), expected.astype(np.float64), rtol=1e-3, atol=0)
    assert ours[np.searchsorted(x[:-2], -16)] > 0  # about 1.1e-7: a float16 subnormal, not 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_and_erfc_pick_each_region_exactly(rng, dtype, engine_path):
    """erf and erfc evaluate every region on clamped arguments and pick one (with where, or on the fast path
    without branches): the result is, bit for bit, each region's formula on its own elements (zero signs
    included)."""
    from nn_from_scratch.nodes.special import _ERF_THRESHOLD, _erf_small, _erfc_positive

    x = np.concatenate([SPECIAL, [0.46875, -0.46875, 4.0, -4.0, 4.5, -4.5, 27.0, -27.0],
                        rng.standard_normal(3000) * 4]).astype(dtype)
    one, small = dtype(1), np.abs(x) <= _ERF_THRESHOLD
    rest = ~small & ~np.isnan(x)
    with np.errstate(under="ignore"):
        tail = _erfc_positive(np.abs(x[rest]), np, engine_path == "fast")
        expected_erf, expected_erfc = np.full_like(x, np.nan), np.full_like(x, np.nan)
        expected_erf[small] = _erf_small(x[small])
        expected_erf[rest] = np.sign(x[rest]) * (one - tail)
        expected_erfc[small] = one - _erf_small(x[small])
        expected_erfc[rest] = np.where(x[rest] < 0, 2 * one - tail, tail)
    for ours, expected in ((erf(x), expected_erf), (erfc(x), expected_erfc)):
        np.testing.assert_array_equal(ours, expected)
        numbers = ~np.isnan(expected)
        assert np.array_equal(np.signbit(ours[numbers]), np.signbit(expected[numbers]))
    assert np.signbit(erf(dtype(-0.0))) and erf(dtype(-np.inf)) == -1 and erfc(dtype(-np.inf)) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_infinite_upstream_gradient_gives_what_torch_gives(torch, dtype, engine_path):
    """inf (or -inf) times each derivative, NaN and infinite inputs included: ELU gave NaN at x = NaN,
    where torch's rule (the slope applies where x <= 0) gives the upstream inf."""
    x = np.array([-1000, -50, -20, -1, -1e-30, -0.0, 0, 1e-30, 1, 20, 50, 1000, np.inf, -np.inf, np.nan], dtype=dtype)
    cases = [(ELU(), torch.nn.ELU()), (ELU(2.5), torch.nn.ELU(2.5)), (Softplus(), torch.nn.Softplus()),
             (Softplus(2.0, 5.0), torch.nn.Softplus(2.0, 5.0)), (ReLU(), torch.nn.ReLU()),
             (LeakyReLU(), torch.nn.LeakyReLU()), (LeakyReLU(0.0), torch.nn.LeakyReLU(0.0)),
             (Sigmoid(), torch.nn.Sigmoid()), (Tanh(), torch.nn.Tanh()), (GELU("tanh"), torch.nn.GELU("tanh"))]
    for upstream in (np.inf, -np.inf):
        for ours, theirs in cases:
            with np.errstate(invalid="ignore"):
                ours.forward(x)
                dx = ours.backward(np.full_like(x, upstream))
            a = torch.tensor(x, requires_grad=True)
            theirs(a).backward(torch.full_like(a, upstream))
            np.testing.assert_array_equal(dx, a.grad.numpy(), err_msg=f"{ours!r}, upstream {upstream}")


def _ulps(ours, exact):
    """|ours - exact| in units of float32's last place at ``exact`` (the smallest subnormal at least)."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(ours.astype(np.float64) - exact) / spacing


def test_float32_erf_and_erfc_are_accurate_to_a_few_ulp_on_a_dense_grid(engine_path):
    """float32 evaluates one rational function for the tail (not Cody's float64 regions): checked against
    float64 on 200001 points of [-10, 10], in units in the last place of the float32 result."""
    x = np.linspace(-10, 10, 200001).astype(np.float32)
    wide = x.astype(np.float64)
    with np.errstate(under="ignore"):
        ours_erf, ours_erfc = erf(x), erfc(x)
    assert ours_erf.dtype == np.float32 and ours_erfc.dtype == np.float32
    assert _ulps(ours_erf, np.array([math.erf(v) for v in wide])).max() <= 4
    assert _ulps(ours_erfc, np.array([math.erfc(v) for v in wide])).max() <= 10


def test_float32_gelu_is_accurate_and_agrees_with_torch(torch, engine_path):
    """The float32 exact GELU (one rational function in cache-sized blocks) against float64 on a dense grid:
    a few ulp where the function is well conditioned, and in the negative tail within its conditioning
    (x Phi(x) has condition number about x^2 there: x^2 ulp is what rounding x itself costs); against torch's float32 to float32 rounding of torch's own formula."""
    x = np.concatenate([np.linspace(-14, 6, 200001), [0.0, -0.0, 40.0, -40.0, 1e30, -1e30]]).astype(np.float32)
    wide = x.astype(np.float64)
    exact = GELU()
    y64 = exact.forward(wide)
    d64 = exact.backward(np.ones_like(wide))
    node = GELU()
    y = node.forward(x)
    d = node.backward(np.ones_like(x))
    assert y.dtype == np.float32 and d.dtype == np.float32
    allowed = 6 + wide * wide * (wide < 0)
    assert np.all(_ulps(y, y64) <= allowed)
    # the derivative crosses zero near x = -0.75 (a sum of two terms of about 0.23): absolute there
    bound = 2.0 ** -23 + 4 * 2.0 ** -23 * (1 + wide * wide) * np.abs(d64)
    assert np.all(np.abs(d.astype(np.float64) - d64) <= bound)
    np.testing.assert_array_equal(np.signbit(y[-6:-4]), [False, True])  # x = +0 and -0
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.gelu(tx).backward(torch.ones_like(tx))
    # torch's float32 computes 1 + erf: absolute errors of float32 rounding times |x|
    scale = np.maximum(np.abs(wide), 1) * 2.0 ** -22
    np.testing.assert_allclose(y, torch.nn.functional.gelu(torch.tensor(x)).numpy(),
                               rtol=8 * 2.0 ** -23, atol=scale.max())
    np.testing.assert_allclose(d, tx.grad.numpy(), rtol=8 * 2.0 ** -23, atol=4 * 2.0 ** -23)


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_torch_float32(torch, rng, name, engine_path):
    """Each activation in float32 against torch in float32, forward and backward, to a few float32 roundings."""
    factory, torch_fn = CASES[name]
    x = (rng.standard_normal(5000) * 4).astype(np.float32)
    g = rng.standard_normal(5000).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    torch_fn(torch, tx).backward(torch.tensor(g))
    node = factory()
    eps = 2.0 ** -23
    # both GELUs cancel 1 + erf (1 + tanh) for x < 0 in torch's float32: roundings of 1, times |x|
    atol = 8 * eps * np.maximum(np.abs(x), 1)
    for ours, theirs in ((node.forward(x), torch_fn(torch, torch.tensor(x)).numpy()), (node.backward(g), tx.grad.numpy())):
        assert ours.dtype == np.float32
        assert np.all(np.abs(ours - theirs) <= atol + 16 * eps * np.abs(theirs))


@pytest.mark.parametrize("name", NAMES)
def test_blocks_give_the_bits_of_one_pass(rng, name):
    """The activations run their formulas in cache-sized blocks (engine.elementwise.blockwise); blocks of 7
    elements give the same bits as one block, on a non-contiguous input."""
    import nn_from_scratch.engine.elementwise as elementwise

    x = (rng.standard_normal((40, 30)) * 6).astype(np.float32).T  # a transposed view
    g = rng.standard_normal((30, 40)).astype(np.float32)
    whole, small = CASES[name][0](), CASES[name][0]()
    y, dx = whole.forward(x), whole.backward(g)
    original = elementwise.blockwise.__defaults__
    elementwise.blockwise.__defaults__ = ((), 7)
    try:
        np.testing.assert_array_equal(small.forward(x), y)
        np.testing.assert_array_equal(small.backward(g), dx)
    finally:
        elementwise.blockwise.__defaults__ = original


# ------------------------------------------------------------------ the two paths, and the switch between them
VALUES = np.array(SPECIAL + [-30.0, -5.0, -3.5, -0.5, 0.3, 1.5, 3.0, 6.0, 30.0])


def _faces(node, x, g):
    """Everything a node gives: output, input gradient (also of an infinite g) and Jacobian."""
    y = node.forward(x)
    dx = node.backward(g)
    node.forward(x)
    dx_inf = node.backward(np.full_like(x, np.inf))
    return y, dx, dx_inf, node.jacobian(x[:12])


PAIRS = [(name, dtype) for name in NAMES for dtype in (np.float16, np.float32, np.float64)
         if name != "gelu" or dtype == np.float64]


@pytest.mark.parametrize("name, dtype", PAIRS)
def test_the_fast_path_gives_the_textbook_values(rng, name, dtype):
    """The engine's kernels compute each formula branch-free and in blocks, with the same values: outputs,
    gradients (of an infinite g too) and Jacobians, at NaN, infinities and kinks.  The exact GELU in float32
    (and float16, computed in float32) arranges Phi otherwise; the accuracy tests above hold each of its paths
    to float64 and to torch."""
    with np.errstate(over="ignore"):  # float16: 1e30 and 700 become inf
        x = np.concatenate([VALUES, rng.standard_normal(5000) * 8]).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    with np.errstate(all="ignore"):
        fast = _faces(CASES[name][0](), x, g)
        with engine.textbook():
            textbook = _faces(CASES[name][0](), x, g)
    for what, a, b in zip(("y", "dx", "dx of inf", "jacobian"), fast, textbook):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {what}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_functions_give_the_same_values_on_both_paths(rng, dtype):
    from nn_from_scratch.nodes.activations import sigmoid

    with np.errstate(over="ignore"):  # float16: 1e30 and 700 become inf
        x = np.concatenate([VALUES, rng.standard_normal(5000) * 8]).astype(dtype)
    for function in (erf, erfc, sigmoid):
        with np.errstate(all="ignore"):
            fast = function(x)
            with engine.textbook():
                textbook = function(x)
        assert fast.dtype == textbook.dtype == dtype
        np.testing.assert_array_equal(fast, textbook, err_msg=function.__name__)


def _kernels():
    """Every function the activations may take from the engine: (module, name)."""
    import nn_from_scratch.engine.activations as kernels
    import nn_from_scratch.engine.elementwise as elementwise

    return [(kernels, name) for name in kernels.__all__] + [(elementwise, name) for name in elementwise.__all__
                                                            if callable(getattr(elementwise, name))]


def _run_everything(dtype):
    """Every activation's forward, backward, Jacobian and evaluate, and the public functions, on ``dtype``."""
    from nn_from_scratch.nodes.activations import sigmoid
    from nn_from_scratch.nodes.special import normal_cdf, normal_pdf

    with np.errstate(all="ignore"):
        x = VALUES.astype(dtype)
        for name in NAMES:
            _faces(CASES[name][0](), x, np.ones_like(x))
            CASES[name][0]().evaluate(x)
        for function in (erf, erfc, sigmoid) + ((normal_cdf, normal_pdf) if dtype != np.float16 else ()):
            function(x)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_no_engine_kernel_runs_on_the_textbook_path(monkeypatch, dtype):
    """Under engine.textbook() every activation, its gradients and Jacobian, and erf, erfc and sigmoid run on
    their formulas alone: each engine function they could take is replaced by one that fails the test."""
    def refused(module, name):
        def kernel(*args, **kwargs):
            raise AssertionError(f"{module.__name__}.{name} ran on the textbook path")
        return kernel

    for module, name in _kernels():
        monkeypatch.setattr(module, name, refused(module, name))
    with engine.textbook():
        _run_everything(dtype)


#: The engine functions each activation takes on the fast path (GELU's tanh form has one path; the exact GELU
#: takes the float32 kernel, and in float64 Cody's erfc with the engine's picks).
TAKEN = {"ReLU": {"relu", "relu_vjp"}, "LeakyReLU": {"leaky_relu"}, "ELU": {"elu"}, "Softplus": {"softplus"},
         "Sigmoid": {"sigmoid", "times_sigmoid_slope"}, "Tanh": {"times_tanh_slope"}, "GELU[tanh]": set(),
         "GELU": {np.float32: {"gelu_float32", "mills_ratio32"}, np.float64: {"pick", "pick_above"}}}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAMES)
def test_the_engine_kernels_run_on_the_fast_path(monkeypatch, engine_path, name, dtype):
    """With the engine on, NumPy float32 and float64 inputs take the engine's kernels, forward and backward;
    under engine.textbook() none."""
    calls = []

    def recorded(module, name, kernel):
        def spy(*args, **kwargs):
            calls.append(name)
            return kernel(*args, **kwargs)
        return spy

    for module, kernel_name in _kernels():
        monkeypatch.setattr(module, kernel_name, recorded(module, kernel_name, getattr(module, kernel_name)))
    x = (VALUES[np.isfinite(VALUES)] * 2).astype(dtype)
    node = CASES[name][0]()
    node.forward(x)
    node.backward(np.ones_like(x))
    expected = TAKEN["GELU[tanh]" if repr(node) == "GELU(approximate='tanh')" else type(node).__name__]
    expected = expected[dtype] if isinstance(expected, dict) else expected
    assert set(calls) == (expected if engine_path == "fast" else set())
