"""Gather and IndexSelect: torch.gather / index_select semantics, scatter-add gradients on both engine paths."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import engine
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Gather, IndexSelect
from oracle_helpers import agrees_with_torch

GATHERS = [  # (dim, input shape, index shape): repeated indices come with the random draws
    (0, (4, 3), (6, 3)),
    (1, (3, 5), (3, 7)),
    (1, (4, 5), (2, 3)),  # an index shorter than the input along the other axis: those entries get no gradient
    (-1, (2, 3, 4), (2, 2, 6)),
    (-3, (3, 2, 2), (1, 2, 1)),
    (0, (5,), (8,)),
    (1, (2, 3), (2, 0)),
]


@pytest.mark.parametrize("dim, x_shape, index_shape", GATHERS)
def test_gather_agrees_with_torch_and_gradcheck(dim, x_shape, index_shape, engine_path, torch, rng):
    x = rng.standard_normal(x_shape)
    index = rng.integers(0, x_shape[dim], index_shape)
    agrees_with_torch(Gather(dim), [x, index], lambda t, i: torch.gather(t, dim, i), torch, rng, constant=(1,))
    assert_gradients(Gather(dim=dim), (x, index))  # torch's name for the argument


@pytest.mark.parametrize("dim, x_shape, index", [(0, (4, 3), [3, 0, 3, 3]), (1, (2, 5), [4]), (-1, (2, 3, 4), [0, 0]),
                                                 (0, (5,), [1, 4, 1]), (1, (2, 3), []), (1, (2, 3), 2)])
def test_index_select_agrees_with_torch_and_gradcheck(dim, x_shape, index, engine_path, torch, rng):
    x, index = rng.standard_normal(x_shape), np.array(index, dtype=np.int64)
    agrees_with_torch(IndexSelect(dim), [x, index], lambda t, i: torch.index_select(t, dim, i), torch, rng,
                      constant=(1,))
    assert_gradients(IndexSelect(dim=dim), (x, index))


def test_a_repeated_index_sums_its_gradients(engine_path):
    node = Gather(1)
    node.forward(np.zeros((1, 3)), np.array([[2, 0, 2, 2]]))
    dx, none = node.backward(np.array([[1.0, 10.0, 100.0, 1000.0]]))
    assert none is None
    np.testing.assert_array_equal(dx, [[10.0, 0.0, 1101.0]])
    node = IndexSelect(0)
    node.forward(np.zeros((3, 2)), np.array([1, 1, 0]))
    np.testing.assert_array_equal(node.backward(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))[0],
                                  [[5.0, 6.0], [4.0, 6.0], [0.0, 0.0]])


def test_a_nan_gradient_reaches_only_the_entry_it_was_picked_from(engine_path):
    node = Gather(0)
    node.forward(np.zeros(4), np.array([1, 3]))
    np.testing.assert_array_equal(node.backward(np.array([np.nan, np.inf]))[0], [0.0, np.nan, 0.0, np.inf])
    node = IndexSelect(1)
    node.forward(np.zeros((1, 3)), np.array([2]))
    np.testing.assert_array_equal(node.backward(np.array([[np.nan]]))[0], [[0.0, 0.0, np.nan]])


@pytest.mark.parametrize("node, x_shape, index", [(Gather(1), (3, 4), np.array([[3, 3, 0], [1, 2, 1], [0, 0, 0]])),
                                                  (Gather(0), (4, 2), np.array([[3, 1], [3, 3]])),
                                                  (IndexSelect(0), (4, 2), np.array([2, 2, 0]))])
def test_the_jacobian_against_finite_differences(node, x_shape, index, rng):
    x = rng.standard_normal(x_shape)
    jac, none = node.jacobian(x, index)
    assert none is None and jac.shape == node.evaluate(x, index).shape + x_shape
    np.testing.assert_allclose(jac, numerical_jacobian(lambda v: node.evaluate(v, index), x), atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_both_paths_give_the_same_numbers(dtype, rng):
    x = rng.standard_normal((6, 50)).astype(dtype)
    for node, index in ((Gather(1), rng.integers(0, 50, (6, 80))), (IndexSelect(1), rng.integers(0, 50, 80))):
        y = node.evaluate(x, index)
        g = rng.standard_normal(y.shape).astype(dtype)
        results = []
        for fast in (True, False):
            engine.set_fast(fast)
            try:
                node.forward(x, index)
                results.append(node.backward(g)[0])
            finally:
                engine.set_fast(True)
        assert results[0].dtype == results[1].dtype == dtype
        np.testing.assert_allclose(results[0], results[1], rtol=1e-6 if dtype == np.float32 else 1e-3, atol=1e-6)


def test_float16_sums_in_float32(engine_path):
    node = IndexSelect(0)
    node.forward(np.zeros(1, np.float16), np.zeros(4000, dtype=np.int64))
    dx, _ = node.backward(np.ones(4000, np.float16))
    assert dx.dtype == np.float16 and dx[0] == 4000  # float16 alone stops adding 1 at 2048


def test_index_dtypes(rng):
    x = rng.standard_normal((2, 3))
    for dtype in (np.int8, np.int32, np.uint16, np.int64):
        np.testing.assert_array_equal(Gather(1)(x, np.array([[2], [0]], dtype)), x[[0, 1], [2, 0]][:, None])
    np.testing.assert_array_equal(IndexSelect(1)(x, [2, 0]), x[:, [2, 0]])  # a list is an index too


def test_bad_arguments_and_inputs_are_refused():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="dim must be an integer"):
        Gather(1.0)
    with pytest.raises(TypeError, match="the index must hold integers, got dtype float64"):
        Gather(1)(x, np.array([[0.0]]))
    with pytest.raises(TypeError, match="the index must hold integers, got dtype bool"):
        IndexSelect(1)(x, np.array([True]))
    with pytest.raises(ValueError, match=r"index 3 is out of range for dim 1 of the input of shape \(2, 3\) "
                                         r"\(expected indices in \[0, 2\]\)"):
        Gather(1)(x, np.array([[0, 3]]))
    with pytest.raises(ValueError, match="index -1 is out of range"):
        IndexSelect(0)(x, np.array([-1]))
    with pytest.raises(ValueError, match=r"has no entries along dim 0 to pick"):
        IndexSelect(0)(np.ones((0, 3)), np.array([0]))
    with pytest.raises(ValueError, match=r"index of shape \(1,\) must have the input's 2 axes"):
        Gather(1)(x, np.array([0]))
    with pytest.raises(ValueError, match=r"no longer than the input of shape \(2, 3\) along every axis but dim 1"):
        Gather(1)(x, np.zeros((3, 1), dtype=int))
    with pytest.raises(ValueError, match=r"the index must be 1-d \(or 0-d\), got shape \(1, 1\)"):
        IndexSelect(0)(x, np.array([[0]]))
    with pytest.raises(ValueError, match=r"dim 2 is out of range for input of shape \(2, 3\)"):
        Gather(2)(x, np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match=r"the input has shape \(\)"):
        IndexSelect(0)(np.float64(1.0), np.array([0]))
    assert repr(Gather(-1)) == "Gather(dim=-1)" and repr(IndexSelect(0)) == "IndexSelect(dim=0)"


def test_an_empty_index_picks_nothing_and_passes_no_gradient(engine_path):
    node = Gather(0)
    y = node.forward(np.ones((3, 2)), np.zeros((0, 2), dtype=np.int64))
    assert y.shape == (0, 2)
    np.testing.assert_array_equal(node.backward(np.zeros((0, 2)))[0], np.zeros((3, 2)))
