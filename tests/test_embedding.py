"""Embedding: the torch oracle for every option, the weight's gradient (finite differences, IEEE sums of infinities),
max_norm's renormalisation and its undo, state dicts, bad arguments, and hostile inputs.

Its input is integer indices, a constant input, which the one-input harness of tests/test_hostile_inputs.py (float
inputs with a gradient) cannot drive: the same contract is checked here, with its helpers."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_from_scratch import Graph, Input, Sequential, engine
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Embedding, Flatten, Linear
from test_hostile_inputs import (NODE_EXAMPLES, SETTINGS, any_shape, arrays_of, assert_matches_torch, assert_same,
                                 guarded, hostile, magnitude)

OPTIONS = [{}, {"padding_idx": 2}, {"padding_idx": -1}, {"scale_grad_by_freq": True}, {"max_norm": 1.5},
           {"max_norm": 1.0, "norm_type": 1.0}, {"max_norm": 0.7, "norm_type": float("inf"), "padding_idx": 0},
           {"max_norm": 1.2, "norm_type": 3.0, "scale_grad_by_freq": True}, {"sparse": True}]


def pair(torch, dtype=np.float64, **options):
    ours = Embedding(7, 4, rng=1, dtype=dtype, **options)
    theirs = torch.nn.Embedding(7, 4, **options).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_agrees_with_torch_over_two_steps(torch, rng, options, engine_path):
    """The output, the weight's gradient (accumulated) and, with max_norm, the renormalised table itself."""
    ours, theirs = pair(torch, **options)
    for _ in range(2):
        indices = rng.integers(0, 7, (3, 5))
        indices[0, :3] = 2  # a repeated index, and the padding row looked up
        g = rng.standard_normal((3, 5, 4))
        ty = theirs(torch.tensor(indices))
        ty.backward(torch.tensor(g))
        y = ours.forward(indices)
        assert ours.backward(g) is None  # the indices have no gradient
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
        expected = theirs.weight.grad.to_dense() if options.get("sparse") else theirs.weight.grad  # ours: dense
        np.testing.assert_allclose(ours.weight.grad, expected.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.weight.value, theirs.weight.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"padding_idx": 3, "scale_grad_by_freq": True}, {"max_norm": 1.0}], ids=str)
def test_float32_agrees_with_torch(torch, rng, options, engine_path):
    ours, theirs = pair(torch, np.float32, **options)
    indices = rng.integers(0, 7, (6, 4)).astype(np.int32)
    g = rng.standard_normal((6, 4, 4)).astype(np.float32)
    ty = theirs(torch.tensor(indices))
    ty.backward(torch.tensor(g))
    y = ours.forward(indices)
    ours.backward(g)
    assert y.dtype == ours.weight.grad.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_the_weight_gradient_is_the_derivative(rng, engine_path):
    node = Embedding(6, 3, rng=0)
    assert_gradients(node, rng.integers(0, 6, (4, 5)), atol=1e-8, rtol=1e-7)  # the indices: constant, unchecked
    a = Input(5)  # in a graph, after which the gradient flows on
    model = Graph([a], [Linear(3, 2, rng=0)(Embedding(6, 3, rng=1)(a))])
    assert model.constant_inputs == (0,)
    assert_gradients(model, rng.integers(0, 6, (4, 5)), atol=1e-8, rtol=1e-7)


def test_in_a_sequential_its_float_input_of_whole_numbers_is_taken(rng):
    model = Sequential(Embedding(10, 4, rng=0), Flatten(), Linear(12, 2, rng=0))
    indices = rng.integers(0, 10, (5, 3))
    y = model.forward(indices)  # Sequential hands the indices on as floats
    assert y.shape == (5, 2) and model.backward(np.ones_like(y)) is None
    assert np.any(model[0].weight.grad != 0)
    with pytest.raises(ValueError, match="whole numbers"):
        model.forward(indices + 0.5)


@pytest.mark.parametrize("g_value", [np.inf, -np.inf, np.nan])
def test_infinite_and_nan_gradients_reach_their_own_rows_only(torch, g_value, engine_path):
    """As torch's index_add: the row of the index whose gradient is infinite gets it, every other row stays finite
    (a product with the one-hot matrix would make 0 * inf = NaN everywhere)."""
    ours, theirs = pair(torch)
    indices = np.array([[1, 2, 1], [3, 1, 4]])
    g = np.ones((2, 3, 4))
    g[0, 0, 0] = g_value
    g[1, 2, 1] = -np.inf
    theirs(torch.tensor(indices)).backward(torch.tensor(g))
    ours.forward(indices)
    ours.backward(g)
    np.testing.assert_array_equal(ours.weight.grad, theirs.weight.grad.numpy())
    assert np.isfinite(ours.weight.grad[[0, 2, 3, 5, 6]]).all()


