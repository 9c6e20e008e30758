"""Parallel: branches on one input, outputs concatenated, gradients summed."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import Linear, Sequential, Sigmoid, Tanh
from nn_from_scratch.gradcheck import assert_gradients, numerical_jacobian
from nn_from_scratch.containers import Parallel


def two_heads(seed=0):
    return Sequential(Linear(4, 6, rng=seed), Tanh(),
                      Parallel(Linear(6, 3, rng=seed + 1), Sequential(Linear(6, 2, rng=seed + 2), Sigmoid())))


def test_output_is_the_concatenation(rng):
    model = two_heads()
    x = rng.standard_normal((5, 4))
    y = model.forward(x)
    h = model[1].forward(model[0].forward(x))
    np.testing.assert_allclose(y, np.concatenate([model[2][0].forward(h), model[2][1].forward(h)], axis=1),
                               rtol=1e-15, atol=0)


def test_gradients_and_jacobian(rng):
    model = two_heads()
    x = rng.standard_normal((3, 4))
    assert_gradients(model, x)
    np.testing.assert_allclose(model.jacobian(x), numerical_jacobian(model.evaluate, x), rtol=1e-6, atol=1e-8)
    names = [name for name, _ in model.named_parameters()]
    assert "2.0.weight" in names and "2.1.0.bias" in names


def test_mismatched_branches_and_bad_arguments(rng):
    from nn_from_scratch import Flatten

    with pytest.raises(ValueError, match="agree on every axis but the last"):
        Parallel(Linear(3, 2), Flatten(start_dim=0)).forward(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="at least one branch"):
        Parallel()
    with pytest.raises(TypeError, match="got str at position 1"):
        Parallel(Linear(2, 2), "x")


def test_state_dict_loads_into_an_equivalent_torch_model(torch, rng):
    model = Parallel(Linear(4, 3, rng=0), Linear(4, 2, rng=1))
    heads = torch.nn.ModuleList([torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)]).double()
    heads.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 5))
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.cat([heads[0](tx), heads[1](tx)], dim=1)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(model.forward(x), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_backward_without_input_grad_matches_the_full_backward(rng):
    def build():
        generator = np.random.default_rng(3)
        return Sequential(Linear(4, 5, rng=generator), Tanh(),
                          Parallel(Linear(5, 2, rng=generator), Sequential(Linear(5, 3, rng=generator), Sigmoid())))
    x, g = rng.standard_normal((6, 4)), rng.standard_normal((6, 5))
    full, fast = build(), build()
    full.forward(x)
    full.backward(g)
    fast.forward(x)
    assert fast.backward(g, input_grad=False) is None
    for (name, a), (_, b) in zip(full.named_parameters(), fast.named_parameters()):
        np.testing.assert_allclose(b.grad, a.grad, rtol=1e-15, atol=1e-15, err_msg=name)
