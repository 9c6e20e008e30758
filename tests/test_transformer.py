"""The transformer layer, the decoder-only block and the positional embeddings against torch (float64 to 1e-10,
float32 to its rounding; every parameter gradient), gradient checks with the dense Jacobian, state dicts both ways,
dropout, bad arguments and bad inputs.  Their hostile inputs are entries of tests/test_hostile_inputs.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch import Sequential
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import (Embedding, LayerNorm, LearnedPositionalEmbedding, Linear, SinusoidalPositionalEncoding,
                                   TransformerDecoderBlock, TransformerEncoderLayer)

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched", "ignore:enable_nested_tensor")

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-4, atol=2e-5)  # a dozen products and two layer norms, each rounded in float32


def _perturb(node, rng):
    """Move every parameter off torch's initial values (zero biases, unit norms) so each gradient shows."""
    for p in node.parameters():
        p.value[...] += (0.1 * rng.standard_normal(p.shape)).astype(p.dtype)
    return node


def pair(torch, rng, dtype=np.float64, **options):
    ours = _perturb(TransformerEncoderLayer(6, 2, 10, 0.0, rng=0, dtype=dtype, **options), rng)
    theirs = torch.nn.TransformerEncoderLayer(6, 2, 10, 0.0, **options).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


def compare(torch, ours, theirs, x, g, tolerance, **call):
    tensor = torch.tensor(x, requires_grad=True)
    torch_call = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in call.items()}
    expected = theirs(tensor, **torch_call)
    expected.backward(torch.tensor(g))
    y = ours.forward(x, **call)
    dx = ours.backward(g)
    assert y.dtype == dx.dtype == x.dtype
    np.testing.assert_allclose(y, expected.detach().numpy(), err_msg="y", **tolerance)
    np.testing.assert_allclose(dx, tensor.grad.numpy(), err_msg="dx", **tolerance)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs.get_parameter(name).grad.numpy(), err_msg=name, **tolerance)


LAYERS = [{}, {"norm_first": True}, {"activation": "gelu", "batch_first": True},
          {"bias": False, "norm_first": True, "batch_first": True}]


@pytest.mark.parametrize("options", LAYERS, ids=str)
@pytest.mark.parametrize("masks", ["none", "padding", "additive", "causal"])
def test_encoder_layer_agrees_with_torch_over_two_steps(torch, rng, options, masks, engine_path):
    ours, theirs = pair(torch, rng, **options)
    n, t = 3, 4
    for _ in range(2):
        x = rng.standard_normal((n, t, 6) if options.get("batch_first") else (t, n, 6))
        call = {}
        if masks == "padding":
            padding = rng.random((n, t)) < 0.3
            padding[:, 0] = False
            call["src_key_padding_mask"] = padding
        elif masks == "additive":
            call["src_mask"] = rng.standard_normal((t, t))
        elif masks == "causal":
            call.update(src_mask=np.triu(np.ones((t, t), dtype=bool), 1), is_causal=True)
        compare(torch, ours, theirs, x, rng.standard_normal(x.shape), F64, **call)


@pytest.mark.parametrize("options", LAYERS[:3], ids=str)
def test_encoder_layer_float32_and_unbatched(torch, rng, options):
    ours, theirs = pair(torch, rng, np.float32, **options)
    for shape in ((3, 4, 6), (5, 6)):
        ours.zero_grad()
        theirs.zero_grad()
        x = rng.standard_normal(shape).astype(np.float32)
        compare(torch, ours, theirs, x, rng.standard_normal(shape).astype(np.float32), F32)


def test_decoder_block_is_torchs_pre_norm_layer_with_a_causal_mask(torch, rng, engine_path):
    ours = _perturb(TransformerDecoderBlock(6, 3, 8, 0.0, rng=1), rng)
    theirs = torch.nn.TransformerEncoderLayer(6, 3, 8, 0.0, "gelu", batch_first=True, norm_first=True,
                                              dtype=torch.float64)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, 5, 6))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    tensor = torch.tensor(x, requires_grad=True)
    expected = theirs(tensor, src_mask=mask, is_causal=True)
    g = rng.standard_normal(x.shape)
    expected.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.forward(x), expected.detach().numpy(), **F64)
    np.testing.assert_allclose(ours.backward(g), tensor.grad.numpy(), **F64)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, theirs.get_parameter(name).grad.numpy(), err_msg=name, **F64)
    # the future does not reach the past
    later = x.copy()
    later[:, 3:] += 1.0
    np.testing.assert_allclose(ours.evaluate(later)[:, :3], ours.evaluate(x)[:, :3], **F64)


@pytest.mark.parametrize("make", [
    lambda: TransformerEncoderLayer(4, 2, 5, 0.0, rng=0),
    lambda: TransformerEncoderLayer(4, 2, 5, 0.3, "gelu", norm_first=True, rng=0),  # dropout: the next masks, held
    lambda: TransformerDecoderBlock(4, 2, 5, 0.0, rng=0)], ids=["post-norm", "pre-norm, dropout", "decoder"])
def test_gradients_and_jacobian(rng, make, engine_path):
    node = _perturb(make(), rng)
    assert_gradients(node, rng.standard_normal((2, 3, 4)))


def test_dropout_in_training_only(rng):
    node = TransformerEncoderLayer(4, 2, 5, 0.5, rng=0)
    x = rng.standard_normal((3, 2, 4))
    assert not np.array_equal(node.forward(x), node.forward(x))
    node.eval()
    np.testing.assert_array_equal(node.forward(x), node.forward(x))


