"""Sequential: chaining, the chain rule as a product of Jacobians, state dicts that torch accepts."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import Sequential
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.nodes import Add, Chunk, Linear, LogSoftMax, NormalizedSoftMax, SoftMax, Split, Tanh


def small_model(seed: int = 0) -> Sequential:
    return Sequential(Linear(4, 5, rng=seed), NormalizedSoftMax(), Linear(5, 3, rng=seed + 1), LogSoftMax())


def test_forward_chains_and_backward_runs_in_reverse(rng):
    model = small_model()
    x, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    y = model.forward(x)
    h = x
    for node in model:
        h = node.forward(h)
    np.testing.assert_allclose(y, h, rtol=1e-15, atol=0)
    dx = model.backward(g)
    for node in reversed(list(model)):
        g = node.backward(g)
    np.testing.assert_allclose(dx, g, rtol=1e-13, atol=1e-15)


def test_jacobian_is_the_product_of_layer_jacobians(rng):
    model = small_model()
    x = rng.standard_normal((2, 4))
    jac = model.jacobian(x)
    assert jac.shape == (2, 3, 2, 4)
    product = None
    h = x
    for node in model:
        local = node.jacobian(h)
        product = local if product is None else np.tensordot(local, product, axes=h.ndim)
        h = node.evaluate(h)
    np.testing.assert_allclose(jac, product, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(jac, numerical_jacobian(model.evaluate, x), rtol=1e-6, atol=1e-8)


def test_gradients_including_every_parameter(rng):
    report = assert_gradients(small_model(), rng.standard_normal((3, 4)))
    names = [c.name for c in report.comparisons]
    assert "d/d 0.weight vs finite diff." in names and "d/d 2.bias vs finite diff." in names


def test_nested_sequential(rng):
    model = Sequential(Sequential(Linear(3, 3, rng=0), SoftMax()), Linear(3, 2, rng=1))
    assert [name for name, _ in model.named_parameters()] == ["0.0.weight", "0.0.bias", "1.weight", "1.bias"]
    assert_gradients(model, rng.standard_normal((2, 3)))


def test_container_protocol():
    model = small_model()
    assert len(model) == 4
    assert isinstance(model[0], Linear) and isinstance(model[-1], LogSoftMax)
    assert isinstance(model[1:3], Sequential) and len(model[1:3]) == 2
    assert [type(n).__name__ for n in model] == ["Linear", "NormalizedSoftMax", "Linear", "LogSoftMax"]
    assert len(model.parameters()) == 4
    model.eval()
    assert not any(n.training for n in model)
    model.train()
    assert all(n.training for n in model)
    with pytest.raises(TypeError, match="Sequential takes Nodes, got int at position 1"):
        Sequential(Linear(2, 2), 3)


def test_empty_sequential_is_the_identity(rng):
    x = rng.standard_normal(3)
    model = Sequential()
    np.testing.assert_array_equal(model.forward(x), x)
    np.testing.assert_array_equal(model.jacobian(), np.eye(3))


def test_load_state_dict_checks_everything_before_changing_anything():
    model, other = small_model(0), small_model(10)
    before = model.state_dict()
    bad = other.state_dict()
    bad["2.weight"] = bad["2.weight"][:, :4]
    del bad["0.bias"]
    bad["9.weight"] = np.zeros(2)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    assert "missing keys ['0.bias']" in message and "unexpected keys ['9.weight']" in message
    assert "'2.weight': expected shape (3, 5), got (3, 4)" in message
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    wrong_dtype = other.state_dict()
    wrong_dtype["0.weight"] = wrong_dtype["0.weight"].astype(np.float32)
    with pytest.raises(ValueError, match="'0.weight': expected dtype float64, got float32"):
        model.load_state_dict(wrong_dtype)
    model.load_state_dict(other.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, other.state_dict()[key])


def test_state_dict_is_a_copy():
    model = small_model()
    state = model.state_dict()
    state["0.weight"][:] = 0
    assert np.any(model[0].weight.value != 0)


def test_state_dict_loads_into_torch_sequential(torch, rng):
    model = Sequential(Linear(4, 5, rng=0), SoftMax(), Linear(5, 3, rng=1), LogSoftMax())
    ref = torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.Softmax(dim=-1), torch.nn.Linear(5, 3), torch.nn.LogSoftmax(dim=-1)
    ).double()
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x, g = rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(model.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    for (name, p), (tname, tp) in zip(model.named_parameters(), ref.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- input_grad=False
def _model(rng, first=None):
    from nn_from_scratch.nodes import ReLU
    layers = ([first] if first is not None else []) + [
        Linear(4, 6, rng=rng), ReLU(), Linear(6, 3, rng=rng)]
    return Sequential(*layers)


def test_backward_without_input_grad_gives_the_same_parameter_gradients(rng, monkeypatch):
    from nn_from_scratch.nodes import Flatten
    x, g = rng.standard_normal((5, 2, 2)), rng.standard_normal((5, 3))
    full, fast = _model(np.random.default_rng(1), Flatten()), _model(np.random.default_rng(1), Flatten())
    full.forward(x)
    dx = full.backward(g)
    assert dx.shape == x.shape
    fast.forward(x)
    first_linear = fast[1]
    # the first node with parameters gives its parameter gradients but never its input gradient
    monkeypatch.setattr(first_linear, "_vjp", lambda *a: pytest.fail("input gradient computed"))
    monkeypatch.setattr(fast[0], "_backward", lambda *a, **k: pytest.fail("Flatten reached"))
    assert fast.backward(g, input_grad=False) is None
    for (name, a), (_, b) in zip(full.named_parameters(), fast.named_parameters()):
        np.testing.assert_allclose(b.grad, a.grad, rtol=1e-15, atol=1e-15, err_msg=name)


def test_backward_without_input_grad_on_a_model_without_parameters(rng):
    model = Sequential(SoftMax(), LogSoftMax())
    model.forward(rng.standard_normal((2, 3)))
    assert model.backward(np.ones((2, 3)), input_grad=False) is None
    with pytest.raises(RuntimeError, match="forward must run first"):
        model.backward(np.ones((2, 3)))  # the cached forward was dropped as usual


def test_a_split_hands_its_outputs_on_as_the_next_layers_inputs(rng):
    """Several outputs in a chain: at the end they are the chain's outputs (a tuple of Jacobian blocks), in the
    middle they are the next layer's inputs; the tuple was stacked into one array by the next layer before."""
    x = rng.standard_normal((5, 3))
    ending = Sequential(Linear(3, 5, rng=0), Split([2, 3], axis=-1))
    y = ending.forward(x)
    assert [part.shape for part in y] == [(5, 2), (5, 3)]
    jac = ending.jacobian()
    assert isinstance(jac, tuple) and [block.shape for block in jac] == [(5, 2, 5, 3), (5, 3, 5, 3)]
    for o, block in enumerate(jac):
        np.testing.assert_allclose(block, numerical_jacobian(lambda v: ending.evaluate(v)[o], x),
                                   rtol=1e-6, atol=1e-8)
    assert_gradients(ending, x)
    middle = Sequential(Linear(3, 4, rng=1), Chunk(2, axis=-1), Add(), Tanh())
    assert middle.forward(x).shape == (5, 2)
    np.testing.assert_allclose(middle.jacobian(), numerical_jacobian(middle.evaluate, x), rtol=1e-6, atol=1e-8)
    assert_gradients(middle, x)
    assert "(None, 2), (None, 2)" in middle.summary((None, 3))


def test_a_split_in_the_middle_of_a_chain_whose_next_layer_takes_one_input_is_refused(rng):
    model = Sequential(Linear(3, 5, rng=0), Split([2, 3], axis=-1), Tanh())
    with pytest.raises(ValueError, match=r"layer 1 \(Split\) gives 2 outputs but layer 2 \(Tanh\) takes 1 input"):
        model.forward(rng.standard_normal((4, 3)))
    assert model.pending is None
