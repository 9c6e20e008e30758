"""SoftMax, NormalizedSoftMax, LogSoftMax and Softmin: the seed's cells, stability, properties, the torch oracle and
torch's ``dim``."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nn_from_scratch import LogSoftMax, NormalizedSoftMax, SoftMax
from nn_from_scratch.gradcheck import assert_gradients, check_node

SEED_X = np.array([0, 1, 2, 3, 4])
SEED_X_NORM = np.array([0, 1, 4, 2, 3])
SEED_G = np.array([1, 2, 3, 2, 1])
SOFTMAX_Y = [0.01165623, 0.03168492, 0.08612854, 0.23412166, 0.63640865]
SOFTMAX_DX = [-0.00510617, 0.01780491, 0.1345273, 0.13156147, -0.27878751]
NORM_Y = [0.11405072, 0.14644403, 0.31002201, 0.18803785, 0.24144538]
NORM_DX = [-0.02721609, 0.00166485, 0.04172728, 0.00213771, -0.05761647]  # Jᵀg
SEED_PRINTED_NORM_DX = [0.02596599, 0.04249374, -0.00692263, 0.01930594, -0.08084303]  # J g


def test_seed_softmax_vector():
    sm = SoftMax(5)
    np.testing.assert_allclose(sm.forward(SEED_X), SOFTMAX_Y, rtol=0, atol=1e-8)
    np.testing.assert_allclose(sm.backward(SEED_G), SOFTMAX_DX, rtol=0, atol=1e-8)


def test_seed_softmax_matrix_gives_the_same_rows():
    sm = SoftMax((2, 5))
    y = sm.forward(np.array([SEED_X, SEED_X]))
    dx = sm.backward(np.array([SEED_G, SEED_G]))
    np.testing.assert_allclose(y, [SOFTMAX_Y, SOFTMAX_Y], rtol=0, atol=1e-8)
    np.testing.assert_allclose(dx, [SOFTMAX_DX, SOFTMAX_DX], rtol=0, atol=1e-8)


def test_seed_normalized_softmax_vector_gives_the_true_gradient():
    sm = NormalizedSoftMax(5)
    np.testing.assert_allclose(sm.forward(SEED_X_NORM), NORM_Y, rtol=0, atol=1e-8)
    dx = sm.backward(SEED_G, reset_after=False)
    np.testing.assert_allclose(dx, NORM_DX, rtol=0, atol=1e-8)
    # the notebook printed J g; the Jacobian is not symmetric, so that is not the gradient
    jac = sm.jacobian()
    np.testing.assert_allclose(jac @ SEED_G, SEED_PRINTED_NORM_DX, rtol=0, atol=1e-8)
    assert np.max(np.abs(dx - np.asarray(SEED_PRINTED_NORM_DX))) > 1e-2
    assert_gradients(NormalizedSoftMax(5), SEED_X_NORM, SEED_G, atol=1e-8, rtol=1e-6)


def test_seed_normalized_softmax_matrix_gives_the_same_rows():
    sm = NormalizedSoftMax((2, 5))
    y = sm.forward(np.array([SEED_X_NORM, SEED_X_NORM]))
    dx = sm.backward(np.array([SEED_G, SEED_G]))
    np.testing.assert_allclose(y, [NORM_Y, NORM_Y], rtol=0, atol=1e-8)
    np.testing.assert_allclose(dx, [NORM_DX, NORM_DX], rtol=0, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_large_inputs(dtype):
    x = np.array([1000, 1001, 1002], dtype=dtype)
    sm = SoftMax()
    y = sm.forward(x)
    expected = np.exp([-2.0, -1.0, 0.0]) / np.exp([-2.0, -1.0, 0.0]).sum()
    assert y.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    dx = sm.backward(np.array([1.0, 0.0, 0.0], dtype=dtype))
    assert np.all(np.isfinite(dx))
    np.testing.assert_allclose(LogSoftMax().forward(x), np.log(expected), rtol=tol, atol=tol)


def test_normalized_softmax_negative_maximum_magnitude(rng):
    x = np.array([0.5, -3.0, 1.0, 2.0])
    y = NormalizedSoftMax().forward(x)
    z = x / 3.0
    np.testing.assert_allclose(y, np.exp(z) / np.exp(z).sum(), rtol=1e-14, atol=0)
    assert_gradients(NormalizedSoftMax(), x, atol=1e-8, rtol=1e-6)
    assert_gradients(NormalizedSoftMax(), rng.standard_normal((3, 4, 6)), atol=1e-8, rtol=1e-6)


def test_normalized_softmax_zero_row_convention():
    sm = NormalizedSoftMax()
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    g = np.array([[1.0, 2.0, 3.0, 6.0], [1.0, 0.0, 0.0, 0.0]])
    y = sm.forward(x)
    np.testing.assert_allclose(y[0], np.full(4, 0.25), rtol=0, atol=1e-15)
    dx = sm.backward(g, reset_after=False)
    # softmax gradient at 0 with scale 1: (g - mean(g)) / n
    np.testing.assert_allclose(dx[0], (g[0] - g[0].mean()) / 4, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dx, np.einsum("ij,ijkl->kl", g, sm.jacobian()), rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(dx))


def test_normalized_softmax_ties_pick_the_first_index():
    x = np.array([3.0, -3.0, 1.0])
    sm = NormalizedSoftMax()
    sm.forward(x)
    g = np.array([0.3, -0.2, 0.5])
    dx = sm.backward(g)
    # the scale follows x[0] (first index of |x| = 3), so the extra term lands on index 0 only
    y = np.exp(x / 3) / np.exp(x / 3).sum()
    v = y * (g - y @ g)
    expected = v / 3
    expected[0] -= (v @ x) / 9
    np.testing.assert_allclose(dx, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("node_type", [SoftMax, NormalizedSoftMax, LogSoftMax])
def test_empty_last_axis_is_rejected(node_type):
    with pytest.raises(ValueError, match=r"n >= 1, got \(3, 0\)"):
        node_type().forward(np.zeros((3, 0)))
    with pytest.raises(ValueError, match=r"got \(\)"):
        node_type().forward(np.float64(1.0))


@pytest.mark.parametrize("node_type", [SoftMax, NormalizedSoftMax, LogSoftMax])
def test_zero_size_leading_axis_gives_an_empty_result(node_type):
    node = node_type()
    y = node.forward(np.zeros((0, 4)))
    assert y.shape == (0, 4)
    assert node.backward(np.zeros((0, 4))).shape == (0, 4)


def test_log_softmax_gradients(rng):
    assert_gradients(LogSoftMax(), rng.standard_normal((2, 3, 5)) * 4, atol=1e-7, rtol=1e-6)


# ------------------------------------------------------------------ properties
shapes = st.tuples(
    st.lists(st.integers(1, 3), min_size=0, max_size=3), st.integers(1, 64)
).map(lambda t: tuple(t[0]) + (t[1],))


@st.composite
def rows(draw, dtype):
    shape = draw(shapes)
    elements = st.floats(-50, 50, allow_subnormal=False, width=32 if dtype == np.float32 else 64)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@pytest.mark.parametrize("node_type", [SoftMax, NormalizedSoftMax])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_rows_sum_to_one_and_lie_in_the_unit_interval(node_type, dtype, data):
    x = data.draw(rows(dtype))
    y = node_type().forward(x)
    assert y.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.sum(axis=-1), np.ones(x.shape[:-1]), rtol=tol, atol=tol)
    assert np.all(y > 0) and np.all(y <= 1)


@pytest.mark.parametrize("node_type", [SoftMax, NormalizedSoftMax])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_backward_is_jacobian_transpose_times_g(node_type, data):
    x = data.draw(rows(np.float64).filter(lambda a: a.size <= 96))
    g = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10)))
    node = node_type()
    node.forward(x)
    dx = node.backward(g, reset_after=False)
    jac = node.jacobian()
    expected = np.tensordot(g, jac, axes=g.ndim)
    # rounding in a contraction is bounded by the sum of |g_i J_ij|; rows with a tiny
    # largest magnitude have huge entries, so the bound is per element, not absolute
    bound = np.tensordot(np.abs(g), np.abs(jac), axes=g.ndim)
    assert np.all(np.abs(dx - expected) <= 1e-9 * bound + 1e-12), (dx, expected)


def differentiable_for_normalized(x: np.ndarray) -> bool:
    """NormalizedSoftMax has a kink where the largest |x| ties or is zero; finite differences straddle it there."""
    top = -np.sort(-np.abs(x), axis=-1)
    second = top[..., 1] if x.shape[-1] > 1 else np.zeros(x.shape[:-1])
    return bool(np.all(top[..., 0] > 1e-3) and np.all(top[..., 0] - second > 1e-3))


@pytest.mark.parametrize("node_type", [SoftMax, NormalizedSoftMax])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_check_node_passes_in_float64(node_type, data):
    x = data.draw(rows(np.float64).filter(lambda a: a.size <= 40))
    if node_type is NormalizedSoftMax:
        x = data.draw(rows(np.float64).filter(lambda a: a.size <= 40 and differentiable_for_normalized(a)))
    report = check_node(node_type(), x, atol=1e-6, rtol=1e-4)
    assert report.ok, repr(report)


# ---------------------------------------------------------------------- oracle
def torch_normalized_softmax(torch, x):
    k = torch.argmax(torch.abs(x), dim=-1, keepdim=True)
    scale = torch.abs(torch.gather(x, -1, k))
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.softmax(x / scale, dim=-1)


@pytest.mark.parametrize("shape", [(5,), (3, 7), (2, 3, 11), (4, 1)])
@pytest.mark.parametrize("name", ["softmax", "normalized", "log_softmax"])
def test_agrees_with_torch(torch, rng, shape, name):
    x = rng.standard_normal(shape) * 5
    g = rng.standard_normal(shape)
    node = {"softmax": SoftMax, "normalized": NormalizedSoftMax, "log_softmax": LogSoftMax}[name]()
    tx = torch.tensor(x, requires_grad=True)
    if name == "softmax":
        ty = torch.softmax(tx, dim=-1)
    elif name == "log_softmax":
        ty = torch.log_softmax(tx, dim=-1)
    else:
        ty = torch_normalized_softmax(torch, tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(node.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_seed_gradient_agrees_with_torch_autograd(torch):
    tx = torch.tensor(SEED_X_NORM, dtype=torch.float64, requires_grad=True)
    torch_normalized_softmax(torch, tx).backward(torch.tensor(SEED_G, dtype=torch.float64))
    np.testing.assert_allclose(tx.grad.numpy(), NORM_DX, rtol=0, atol=1e-8)


def test_rows_wider_than_the_float_range_give_exact_results_without_warnings(rng):
    """x - max(x) overflows to -inf for such rows; e^-inf = 0 is the right answer, so no RuntimeWarning."""
    import warnings

    from nn_from_scratch.losses import CrossEntropyLoss
    from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_with_log_normalizer

    x = np.array([[-1e308, 1e308, 0.0], [-1.7e308, 1.7e308, 1.7e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(softmax(x), [[0, 1, 0], [0, 0.5, 0.5]])
        np.testing.assert_array_equal(log_softmax(x), [[-np.inf, 0, -1e308], [-np.inf, -np.log(2), -np.log(2)]])
        p, shift, log_total = softmax_with_log_normalizer(x)
        np.testing.assert_array_equal(p, [[0, 1, 0], [0, 0.5, 0.5]])
        for node in (SoftMax(), LogSoftMax()):
            y = node.forward(x)
            assert np.all(np.isfinite(node.backward(np.ones_like(x))))
            assert y.dtype == x.dtype
        np.testing.assert_array_equal(softmax(np.array([[-3e38, 3e38]], dtype=np.float32)), [[0, 1]])
        loss = CrossEntropyLoss(reduction="none").forward(x, np.array([1, 1]))
        np.testing.assert_allclose(loss, [0.0, np.log(2)], rtol=1e-15, atol=0)


# ------------------------------------------------------------------ the engine switch
@pytest.fixture
def fast_engine():
    """The engine on for one test (even under NN_FROM_SCRATCH_TEXTBOOK=1), the previous setting restored after."""
    from nn_from_scratch import engine

    before = engine.fast_enabled()
    engine.set_fast(True)
    yield
    engine.set_fast(before)


def _softmax_inputs(rng, dtype):
    big = (rng.standard_normal((3000, 300)) * 4).astype(dtype)  # several row blocks, on threads
    wide = np.array([[-1e308, 0.0, 1e308], [1.0, np.inf, 2.0], [np.nan, 1.0, 0.0], [-np.inf, -np.inf, 3.0]])
    cases = [big, rng.standard_normal((6, 8, 5)).astype(dtype).transpose(1, 0, 2), np.asarray(SEED_X, dtype)]
    if dtype == np.float64:
        cases.append(wide)
    return cases


def _every_result(x, g):
    from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_vjp, softmax_with_log_normalizer

    results = [softmax(x), log_softmax(x), *log_softmax(x, return_softmax=True),
               *softmax_with_log_normalizer(x, shifted_mean=True), softmax_vjp(softmax(x), g)]
    for node_type in (SoftMax, LogSoftMax, NormalizedSoftMax):
        node = node_type()
        results += [node.forward(x), node.backward(g)]
    return results


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_textbook_and_fast_paths_give_the_same_bits(rng, monkeypatch, fast_engine, dtype):
    """engine.textbook() runs the softmax family's plain whole-array formulas, the engine its row blocks:
    every row goes through the same NumPy calls, so outputs and gradients agree bit for bit."""
    from nn_from_scratch import engine
    from nn_from_scratch.engine import softmax as blocked

    calls = []
    for name in ("softmax", "log_softmax", "softmax_vjp", "softmax_with_log_normalizer"):
        original = getattr(blocked, name)
        monkeypatch.setattr(blocked, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    for x in _softmax_inputs(rng, dtype):
        g = rng.standard_normal(x.shape).astype(dtype)
        with np.errstate(invalid="ignore"):  # the rows with NaN and infinities
            calls.clear()
            fast = _every_result(x, g)
            assert {"softmax", "log_softmax", "softmax_vjp", "softmax_with_log_normalizer"} <= set(calls)
            calls.clear()
            with engine.textbook():
                plain = _every_result(x, g)
            assert calls == []  # the textbook path never enters the engine
        for a, b in zip(fast, plain):
            assert a.dtype == b.dtype == dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
            assert a.tobytes() == b.tobytes()  # the same bits, signs of zeros and NaN payloads included


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_classification_losses_give_the_same_bits_on_both_paths(rng, fast_engine, dtype):
    """engine.textbook() runs the formulas with one-hot masks, the engine its row blocks and writes by index: the
    same terms, so the same bits, for index and probability targets, smoothing, and a class axis in the middle."""
    from nn_from_scratch import engine
    from nn_from_scratch.losses import CrossEntropyLoss, LocalizationLoss, NLLLoss, SoftMaxLoss

    x = (rng.standard_normal((700, 31)) * 4).astype(dtype)
    x4 = rng.standard_normal((3, 6, 4, 5)).astype(dtype)  # (N, C, d1, d2): the class axis moved last, strided
    labels, labels4 = rng.integers(0, 31, 700), rng.integers(0, 6, (3, 4, 5))
    rows = rng.dirichlet(np.ones(31), 700).astype(dtype)
    boxes = np.column_stack([labels % 27, rng.random((700, 4))])
    cases = [(CrossEntropyLoss(), x, labels), (CrossEntropyLoss("sum", label_smoothing=0.2), x, labels),
             (CrossEntropyLoss("none", label_smoothing=0.1), x4, labels4), (CrossEntropyLoss(), x, rows),
             (NLLLoss("none"), x4, labels4), (NLLLoss(), x, labels), (SoftMaxLoss(), x, labels),
             (SoftMaxLoss("sum"), x, rows), (LocalizationLoss(27, label_smoothing=0.1), x, boxes)]
    for loss, prediction, target in cases:
        def faces():
            value = loss.forward(prediction, target)
            g = np.full(np.shape(value), 3.0)
            return np.asarray(value), loss.backward(g if np.ndim(value) else 3.0)

        fast = faces()
        with engine.textbook():
            plain = faces()
        for a, b in zip(fast, plain):
            assert a.dtype == b.dtype and a.shape == b.shape, repr(loss)
            assert a.tobytes() == b.tobytes(), repr(loss)  # the same bits, signs of zeros included


def test_the_textbook_path_keeps_the_edge_cases_of_the_functions(fast_engine):
    from nn_from_scratch import engine
    from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_with_log_normalizer

    for x in (np.zeros((0, 4)), np.zeros((3, 0)), np.float64(2.0)):
        fast = (softmax(x), log_softmax(x))
        with engine.textbook():
            plain = (softmax(x), log_softmax(x))
        for a, b in zip(fast, plain):
            assert a.shape == b.shape == np.shape(x)
            np.testing.assert_array_equal(a, b)
    with engine.textbook(), pytest.raises(ValueError, match="at least one entry"):
        softmax_with_log_normalizer(np.zeros((3, 0)))


def test_a_backward_pass_follows_the_path_of_its_forward_pass(rng, monkeypatch, fast_engine):
    from nn_from_scratch import engine
    from nn_from_scratch.engine import softmax as blocked

    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    node = SoftMax()
    with engine.textbook():
        node.forward(x)
    monkeypatch.setattr(blocked, "softmax_vjp", lambda *a: pytest.fail("the textbook pass went to the engine"))
    np.testing.assert_allclose(node.backward(g), node_vjp_reference(x, g), rtol=1e-13, atol=1e-15)


def node_vjp_reference(x, g):
    """J^T g from the dense row Jacobians diag(y) - y y^T."""
    y = np.exp(x - x.max(axis=-1, keepdims=True))
    y /= y.sum(axis=-1, keepdims=True)
    jac = np.einsum("ni,ij->nij", y, np.eye(x.shape[-1])) - y[:, :, None] * y[:, None, :]
    return np.einsum("nij,ni->nj", jac, g)


# ------------------------------------------------------------------ which path runs: a spy on every engine kernel
def _softmax_family_uses(rng):
    """(what, run on an array namespace, the engine kernels it takes on NumPy with the engine on)."""
    from nn_from_scratch.losses import CrossEntropyLoss, LocalizationLoss, NLLLoss, SoftMaxLoss
    from nn_from_scratch.nodes.softmax import log_softmax, softmax, softmax_vjp, softmax_with_log_normalizer

    x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    labels, rows = rng.integers(0, 5, 6), rng.dirichlet(np.ones(5), 6)
    scores_and_boxes, boxes = rng.standard_normal((6, 7)), np.column_stack([labels % 3, rng.random((6, 4))])

    def node(node_type):
        def run(xp):
            n = node_type()
            n.forward(xp.asarray(x))
            n.backward(xp.asarray(g))
        return run

    def loss(make, prediction, target):
        def run(xp):
            criterion = make()
            criterion.forward(xp.asarray(prediction), xp.asarray(target))
            criterion.backward()
        return run

    return [
        ("SoftMax", node(SoftMax), {"softmax", "softmax_vjp"}),
        ("LogSoftMax", node(LogSoftMax), {"log_softmax"}),
        ("NormalizedSoftMax", node(NormalizedSoftMax), {"softmax", "softmax_vjp"}),
        ("softmax", lambda xp: softmax(xp.asarray(x)), {"softmax"}),
        ("log_softmax", lambda xp: log_softmax(xp.asarray(x), return_softmax=True), {"log_softmax"}),
        ("softmax_vjp", lambda xp: softmax_vjp(xp.asarray(x), xp.asarray(g)), {"softmax_vjp"}),
        ("softmax_with_log_normalizer", lambda xp: softmax_with_log_normalizer(xp.asarray(x), shifted_mean=True),
         {"softmax_with_log_normalizer"}),
        ("CrossEntropyLoss", loss(CrossEntropyLoss, x, labels), {"softmax_with_log_normalizer", "cross_entropy_grad"}),
        ("CrossEntropyLoss[smoothing]", loss(lambda: CrossEntropyLoss(label_smoothing=0.1), x, labels),
         {"softmax_with_log_normalizer", "cross_entropy_grad"}),
        ("CrossEntropyLoss[probabilities]", loss(CrossEntropyLoss, x, rows), {"log_softmax"}),
        ("NLLLoss", loss(NLLLoss, x, labels), {"scaled_one_hot"}),
        ("SoftMaxLoss", loss(SoftMaxLoss, x, labels), {"softmax", "softmax_vjp", "scaled_one_hot"}),
        ("LocalizationLoss", loss(lambda: LocalizationLoss(3), scores_and_boxes, boxes),
         {"softmax_with_log_normalizer", "cross_entropy_grad"}),
    ]


@pytest.fixture
def engine_calls(monkeypatch):
    """The names of the engine's softmax kernels called (every public function of engine/softmax.py, and its row
    blocks), in order."""
    from nn_from_scratch.engine import softmax as blocked

    calls = []
    for name in (*blocked.__all__, "for_row_blocks"):
        original = getattr(blocked, name)
        monkeypatch.setattr(blocked, name, lambda *a, _f=original, _n=name, **k: (calls.append(_n), _f(*a, **k))[1])
    return calls


def test_the_engine_kernels_run_only_on_the_fast_path(rng, fast_engine, engine_calls):
    """With the engine on, NumPy inputs take the engine's kernels; under engine.textbook(), or for arrays of
    another namespace (array_api_strict) with the engine on, no engine kernel runs."""
    from conftest import required
    from nn_from_scratch import engine

    strict = required("array_api_strict", "array-api-strict is not installed (pip install array-api-strict)")
    for what, run, kernels in _softmax_family_uses(rng):
        engine_calls.clear()
        run(np)
        assert kernels <= set(engine_calls), (what, engine_calls)
        engine_calls.clear()
        with engine.textbook():
            run(np)
        assert engine_calls == [], (what, "under engine.textbook()")
        run(strict)
        assert engine_calls == [], (what, "on array_api_strict arrays")


# ------------------------------------------------------------------ dim (torch's keyword) and Softmin
def _torch_along(torch, name, dim):
    return {"SoftMax": lambda t: torch.softmax(t, dim), "LogSoftMax": lambda t: torch.log_softmax(t, dim),
            "Softmin": lambda t: torch.nn.Softmin(dim)(t)}[name]


def _ours_along(name, dim):
    from nn_from_scratch.nodes import Softmin

    return Softmin(dim) if name == "Softmin" else {"SoftMax": SoftMax, "LogSoftMax": LogSoftMax}[name](dim=dim)


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
@pytest.mark.parametrize("name", ["SoftMax", "LogSoftMax", "Softmin"])
def test_dim_agrees_with_torch_and_passes_gradcheck(torch, rng, name, dim, engine_path):
    x, g = rng.standard_normal((3, 4, 5)) * 3, rng.standard_normal((3, 4, 5))
    tx = torch.tensor(x, requires_grad=True)
    ty = _torch_along(torch, name, dim)(tx)
    ty.backward(torch.tensor(g))
    node = _ours_along(name, dim)
    np.testing.assert_allclose(node.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(node.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert_gradients(node, x, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("name", ["SoftMax", "LogSoftMax", "Softmin"])
def test_dim_in_float32_and_float16(torch, rng, name, engine_path):
    x = (rng.standard_normal((70, 3)) * 3).astype(np.float32)
    node = _ours_along(name, 0)
    expected = _torch_along(torch, name, 0)(torch.tensor(x)).numpy()
    y = node.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)
    half = node.forward(x.astype(np.float16))  # computed in float32, rounded once
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half, node.forward(x.astype(np.float16).astype(np.float32)).astype(np.float16))


def test_positional_arguments_keep_meaning_the_input_shape():
    from nn_from_scratch.nodes import Softmin

    assert SoftMax(5).input_shape == (5,) and SoftMax(5).dim is None
    assert SoftMax((2, 5)).input_shape == (2, 5) and SoftMax().input_shape is None
    assert LogSoftMax(3, dim=0).input_shape == (3,) and LogSoftMax(3, dim=0).dim == 0
    assert Softmin(1).dim == 1 and Softmin().dim is None and Softmin(1).input_shape is None  # torch's first argument
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    np.testing.assert_allclose(SoftMax(dim=0).forward(x).sum(axis=0), [1, 1], rtol=1e-15)
    np.testing.assert_array_equal(SoftMax(dim=-1).forward(x), SoftMax().forward(x))
    np.testing.assert_array_equal(Softmin(dim=0).forward(x), SoftMax(dim=0).forward(-x))


def test_the_jacobian_along_dim_is_the_backward_pass(rng, engine_path):
    from nn_from_scratch.nodes import Softmin

    x, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    for node in (SoftMax(dim=1), LogSoftMax(dim=0), Softmin(-2)):
        node.forward(x)
        dx = node.backward(g, reset_after=False)
        np.testing.assert_allclose(dx, np.tensordot(g, node.jacobian(), axes=3), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, shape, error, match", [
    (lambda: SoftMax(dim=2), (3, 4), ValueError, "dim=2 is out of range"),
    (lambda: LogSoftMax(dim=-3), (3, 4), ValueError, "out of range"),
    (lambda: SoftMax(dim=0), (), ValueError, "out of range"),
    (lambda: SoftMax(dim=0), (0, 4), ValueError, "at least one entry along dim=0"),
    (lambda: SoftMax(dim=1.0), None, TypeError, "dim must be an int"),
    (lambda: LogSoftMax(dim=True), None, TypeError, "dim must be an int"),
])
def test_bad_dims_are_refused(make, shape, error, match):
    with pytest.raises(error, match=match):
        make().forward(np.zeros(shape))


def test_an_empty_batch_along_another_axis_gives_an_empty_result():
    from nn_from_scratch.nodes import Softmin

    for node in (SoftMax(dim=0), Softmin(0)):
        y = node.forward(np.zeros((3, 0)))
        assert y.shape == (3, 0) and node.backward(np.zeros((3, 0))).shape == (3, 0)