def test_state_dict_comes_back_from_torch(torch, rng):
    theirs = torch.nn.TransformerEncoderLayer(6, 2, 12, dtype=torch.float64, norm_first=True).eval()
    ours = TransformerEncoderLayer(6, 2, 12, norm_first=True, rng=3).eval()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = rng.standard_normal((4, 2, 6))
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    np.testing.assert_allclose(ours.forward(x), expected.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("arguments, error", [
    ((6, 4), ValueError), ((6, 2, 0), ValueError), ((6, 2, 8, 1.5), ValueError), ((6, 2, 8, 0.1, "tanh"), ValueError),
    ((6, 2, 8, 0.1, "relu", 1e-5, "no"), TypeError), ((6, 2, 8, 0.1, "relu", 1e-5, False, 1), TypeError)], ids=str)
def test_bad_arguments(arguments, error):
    with pytest.raises(error):
        TransformerEncoderLayer(*arguments)


def test_bad_inputs():
    layer = TransformerEncoderLayer(4, 2, 6, rng=0)
    for shape in ((3, 2, 5), (4,), (2, 3, 2, 4)):
        with pytest.raises(ValueError, match="expects input"):
            layer.forward(np.zeros(shape))
    with pytest.raises(ValueError, match="key_padding_mask"):
        layer.forward(np.zeros((3, 2, 4)), src_key_padding_mask=np.zeros((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="needs attn_mask"):
        layer.forward(np.zeros((3, 2, 4)), is_causal=True)
    with pytest.raises(ValueError, match="own causal mask"):
        TransformerDecoderBlock(4, 2, 6, rng=0).forward(np.zeros((2, 3, 4)), src_mask=np.zeros((3, 3), dtype=bool))


# ================================================================= positional embeddings
@pytest.mark.parametrize("batch_first", [True, False])
def test_learned_positions_are_torchs_embedding_of_arange(torch, rng, batch_first, engine_path):
    ours = LearnedPositionalEmbedding(7, 3, batch_first=batch_first, rng=0)
    table = torch.nn.Embedding(7, 3, dtype=torch.float64)
    table.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for _ in range(2):
        x = rng.standard_normal((2, 5, 3) if batch_first else (5, 2, 3))
        tensor = torch.tensor(x, requires_grad=True)
        positions = table(torch.arange(5))
        expected = tensor + (positions if batch_first else positions[:, None])
        g = rng.standard_normal(x.shape)
        expected.backward(torch.tensor(g))
        np.testing.assert_allclose(ours.forward(x), expected.detach().numpy(), **F64)
        np.testing.assert_allclose(ours.backward(g), tensor.grad.numpy(), **F64)
        np.testing.assert_allclose(ours.weight.grad, table.weight.grad.numpy(), **F64)
    assert_gradients(ours, rng.standard_normal((2, 4, 3) if batch_first else (4, 2, 3)))


def test_sinusoids_are_the_papers(rng):
    node = SinusoidalPositionalEncoding(5, max_len=10)
    y = node.forward(np.zeros((1, 7, 5)))[0]
    for t in range(7):
        for i in range(5):
            angle = t / 10000 ** (2 * (i // 2) / 5)
            assert math.isclose(y[t, i], math.sin(angle) if i % 2 == 0 else math.cos(angle), abs_tol=1e-12)
    assert node.state_dict() == {} and node.forward(np.zeros((4, 5), dtype=np.float32)).dtype == np.float32
    assert_gradients(node, rng.standard_normal((2, 3, 5)))


def test_positions_refuse_bad_arguments_and_long_sequences():
    for make in (lambda: LearnedPositionalEmbedding(0, 3), lambda: SinusoidalPositionalEncoding(3, max_len=-1),
                 lambda: LearnedPositionalEmbedding(4, 3, batch_first=1)):
        with pytest.raises((ValueError, TypeError)):
            make()
    with pytest.raises(ValueError, match="longer than"):
        LearnedPositionalEmbedding(4, 3, rng=0).forward(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="expects input"):
        SinusoidalPositionalEncoding(4).forward(np.zeros((2, 5, 3)))


def test_a_small_language_model_is_a_sequential(rng):
    """Embedding, positions, decoder blocks, a final norm and the head: a plain Sequential, gradients checked."""
    model = Sequential(Embedding(7, 4, rng=0), LearnedPositionalEmbedding(5, 4, rng=1),
                       TransformerDecoderBlock(4, 2, 6, 0.0, rng=2), LayerNorm(4), Linear(4, 7, rng=3))
    tokens = rng.integers(0, 7, (2, 5))
    assert model.forward(tokens).shape == (2, 5, 7)
    assert model.backward(np.ones((2, 5, 7))) is None and np.any(model[0].weight.grad != 0)
    assert_gradients(Sequential(*list(model)[1:]), rng.standard_normal((2, 5, 4)), atol=1e-8, rtol=1e-7)


def test_attention_weights_are_torchs_per_head_probabilities(torch, rng):
    ours, theirs = pair(torch, rng, batch_first=True)
    x = rng.standard_normal((2, 4, 6))
    maps = ours.attention_weights(x)
    with torch.no_grad():  # post-norm: self-attention reads the input itself
        _, expected = theirs.self_attn(*(torch.tensor(x),) * 3, average_attn_weights=False)
    np.testing.assert_allclose(maps, expected.numpy(), **F64)
    block = TransformerDecoderBlock(6, 2, 8, rng=0)
    causal = block.attention_weights(rng.standard_normal((5, 6)))
    assert causal.shape == (2, 5, 5) and np.all(np.triu(causal, 1) == 0)
    np.testing.assert_allclose(causal.sum(axis=-1), 1.0, rtol=1e-12)