def test_the_two_paths_agree_to_rounding(rng):
    node = Embedding(50, 8, padding_idx=7, scale_grad_by_freq=True, rng=0)
    indices, g = rng.integers(0, 50, (40, 30)), rng.standard_normal((40, 30, 8))
    grads = []
    for fast in (True, False):
        with contextlib.nullcontext() if fast else engine.textbook():
            node.zero_grad()
            node.forward(indices)
            node.backward(g)
            grads.append(node.weight.grad.copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-13, atol=1e-13)


def test_the_engine_kernel_runs_on_the_fast_path_only(rng, monkeypatch):
    import nn_from_scratch.engine.embedding as kernels

    calls = []
    original = kernels.add_rows_at
    monkeypatch.setattr(kernels, "add_rows_at", lambda *a, **k: calls.append(1) or original(*a, **k))
    node, indices = Embedding(5, 2, rng=0), rng.integers(0, 5, (3, 4))
    with engine.textbook():
        node.forward(indices)
        node.backward(np.ones((3, 4, 2)))
    assert calls == []
    node.forward(indices)
    node.backward(np.ones((3, 4, 2)))
    assert calls == [1]


def test_max_norm_writes_the_table_but_evaluate_and_jacobian_do_not(rng):
    node = Embedding(5, 3, max_norm=0.5, rng=0)
    before = node.weight.value.copy()
    expected = node.evaluate(np.array([0, 1]))
    np.testing.assert_array_equal(node.weight.value, before)
    assert node.jacobian(np.array([0, 1])) is None
    np.testing.assert_array_equal(node.weight.value, before)
    np.testing.assert_array_equal(node.forward(np.array([0, 1])), expected)
    norms = np.linalg.norm(node.weight.value, axis=1)
    assert np.all(norms[:2] <= 0.5 + 1e-12) and np.array_equal(node.weight.value[2:], before[2:])


def test_a_refused_call_puts_the_renormalised_table_back(rng):
    node = Embedding(5, 3, max_norm=0.5, rng=0)
    before = node.weight.value.copy()
    model = Sequential(node, Flatten(), Linear(7, 2, rng=0))  # 2 * 3 = 6 features, not 7: refused
    with pytest.raises(ValueError):
        model.forward(np.array([[0, 1]]))
    np.testing.assert_array_equal(node.weight.value, before)


def test_state_dict_and_initialisation(torch, rng):
    node = Embedding(6, 3, padding_idx=-2, rng=0)
    assert list(node.state_dict()) == ["weight"] and node.weight.shape == (6, 3) and node.padding_idx == 4
    np.testing.assert_array_equal(node.weight.value[4], 0)
    theirs = torch.nn.Embedding(6, 3, padding_idx=4).double()
    node.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})  # torch -> ours
    np.testing.assert_array_equal(node.weight.value, theirs.weight.detach().numpy())
    big = Embedding(100000, 2, rng=0).weight.value  # the default draw is N(0, 1), as torch's
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01
    assert repr(Embedding(6, 3, padding_idx=1, max_norm=2.0, sparse=True)) == \
        "Embedding(6, 3, padding_idx=1, max_norm=2.0, sparse=True)"


def test_shapes_any_index_dtype_and_empty_input(torch):
    node = Embedding(5, 2, rng=0)
    for indices in (np.array(3), np.array([4, 0]), np.zeros((0, 3), dtype=np.int32), np.array([[1]], np.uint8),
                    np.int64(2), [1, 2]):
        y = node.forward(indices)
        assert y.shape == np.shape(indices) + (2,) and y.dtype == np.float64
        np.testing.assert_array_equal(y, node.weight.value[np.asarray(indices, dtype=np.int64)])
        node.backward(np.ones(y.shape))


