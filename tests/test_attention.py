"""Attention: scaled_dot_product_attention and MultiheadAttention against torch (float64 to 1e-10, float32 to its
rounding), gradient checks with the dense Jacobian, state dicts both ways, masks, dropout, bad arguments and bad
inputs, and hostile inputs for their several inputs (the one-input harness of tests/test_hostile_inputs.py cannot
drive them; the same contract is checked here, with its helpers)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import MultiheadAttention, ScaledDotProductAttention, scaled_dot_product_attention
from test_hostile_inputs import (NODE_EXAMPLES, SETTINGS, as_reference_array, assert_matches_torch, assert_same,
                                 comparable, guarded, hostile, magnitude)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the hostile values overflow, as they should

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=2e-5, atol=2e-6)


# ================================================================= scaled_dot_product_attention
SDPA_CASES = {
    "plain": ({}, None),
    "boolean mask": ({}, "bool"),
    "additive mask": ({"scale": 0.3}, "float"),
    "causal": ({"is_causal": True}, None),
    "per-batch mask": ({}, "batch bool"),
}


def _mask(kind, rng, batch, length, source):
    if kind is None:
        return None
    if kind == "float":
        return rng.standard_normal((length, source))
    shape = (batch[0], 1, length, source) if kind == "batch bool" else (length, source)
    mask = rng.random(shape) > 0.3
    mask[..., 0] = True
    return mask


@pytest.mark.parametrize("case", sorted(SDPA_CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sdpa_agrees_with_torch(torch, rng, case, dtype, engine_path):
    options, kind = SDPA_CASES[case]
    batch = (2, 3)
    q, k, v = (rng.standard_normal(batch + s).astype(dtype) for s in ((4, 5), (6, 5), (6, 3)))
    mask = _mask(kind, rng, batch, 4, 6)
    if mask is not None and mask.dtype.kind == "f":
        mask = mask.astype(dtype)
    node = ScaledDotProductAttention(**options)
    y = node.forward(q, k, v, mask)
    g = rng.standard_normal(y.shape).astype(dtype)
    grads = node.backward(g)
    tensors = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    expected = torch.nn.functional.scaled_dot_product_attention(
        *tensors, attn_mask=None if mask is None else torch.tensor(mask), **options)
    expected.backward(torch.tensor(g))
    tolerance = F64 if dtype == np.float64 else F32
    assert y.dtype == np.dtype(dtype) and grads[3] is None
    np.testing.assert_allclose(y, expected.detach().numpy(), **tolerance)
    for i, (grad, t) in enumerate(zip(grads[:3], tensors)):
        assert grad.dtype == np.dtype(dtype)
        np.testing.assert_allclose(grad, t.grad.numpy(), err_msg=f"input {i}", **tolerance)


def test_sdpa_a_row_masked_everywhere_gives_zeros_as_torch(torch, rng):
    q, k, v = rng.standard_normal((1, 3, 2)), rng.standard_normal((1, 4, 2)), rng.standard_normal((1, 4, 2))
    mask = np.ones((3, 4), dtype=bool)
    mask[1] = False
    node = ScaledDotProductAttention()
    y = node.forward(q, k, v, mask)
    dq, dk, dv, _ = node.backward(np.ones_like(y))
    expected = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)),
                                                                 attn_mask=torch.tensor(mask))
    np.testing.assert_allclose(y, expected.numpy(), **F64)
    assert np.all(y[0, 1] == 0) and np.all(dq[0, 1] == 0) and np.all(np.isfinite(dk))


@pytest.mark.parametrize("options", [{}, {"is_causal": True}, {"scale": 0.7}], ids=str)
def test_sdpa_gradients_and_jacobian(rng, options, engine_path):
    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    assert_gradients(ScaledDotProductAttention(**options), (q, k, v, None))
    mask = rng.standard_normal((3, 4))
    if not options.get("is_causal"):
        assert_gradients(ScaledDotProductAttention(**options), (q, k, v, mask))


def test_sdpa_dropout_is_the_derivative_of_its_own_mask(rng):
    node = ScaledDotProductAttention(dropout_p=0.4, rng=3)
    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    assert_gradients(node, (q, k, v, None))  # evaluate uses the mask the next forward draws
    first, second = node.forward(q, k, v), node.forward(q, k, v)
    assert not np.array_equal(first, second)  # a new mask each pass
    node.eval()
    plain = ScaledDotProductAttention().forward(q, k, v)
    np.testing.assert_array_equal(node.forward(q, k, v), plain)


def test_sdpa_function_and_float16(torch, rng):
    q, k, v = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    y = scaled_dot_product_attention(q, k, v, is_causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(*map(torch.tensor, (q, k, v)), is_causal=True)
    np.testing.assert_allclose(y, expected.numpy(), **F64)
    half = ScaledDotProductAttention().forward(*(a.astype(np.float16) for a in (q, k, v)))
    assert half.dtype == np.float16
    np.testing.assert_allclose(half, ScaledDotProductAttention().forward(q, k, v), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("arguments, error", [
    ({"dropout_p": 1.5}, ValueError), ({"dropout_p": "0.1"}, TypeError), ({"is_causal": 1}, TypeError),
    ({"scale": float("nan")}, TypeError), ({"scale": True}, TypeError)], ids=str)
def test_sdpa_bad_arguments(arguments, error):
    with pytest.raises(error):
        ScaledDotProductAttention(**arguments)


@pytest.mark.parametrize("shapes, mask", [
    (((3, 4), (5, 3), (5, 2)), None),  # E differs
    (((3, 4), (5, 4), (6, 2)), None),  # S differs
    (((2, 3, 4), (5, 4), (5, 2)), None),  # axes differ
    (((2, 3, 4), (1, 5, 4), (1, 5, 2)), None),  # leading axes differ
    (((4,), (4,), (4,)), None),  # no sequence axis
    (((3, 4), (5, 4), (5, 2)), np.ones((2, 5), dtype=bool)),  # the mask does not broadcast
    (((3, 4), (5, 4), (5, 2)), np.ones((3, 5), dtype=np.int64)),  # integers are no mask
], ids=range(7))
def test_sdpa_bad_inputs(shapes, mask):
    with pytest.raises((ValueError, TypeError)):
        ScaledDotProductAttention().forward(*(np.zeros(s) for s in shapes), mask)
    with pytest.raises(ValueError, match="not both"):
        ScaledDotProductAttention(is_causal=True).forward(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 4)),
                                                          np.ones((3, 3), dtype=bool))


# ================================================================= MultiheadAttention
def pair(torch, embed_dim=6, num_heads=2, dtype=np.float64, **options):
    ours = MultiheadAttention(embed_dim, num_heads, rng=0, dtype=dtype, **options)
    theirs = torch.nn.MultiheadAttention(embed_dim, num_heads, **options).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


LAYERS = [{}, {"batch_first": True}, {"kdim": 3, "vdim": 5}, {"bias": False, "batch_first": True}]
CALLS = [{}, {"average_attn_weights": False}, {"need_weights": False}]
MASKS = [(None, None), ("bool", None), (None, "bool"), ("bool", "float"), ("float", "heads bool")]


def _inputs(rng, ours, batch=3, length=4, source=5, dtype=np.float64):
    shape = (lambda t, e: (batch, t, e) if ours.batch_first else (t, batch, e)) if batch else (lambda t, e: (t, e))
    return (rng.standard_normal(shape(length, ours.embed_dim)).astype(dtype),
            rng.standard_normal(shape(source, ours.kdim)).astype(dtype),
            rng.standard_normal(shape(source, ours.vdim)).astype(dtype))


def _masks(rng, kinds, heads, batch=3, length=4, source=5, dtype=np.float64):
    padding_kind, mask_kind = kinds
    lead = (batch,) if batch else ()
    padding = None
    if padding_kind is not None:
        padding = rng.random(lead + (source,)) < 0.3
        padding[..., 0] = False  # every row keeps a key
        if padding_kind == "float":
            padding = np.where(padding, -1e9, 0.0).astype(dtype) + rng.standard_normal(padding.shape).astype(dtype)
    mask = None
    if mask_kind == "float":
        mask = rng.standard_normal((length, source)).astype(dtype)
    elif mask_kind is not None:
        shape = ((batch or 1) * heads, length, source) if mask_kind == "heads bool" else (length, source)
        mask = rng.random(shape) < 0.3
        mask[..., 0] = False
    return padding, mask


def _torch_grads(torch, theirs, xs, masks, call, g, g_weights):
    tensors = [torch.tensor(x, requires_grad=True) for x in xs]
    padding, mask = (None if m is None else torch.tensor(m) for m in masks)
    y, w = theirs(*tensors, key_padding_mask=padding, attn_mask=mask, **call)
    loss = (y * torch.tensor(g)).sum()
    if g_weights is not None:
        loss = loss + (w * torch.tensor(g_weights)).sum()
    loss.backward()
    return y, w, tensors


@pytest.mark.filterwarnings("ignore:Support for mismatched")
@pytest.mark.parametrize("layer", LAYERS, ids=str)
@pytest.mark.parametrize("call", CALLS, ids=str)
@pytest.mark.parametrize("masks", MASKS, ids=str)
def test_mha_agrees_with_torch_over_two_steps(torch, rng, layer, call, masks):
    ours, theirs = pair(torch, **layer)
    for _ in range(2):  # the parameter gradients accumulate on both sides
        xs = _inputs(rng, ours)
        padding, mask = _masks(rng, masks, ours.num_heads)
        y, w = ours.forward(*xs, key_padding_mask=padding, attn_mask=mask, **call)
        g = rng.standard_normal(y.shape)
        g_weights = None if w is None else rng.standard_normal(w.shape)
        grads = ours.backward((g, g_weights))
        ty, tw, tensors = _torch_grads(torch, theirs, xs, (padding, mask), call, g, g_weights)
        assert grads[3:] == (None, None) and (w is None) == (tw is None)
        pairs = [("y", y, ty), ("weights", w, tw)] + [(f"d input {i}", d, t.grad) for i, (d, t) in
                                                       enumerate(zip(grads, tensors))]
        pairs += [(f"d/d {k}", p.grad, theirs.get_parameter(k).grad) for k, p in ours.named_parameters()]
        for what, a, b in pairs:
            if b is not None:
                np.testing.assert_allclose(a, b.detach().numpy(), err_msg=what, **F64)


@pytest.mark.parametrize("layer", LAYERS[:3], ids=str)
def test_mha_float32_and_unbatched_agree_with_torch(torch, rng, layer):
    ours, theirs = pair(torch, dtype=np.float32, **layer)
    for batch in (3, None):
        xs = _inputs(rng, ours, batch=batch, dtype=np.float32)
        padding, mask = _masks(rng, ("bool", "heads bool"), 2, batch=batch)
        ours.zero_grad()
        theirs.zero_grad()
        y, w = ours.forward(*xs, key_padding_mask=padding, attn_mask=mask, average_attn_weights=False)
        g, g_weights = rng.standard_normal(y.shape).astype(np.float32), rng.standard_normal(w.shape).astype(np.float32)
        grads = ours.backward((g, g_weights))
        ty, tw, tensors = _torch_grads(torch, theirs, xs, (padding, mask), {"average_attn_weights": False}, g,
                                       g_weights)
        assert y.dtype == w.dtype == grads[0].dtype == ours.in_proj_bias.grad.dtype == np.float32
        for a, b in [(y, ty), (w, tw)] + list(zip(grads, (t.grad for t in tensors))) + [
                (p.grad, theirs.get_parameter(k).grad) for k, p in ours.named_parameters()]:
            np.testing.assert_allclose(a, b.detach().numpy(), **F32)


@pytest.mark.parametrize("layer", [{}, {"kdim": 2, "vdim": 3, "batch_first": True}], ids=str)
def test_mha_gradients_and_jacobian_of_both_outputs(rng, layer, engine_path):
    node = MultiheadAttention(4, 2, rng=1, **layer)
    xs = _inputs(rng, node, batch=2, length=2, source=3)
    padding, mask = _masks(rng, ("bool", "float"), 2, batch=2, length=2, source=3)
    node.in_proj_bias.value[...] = rng.standard_normal(12)  # torch starts it at zero: make its gradient show
    assert_gradients(node, xs + (padding, mask))
    assert_gradients(node, xs + (None, None))


def test_mha_dropout_and_eval(rng):
    node = MultiheadAttention(4, 2, dropout=0.3, rng=2)
    xs = _inputs(rng, node, batch=2, length=2, source=3)
    assert_gradients(node, xs + (None, None))  # the mask of the next forward, held through the check
    assert not np.array_equal(node.forward(*xs)[0], node.forward(*xs)[0])
    node.eval()
    np.testing.assert_array_equal(node.forward(*xs)[1], node.forward(*xs)[1])


def test_mha_state_dict_comes_back_from_torch(torch, rng):
    for options in ({}, {"kdim": 3, "vdim": 5}):
        theirs = torch.nn.MultiheadAttention(6, 3, dtype=torch.float64, **options)
        ours = MultiheadAttention(6, 3, rng=5, **options)
        ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
        assert list(ours.state_dict()) == list(theirs.state_dict())
        xs = _inputs(rng, ours)
        expected = theirs(*map(torch.tensor, xs))
        for a, b in zip(ours.forward(*xs), expected):
            np.testing.assert_allclose(a, b.detach().numpy(), **F64)


def test_mha_a_row_masked_everywhere_as_torch(torch, rng):
    ours, theirs = pair(torch, batch_first=True)
    xs = _inputs(rng, ours, batch=1)
    padding = np.ones((1, 5), dtype=bool)
    for need_weights in (True, False):
        y, _ = ours.forward(*xs, key_padding_mask=padding, need_weights=need_weights)
        expected, _ = theirs(*map(torch.tensor, xs), key_padding_mask=torch.tensor(padding), need_weights=need_weights)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected.detach().numpy()))
        np.testing.assert_allclose(y, expected.detach().numpy(), **F64)


def test_mha_is_causal_is_a_hint_and_self_attention_defaults(rng):
    node = MultiheadAttention(4, 2, rng=0)
    x = rng.standard_normal((3, 2, 4))
    with pytest.raises(ValueError, match="needs attn_mask"):
        node.forward(x, x, x, is_causal=True)
    causal = np.triu(np.ones((3, 3), dtype=bool), 1)
    np.testing.assert_array_equal(node.forward(x, x, x, attn_mask=causal, is_causal=True)[0],
                                  node.forward(x, attn_mask=causal)[0])


@pytest.mark.parametrize("arguments, error", [
    ((5, 2), ValueError), ((0, 1), ValueError), ((4, 2, 1.5), ValueError), ((4, 2, "0"), TypeError),
    ((4, 2, 0.0, True, True), ValueError), ((4, 2, 0.0, True, False, True), ValueError),
    ((4, 2, 0.0, True, False, False, 0), ValueError), ((4, 2, 0.0, True, False, False, None, None, "yes"), TypeError),
    ((4, 2, 0.0, True, False, False, None, None, False, "cuda"), ValueError)], ids=str)
def test_mha_bad_arguments(arguments, error):
    with pytest.raises(error):
        MultiheadAttention(*arguments)


@pytest.mark.parametrize("shapes, padding, mask", [
    (((3, 2, 4), (5, 2, 4), (5, 2, 5)), None, None),  # value's features
    (((3, 2, 4), (5, 1, 4), (5, 1, 4)), None, None),  # batch sizes
    (((3, 2, 4), (5, 2, 4), (4, 2, 4)), None, None),  # key and value lengths
    (((3, 2, 4), (5, 4), (5, 4)), None, None),  # batched and not
    (((2, 3, 2, 4),) * 3, None, None),  # four axes
    (((3, 2, 4), (5, 2, 4), (5, 2, 4)), np.zeros((2, 4), dtype=bool), None),
    (((3, 2, 4), (5, 2, 4), (5, 2, 4)), None, np.zeros((3, 4), dtype=bool)),
    (((3, 2, 4), (5, 2, 4), (5, 2, 4)), None, np.zeros((2, 3, 5), dtype=bool)),
    (((3, 2, 4), (5, 2, 4), (5, 2, 4)), np.zeros((2, 5), dtype=np.int32), None),
], ids=range(9))
def test_mha_bad_inputs(shapes, padding, mask):
    node = MultiheadAttention(4, 2, rng=0)
    with pytest.raises((ValueError, TypeError)):
        node.forward(*(np.zeros(s) for s in shapes), key_padding_mask=padding, attn_mask=mask)
    with pytest.raises(TypeError, match="need_weights"):
        node.forward(np.zeros((3, 4)), need_weights="no")


# ================================================================= hostile inputs, as tests/test_hostile_inputs.py
def same(a, b, what):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), what
        for i, (pa, pb) in enumerate(zip(a, b)):
            same(pa, pb, f"{what}[{i}]")
    elif a is None:
        assert b is None, what
    else:
        assert_same(a, b, what)


def _first_block(value):
    while isinstance(value, tuple):
        value = value[0]
    return value


@pytest.mark.parametrize("which", ["ScaledDotProductAttention", "MultiheadAttention"])
def test_attention_hostile_inputs(torch, which):
    """Hostile q, k, v (dtypes, NaN, Inf, empty axes, non-arrays): a result or a deliberate error, the caller's
    arrays untouched, the twin in step, torch's values where the inputs are moderate."""
    make = (lambda: ScaledDotProductAttention()) if which == "ScaledDotProductAttention" else (
        lambda: MultiheadAttention(4, 2, rng=0, batch_first=True))

    def reference(xs):
        tensors = [torch.tensor(np.asarray(x, dtype=np.float64)) for x in xs]
        if which == "ScaledDotProductAttention":
            return torch.nn.functional.scaled_dot_product_attention(*tensors)
        theirs = torch.nn.MultiheadAttention(4, 2, batch_first=True, dtype=torch.float64)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in make().state_dict().items()})
        return theirs(*tensors)[0]

    @settings(max_examples=NODE_EXAMPLES // 2, **SETTINGS)
    @given(data=st.data())
    def run(data):
        a, b = make(), make()
        for op in data.draw(st.lists(st.sampled_from(["forward", "evaluate", "jacobian", "backward"]), min_size=1,
                                     max_size=3)):
            if op == "backward":
                if a.pending is None:
                    continue
                g = data.draw(hostile(st.just(_first_block(a.pending.y).shape)))
                outcome = guarded(lambda: a.backward(g, reset_after=False), g)
                if outcome.ok:
                    same(b.backward(g, reset_after=False), outcome.value, f"{which}.backward on the twin")
                    for grad, x in zip(outcome.value, a.pending.inputs):
                        assert grad is None or (grad.shape == x.shape and grad.dtype.kind == "f")
                continue
            batch, length, source = (data.draw(st.integers(0, 2)) for _ in range(3))
            shapes = [(batch, length, 4), (batch, source, 4), (batch, source, 4)]
            xs = [data.draw(hostile(st.just(s))) for s in shapes]
            outcome = guarded(lambda: getattr(a, op)(*xs), *xs)
            if not outcome.ok:
                continue
            same(getattr(b, op)(*xs), outcome.value, f"{which}.{op} on the twin")
            seen = [as_reference_array(x) for x in xs]
            assert all(s is not None for s in seen), "accepted an input that is not numbers"
            y = _first_block(outcome.value)
            assert y.dtype.kind == "f"
            if op != "jacobian" and all(comparable(s.astype(np.float64), 1e3) for s in seen):
                assert_matches_torch(y.astype(np.float64), reference(seen).detach().numpy(), f"{which}.{op}",
                                     scale=(1 + magnitude(*seen)) ** 3)
        xs = [np.ones((2, 3, 4)), np.ones((2, 2, 4)), np.ones((2, 2, 4))]
        assert_same(_first_block(a.forward(*xs)), _first_block(b.forward(*xs)), "forward after the hostile calls")
        g = np.ones((2, 3, 4))
        same(a.backward(g), b.backward(g), "backward after the hostile calls")
        for (key, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            assert_same(pa.grad, pb.grad, f"gradient of {key} after the hostile calls")

    run()
