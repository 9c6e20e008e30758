"""Shared parameters listed once, tied (and transposed) weights, and optimizers on a tied model, against torch."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import Graph, Input, Parameter, Sequential
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.nodes import BatchNorm1d, Linear, Tanh
from nn_from_scratch.optim import SGD, Adam


def autoencoder(seed=0):
    encoder = Linear(5, 3, rng=seed)
    decoder = Linear.tied_to(encoder.weight, transpose=True, rng=seed + 1)
    return Sequential(encoder, Tanh(), decoder), encoder, decoder


# ---------------------------------------------------------------- listed once
def test_a_node_used_twice_lists_its_parameters_and_buffers_once():
    norm, layer = BatchNorm1d(3), Linear(3, 3, rng=0)
    model = Sequential(layer, norm, layer, norm)
    assert list(dict(model.named_parameters())) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [name for name, _ in model.named_buffers()] == ["1.running_mean", "1.running_var",
                                                           "1.num_batches_tracked"]
    assert sorted(model.state_dict()) == sorted(["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                                 "1.running_var", "1.num_batches_tracked"])
    twin = Sequential(*(lambda l, n: (l, n, l, n))(Linear(3, 3, rng=1), BatchNorm1d(3)))
    twin.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(twin[0].weight.value, layer.weight.value)


def test_a_tied_weight_is_one_key_named_by_its_first_holder():
    model, encoder, decoder = autoencoder()
    assert decoder.weight is encoder.weight
    assert list(dict(model.named_parameters())) == ["0.weight", "0.bias", "2.bias"]
    assert len(model.parameters()) == 3


def test_named_nodes_walks_every_path_without_recursion():
    inner = Sequential(Tanh())
    model = Sequential(inner, Sequential(inner))
    assert [path for path, _ in model.named_nodes()] == ["", "0.", "0.0.", "1.", "1.0.", "1.0.0."]


# ---------------------------------------------------------------- the tied Linear
def test_tied_linear_sizes_and_refusals():
    encoder = Linear(5, 3, rng=0)
    decoder = Linear.tied_to(encoder.weight, transpose=True)
    assert (decoder.in_features, decoder.out_features) == (3, 5) and decoder.matrix.shape == (5, 3)
    same = Linear.tied_to(encoder.weight)
    assert (same.in_features, same.out_features) == (5, 3)
    with pytest.raises(ValueError, match=r"needs a weight of shape \(5, 3\), got \(3, 5\)"):
        Linear(5, 3, weight=encoder.weight, transpose_weight=True)
    with pytest.raises(ValueError, match="transpose_weight=True needs weight="):
        Linear(3, 5, transpose_weight=True)
    with pytest.raises(TypeError, match="weight must be a Parameter"):
        Linear(5, 3, weight=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="differs from the tied weight's dtype"):
        Linear(5, 3, weight=encoder.weight, dtype=np.float32)
    assert "transpose_weight=True" in repr(decoder)


def test_tied_transposed_linear_gradients_against_finite_differences(rng):
    model, _, _ = autoencoder()
    assert_gradients(model, rng.standard_normal((4, 5)), rng=rng)
    encoder = Linear(4, 3, rng=2)
    assert_gradients(Linear.tied_to(encoder.weight, transpose=True, rng=3), rng.standard_normal((2, 3)), rng=rng)


def test_tied_float32_stays_float32(rng):
    encoder = Linear(5, 3, rng=0, dtype=np.float32)
    decoder = Linear.tied_to(encoder.weight, transpose=True)
    model = Sequential(encoder, Tanh(), decoder)
    y = model.forward(rng.standard_normal((2, 5)).astype(np.float32))
    assert y.dtype == np.float32 and decoder.bias.dtype == np.float32
    assert model.backward(np.ones_like(y)).dtype == np.float32 and encoder.weight.grad.dtype == np.float32


def _torch_autoencoder(torch, model):
    encoder = torch.nn.Linear(5, 3).double()
    state = model.state_dict()
    with torch.no_grad():
        encoder.weight.copy_(torch.from_numpy(state["0.weight"]))
        encoder.bias.copy_(torch.from_numpy(state["0.bias"]))
    decoder_bias = torch.nn.Parameter(torch.from_numpy(state["2.bias"].copy()))

    def forward(x):
        return torch.nn.functional.linear(torch.tanh(encoder(x)), encoder.weight.t(), decoder_bias)
    return forward, [encoder.weight, encoder.bias, decoder_bias]


def test_tied_gradients_match_torch(torch, rng):
    model, encoder, decoder = autoencoder()
    forward, params = _torch_autoencoder(torch, model)
    x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    tx = torch.tensor(x, requires_grad=True)
    ty = forward(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(model.forward(x), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.backward(g), tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    for ours, theirs in zip(model.parameters(), params):
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind, options", [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, dict(lr=0.01))],
                         ids=["sgd-momentum", "adam"])
def test_an_optimizer_on_a_tied_model_steps_as_torch_does(torch, rng, kind, options):
    model, _, _ = autoencoder()
    forward, params = _torch_autoencoder(torch, model)
    ours = kind(model.parameters(), **options)
    theirs = getattr(torch.optim, kind.__name__)(params, **options)
    for _ in range(3):
        x, g = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
        ours.zero_grad()
        model.forward(x)
        model.backward(g, input_grad=False)
        ours.step()
        theirs.zero_grad()
        forward(torch.tensor(x)).backward(torch.tensor(g))
        theirs.step()
    for mine, reference in zip(model.parameters(), params):
        np.testing.assert_allclose(mine.value, reference.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_a_parameter_listed_twice_is_still_refused():
    # torch 2.13 only warns and then updates the parameter twice per step; a model lists a tied weight once
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="appears more than once.*parameters\\(\\) lists"):
        SGD([p, p], lr=0.1)


def test_a_graph_autoencoder_with_a_tied_decoder(torch, rng):
    x = Input(5)
    encoder = Linear(5, 3, rng=0)
    code = Tanh()(encoder(x, name="encoder"))
    model = Graph(x, Linear.tied_to(encoder.weight, transpose=True, rng=1)(code, name="decoder"))
    assert sorted(model.state_dict()) == ["decoder.bias", "encoder.bias", "encoder.weight"]
    assert_gradients(model, rng.standard_normal((3, 5)), rng=rng)


# ---------------------------------------------------------------- every container lists a shared Parameter once
def test_every_container_lists_a_parameter_shared_across_containers_once(rng):
    from nn_from_scratch import Parallel, Residual
    layer = Linear(4, 4, rng=0)
    tied = Linear(4, 4, rng=1, weight=layer.weight)  # another node on the same weight
    inner = Residual(Sequential(tied, Tanh()))
    model = Sequential(layer, inner, Parallel(Sequential(layer), Residual(layer)))
    assert list(dict(model.named_parameters())) == ["0.weight", "0.bias", "1.f.0.bias"]
    assert len(model.parameters()) == 3 and len(inner.parameters()) == 2
    assert_gradients(model, rng.standard_normal((2, 4)), rng=rng)
    SGD(model.parameters(), lr=0.1)  # an optimizer takes the list: no Parameter appears twice


def test_a_batch_norm_used_twice_in_train_mode_updates_its_statistics_twice_as_torch(torch, rng):
    norm = BatchNorm1d(3, momentum=0.3)
    x = Input(3)
    model = Graph(x, norm(Tanh()(norm(x))))
    data = 2.0 * rng.standard_normal((5, 3)) + 1.0
    reference = torch.nn.BatchNorm1d(3, momentum=0.3).double()
    ty = reference(torch.tanh(reference(torch.tensor(data))))
    np.testing.assert_allclose(model.forward(data), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    assert int(norm.num_batches_tracked) == int(reference.num_batches_tracked) == 2
    np.testing.assert_allclose(norm.running_mean, reference.running_mean.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(norm.running_var, reference.running_var.numpy(), rtol=1e-10, atol=1e-10)