@pytest.mark.parametrize("make, error, match", [
    (lambda: Embedding(0, 3), ValueError, "num_embeddings"),
    (lambda: Embedding(3, 2.0), ValueError, "embedding_dim"),
    (lambda: Embedding(3, 2, padding_idx=3), ValueError, "padding_idx"),
    (lambda: Embedding(3, 2, padding_idx=-4), ValueError, "padding_idx"),
    (lambda: Embedding(3, 2, padding_idx=1.0), TypeError, "padding_idx"),
    (lambda: Embedding(3, 2, max_norm=0.0), ValueError, "max_norm"),
    (lambda: Embedding(3, 2, max_norm="1"), TypeError, "max_norm"),
    (lambda: Embedding(3, 2, norm_type=-1.0), ValueError, "norm_type"),
    (lambda: Embedding(3, 2, dtype=np.int32), TypeError, "dtype"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("indices, error, match", [
    (np.array([0, 5]), ValueError, r"in \[0, 5\)"),
    (np.array([-1, 2]), ValueError, r"from -1 to 2"),
    (np.array([True, False]), TypeError, "integer indices"),
    (np.array([0.5, 1.0]), ValueError, "whole numbers"),
    (np.array([np.nan]), ValueError, "whole numbers"),
    (np.array(["a"]), TypeError, "integer indices"),
])
def test_bad_indices_are_refused(indices, error, match):
    with pytest.raises(error, match=match):
        Embedding(5, 2).forward(indices)


# ================================================================= hostile inputs, as tests/test_hostile_inputs.py
def indices_or_anything(data):
    """Often valid indices of an integer dtype, otherwise anything :func:`hostile` makes."""
    if data.draw(st.floats(0, 1)) < 0.5:
        shape = data.draw(any_shape())
        dtype = data.draw(st.sampled_from([np.int64, np.int32, np.int8, np.uint8, np.uint64]))
        return data.draw(arrays_of(shape, dtype).map(lambda a: np.clip(a, 0, 4)))
    return data.draw(hostile(any_shape(), float_bias=0.3))


def test_embedding_hostile_inputs(torch):
    @settings(max_examples=NODE_EXAMPLES, **SETTINGS)
    @given(data=st.data())
    def run(data):
        options = data.draw(st.sampled_from([{}, {"padding_idx": 1, "scale_grad_by_freq": True}, {"max_norm": 1.0}]))
        a, b = Embedding(5, 3, rng=0, **options), Embedding(5, 3, rng=0, **options)
        for op in data.draw(st.lists(st.sampled_from(["forward", "forward", "evaluate", "jacobian", "backward"]),
                                     min_size=1, max_size=4)):
            if op == "backward":
                if a.pending is None:
                    continue
                g = data.draw(hostile(st.just(a.pending.y.shape)))
                before = a.weight.grad.copy()
                outcome = guarded(lambda: a.backward(g, reset_after=False), g)
                if outcome.ok:
                    assert outcome.value is None and b.backward(g, reset_after=False) is None
                    assert_same(a.weight.grad, b.weight.grad, "the weight's gradient on the twin")
                    g_seen = np.asarray(g, dtype=np.float64)
                    table = torch.tensor(a.weight.value, requires_grad=True)
                    torch.nn.functional.embedding(torch.tensor(a.pending.flat.reshape(a.pending.x.shape)), table,
                                                  **_torch_options(options)).backward(torch.tensor(g_seen))
                    assert_matches_torch(a.weight.grad - before, table.grad, "Embedding's weight gradient",
                                         scale=magnitude(g_seen), infinite_grad=bool(np.any(np.isinf(g_seen))))
                continue
            x = indices_or_anything(data)
            table = a.weight.value.copy()
            outcome = guarded(lambda: getattr(a, op)(x), x)
            if not outcome.ok:
                np.testing.assert_array_equal(a.weight.value, table)
                continue
            assert_same(getattr(b, op)(x), outcome.value, f"Embedding.{op} on the twin")
            indices = np.asarray(x).astype(np.int64)
            if op == "jacobian":
                assert outcome.value is None
                continue
            theirs = torch.tensor(table)  # torch renormalises its table in place, as our forward does
            expected = torch.nn.functional.embedding(torch.tensor(indices), theirs, **options).numpy()
            assert outcome.value.shape == indices.shape + (3,) and outcome.value.dtype == np.float64
            np.testing.assert_allclose(outcome.value, expected, rtol=1e-12, atol=0)
            np.testing.assert_allclose(a.weight.value, theirs.numpy() if op == "forward" else table, rtol=1e-12)
        x0 = np.array([[0, 1], [4, 1]])
        assert_same(a.forward(x0), b.forward(x0), "forward after the hostile calls")
        a.backward(np.ones((2, 2, 3)))
        b.backward(np.ones((2, 2, 3)))
        assert_same(a.weight.grad, b.weight.grad, "gradient after the hostile calls")
        assert_same(a.weight.value, b.weight.value, "weight after the hostile calls")

    run()


def _torch_options(options):
    return {k: v for k, v in options.items() if k != "max_norm"}  # the table was renormalised by the forward pass
