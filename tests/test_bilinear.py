"""Bilinear: the torch oracle, gradient checks of both inputs and both parameters, state dicts, dtypes, bad arguments
and bad inputs, and hostile inputs for its two inputs (the one-input harness of tests/test_hostile_inputs.py cannot
drive two; the same contract is checked here, with its helpers)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import Bilinear
from test_hostile_inputs import (NODE_EXAMPLES, SETTINGS, as_reference_array, assert_matches_torch, assert_same,
                                 comparable, guarded, hostile, magnitude)


def pair(torch, *sizes, bias=True, dtype=np.float64):
    ours = Bilinear(*sizes, bias, rng=0, dtype=dtype)
    theirs = torch.nn.Bilinear(*sizes, bias).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_agrees_with_torch_over_two_steps(torch, rng, batch, bias):
    ours, theirs = pair(torch, 3, 4, 2, bias=bias)
    for _ in range(2):  # the parameter gradients accumulate on both sides
        x1, x2, g = (rng.standard_normal(batch + (n,)) for n in (3, 4, 2))
        t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
        ty = theirs(t1, t2)
        ty.backward(torch.tensor(g))
        y = ours.forward(x1, x2)
        dx1, dx2 = ours.backward(g)
        for what, a, b in (("y", y, ty), ("dx1", dx1, t1.grad), ("dx2", dx2, t2.grad),
                           *((f"d/d {k}", p.grad, getattr(theirs, k).grad) for k, p in ours.named_parameters())):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=what)


def test_float32_agrees_with_torch_float32(torch, rng):
    ours, theirs = pair(torch, 6, 5, 4, dtype=np.float32)
    x1, x2 = rng.standard_normal((7, 6)).astype(np.float32), rng.standard_normal((7, 5)).astype(np.float32)
    g = rng.standard_normal((7, 4)).astype(np.float32)
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    theirs(t1, t2).backward(torch.tensor(g))
    y, (dx1, dx2) = ours.forward(x1, x2), ours.backward(g)
    assert y.dtype == dx1.dtype == dx2.dtype == ours.weight.grad.dtype == np.float32
    np.testing.assert_allclose(y, theirs(torch.tensor(x1), torch.tensor(x2)).detach().numpy(), rtol=2e-5, atol=2e-5)
    for a, b in ((dx1, t1.grad), (dx2, t2.grad), (ours.weight.grad, theirs.weight.grad),
                 (ours.bias.grad, theirs.bias.grad)):
        np.testing.assert_allclose(a, b.numpy(), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_gradients_in_float64(rng, bias):
    node = Bilinear(3, 2, 4, bias, rng=0)
    report = assert_gradients(node, (rng.standard_normal((5, 3)), rng.standard_normal((5, 2))), atol=1e-7, rtol=1e-6)
    assert len(report.comparisons) == 4 + (2 if bias else 1)
    assert_gradients(node, (rng.standard_normal(3), rng.standard_normal(2)), atol=1e-7, rtol=1e-6)


def test_the_jacobian_of_each_input(rng):
    node = Bilinear(3, 2, 4, rng=0)
    x1, x2 = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    j1, j2 = node.jacobian(x1, x2)
    assert j1.shape == (2, 4, 2, 3) and j2.shape == (2, 4, 2, 2)
    A = node.weight.value
    np.testing.assert_allclose(j1[1, :, 1], A @ x2[1], rtol=1e-14)  # dy_o/dx1 = A_o x2
    np.testing.assert_allclose(j2[0, :, 0], x1[0] @ A, rtol=1e-14)  # dy_o/dx2 = A_oᵀ x1
    np.testing.assert_array_equal(j1[0, :, 1], 0)  # samples do not mix


def test_layout_keys_and_initialisation(torch):
    node = Bilinear(400, 3, 2, rng=0)
    assert [(k, v.shape) for k, v in node.state_dict().items()] == [("weight", (2, 400, 3)), ("bias", (2,))]
    bound = 1 / math.sqrt(400)  # torch's U(-1/sqrt(in1), 1/sqrt(in1)), for the weight and the bias
    assert np.abs(node.weight.value).max() <= bound and np.abs(node.weight.value).max() > 0.95 * bound
    assert list(Bilinear(2, 3, 4, bias=False).state_dict()) == list(torch.nn.Bilinear(2, 3, 4, False).state_dict())
    theirs = torch.nn.Bilinear(400, 3, 2).double()
    node.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})  # torch -> ours
    np.testing.assert_array_equal(node.weight.value, theirs.weight.detach().numpy())
    assert repr(Bilinear(2, 3, 4)) == "Bilinear(in1_features=2, in2_features=3, out_features=4, bias=True)"


def test_a_float16_layer_computes_in_float32(rng):
    node = Bilinear(3, 2, 4, rng=0, dtype=np.float16)
    x1, x2 = rng.standard_normal((5, 3)).astype(np.float16), rng.standard_normal((5, 2)).astype(np.float16)
    twin = Bilinear(3, 2, 4, rng=0, dtype=np.float32)
    twin.weight.value[...], twin.bias.value[...] = node.weight.value, node.bias.value
    y = node.forward(x1, x2)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, twin.forward(x1, x2).astype(np.float16))


@pytest.mark.parametrize("make, error, match", [
    (lambda: Bilinear(0, 2, 3), ValueError, "in1_features"),
    (lambda: Bilinear(2, -1, 3), ValueError, "in2_features"),
    (lambda: Bilinear(2, 2, 1.5), ValueError, "out_features"),
    (lambda: Bilinear(2, 2, 3, dtype=np.int64), TypeError, "dtype"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("shape1, shape2, match", [
    ((5, 2), (5, 2), r"x2 of shape \(\.\.\., 3\)"),
    ((5, 3), (5, 3), r"x1 of shape \(\.\.\., 2\)"),
    ((), (3,), "x1"),
    ((5, 2), (4, 3), "batch axes"),
    ((5, 2), (3,), "batch axes"),
])
def test_bad_inputs_are_refused(shape1, shape2, match):
    with pytest.raises(ValueError, match=match):
        Bilinear(2, 3, 4).forward(np.zeros(shape1), np.zeros(shape2))


def test_one_input_is_refused():
    with pytest.raises(TypeError, match="takes 2 inputs"):
        Bilinear(2, 3, 4).forward(np.zeros((1, 2)))


# ================================================================= hostile inputs, as tests/test_hostile_inputs.py
def same(a, b, what):
    """:func:`assert_same`, part by part for a pair (the input gradients, the Jacobian's two blocks)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), what
        for i, (pa, pb) in enumerate(zip(a, b)):
            assert_same(pa, pb, f"{what}[{i}]")
    else:
        assert_same(a, b, what)


def test_bilinear_hostile_inputs(torch):
    @settings(max_examples=NODE_EXAMPLES, **SETTINGS)
    @given(data=st.data())
    def run(data):
        a, b = Bilinear(3, 2, 2, rng=0), Bilinear(3, 2, 2, rng=0)
        batch = st.lists(st.integers(0, 3), max_size=2).map(tuple)
        for op in data.draw(st.lists(st.sampled_from(["forward", "evaluate", "jacobian", "backward"]), min_size=1,
                                     max_size=4)):
            if op == "backward":
                if a.pending is None:
                    continue
                g = data.draw(hostile(st.just(a.pending.y.shape)))
                outcome = guarded(lambda: a.backward(g, reset_after=False), g)
                if outcome.ok:
                    same(b.backward(g, reset_after=False), outcome.value, "Bilinear.backward on the twin")
                    x1, x2 = a.pending.inputs
                    assert outcome.value[0].dtype == x1.dtype and outcome.value[1].dtype == x2.dtype
                    g_seen = as_reference_array(g)
                    if all(comparable(v.astype(np.float64), 1e6) for v in (x1, x2, g_seen)):
                        t1, t2 = (torch.tensor(v.astype(np.float64), requires_grad=True) for v in (x1, x2))
                        twin = pair(torch, 3, 2, 2)[1]
                        twin(t1, t2).backward(torch.tensor(g_seen.astype(np.float64)))
                        scale = magnitude(g_seen) * (1 + magnitude(x1) * magnitude(x2))
                        for ours, theirs in zip(outcome.value, (t1.grad, t2.grad)):
                            with np.errstate(over="ignore"):  # in x's dtype, as ours: float16 overflows past 65504
                                theirs = theirs.numpy().astype(ours.dtype)
                            assert_matches_torch(ours, theirs, "Bilinear.backward", scale=scale,
                                                 infinite_grad=bool(np.any(np.isinf(g_seen))))
                continue
            valid = data.draw(batch)
            x1, x2 = data.draw(hostile(st.just(valid + (3,)))), data.draw(hostile(st.just(valid + (2,))))
            outcome = guarded(lambda: getattr(a, op)(x1, x2), x1, x2)
            if not outcome.ok:
                continue
            same(getattr(b, op)(x1, x2), outcome.value, f"Bilinear.{op} on the twin")
            seen = [as_reference_array(x1), as_reference_array(x2)]
            assert seen[0] is not None and seen[1] is not None, "accepted an input that is not numbers"
            if op == "jacobian":
                assert [j.shape for j in outcome.value] == [s.shape[:-1] + (2,) + s.shape for s in seen]
                continue
            assert outcome.value.shape == seen[0].shape[:-1] + (2,) and outcome.value.dtype == np.float64
            if all(comparable(s.astype(np.float64), 1e6) for s in seen):
                expected = pair(torch, 3, 2, 2)[1](*(torch.tensor(s.astype(np.float64)) for s in seen))
                assert_matches_torch(outcome.value, expected, "Bilinear.forward",
                                     scale=(1 + magnitude(seen[0])) * (1 + magnitude(seen[1])))
        x1, x2, g = np.ones((2, 3)), np.ones((2, 2)), np.ones((2, 2))
        assert_same(a.forward(x1, x2), b.forward(x1, x2), "forward after the hostile calls")
        same(a.backward(g), b.backward(g), "backward after the hostile calls")
        for (key, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert_same(pa.grad, pb.grad, f"gradient of {key} after the hostile calls")

    run()


def test_an_empty_batch():
    node = Bilinear(3, 2, 4, rng=0)
    y = node.forward(np.zeros((0, 3)), np.zeros((0, 2)))
    dx1, dx2 = node.backward(np.zeros((0, 4)))
    assert y.shape == (0, 4) and dx1.shape == (0, 3) and dx2.shape == (0, 2)
    np.testing.assert_array_equal(node.weight.grad, 0)
