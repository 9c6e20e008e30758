"""The Jacobian with respect to a parameter, ``node.jacobian(wrt="weight")``, for every public layer with parameters.

Every case of tests/test_array_api.py whose node holds parameters (the layers, and the containers around them)
is held against central finite differences, parameter by parameter, on both engine paths; the parameters'
gradients and the kept pass are left as they were.
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import pytest

from nn_from_scratch import nodes as N
from nn_from_scratch import Sequential
from nn_from_scratch.parameter import Parameter
from test_array_api import NODES

# a case without finite differences to meet (a table renormalised by max_norm, a mask drawn per evaluate) is left out
WITH_PARAMETERS = sorted(name for name, case in NODES.items()
                         if case.finite_differences and case.make().has_parameters())


def _parts(value: Any) -> Tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def finite_differences(node, xs, p: Parameter, eps: float = 1e-6) -> Tuple[np.ndarray, ...]:
    """``d y / d p`` by central differences through ``evaluate``, one block per output, ``y.shape + p.shape``."""
    blocks = [np.zeros(np.shape(y) + p.shape) for y in _parts(node.evaluate(*xs))]
    for index in np.ndindex(p.shape):
        saved = p.value[index]
        p.value[index] = saved + eps
        up = _parts(node.evaluate(*xs))
        p.value[index] = saved - eps
        down = _parts(node.evaluate(*xs))
        p.value[index] = saved
        for block, u, d in zip(blocks, up, down):
            block[(...,) + index] = (u - d) / (2 * eps)
    return tuple(blocks)


def test_the_cases_cover_the_layers_with_parameters():
    names = {name.split("[")[0] for name in WITH_PARAMETERS}
    assert {"Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "Sequential", "Parallel", "Residual", "Graph"} <= names


@pytest.mark.parametrize("name", WITH_PARAMETERS)
def test_the_parameter_jacobian_matches_finite_differences(name, engine_path, rng):
    case = NODES[name]
    node = case.make()
    xs = case.inputs(rng)
    node.zero_grad()
    y = node.forward(*xs)
    g = tuple(rng.standard_normal(np.shape(part)) for part in _parts(y))
    node.backward(g if isinstance(y, tuple) else g[0], reset_after=False)
    grads = {key: p.grad.copy() for key, p in node.named_parameters()}
    kept = node.pending
    for key, p in node.named_parameters():
        jacobian = node.jacobian(wrt=key)
        numeric = finite_differences(node, xs, p)
        for block, expected in zip(_parts(jacobian), numeric):
            assert block.shape == expected.shape and block.dtype == p.dtype, (key, block.shape, expected.shape)
            scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
            np.testing.assert_allclose(block, expected, rtol=1e-6, atol=1e-7 * scale, err_msg=f"{name} d y/d {key}")
        # the same at x given, and for the Parameter itself
        for block, again in zip(_parts(node.jacobian(*xs, wrt=key)), _parts(node.jacobian(wrt=p))):
            np.testing.assert_array_equal(block, again)
    assert node.pending is kept
    for key, p in node.named_parameters():
        np.testing.assert_array_equal(p.grad, grads[key], err_msg=f"{name}: the jacobian changed {key}.grad")


def test_the_parameter_jacobian_contracts_to_the_parameter_gradient(rng):
    """``dL/dθ = Σ_i g_i ∂y_i/∂θ``: the Jacobian and the backward pass agree."""
    node = Sequential(N.Linear(3, 4, rng=0), N.Tanh(), N.Linear(4, 2, rng=1))
    x, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    node.zero_grad()
    node.forward(x)
    node.backward(g, reset_after=False)
    for key, p in node.named_parameters():
        np.testing.assert_allclose(np.tensordot(g, node.jacobian(wrt=key), axes=2), p.grad, rtol=1e-12, atol=1e-14)


def test_a_fresh_zero_gradient_stays_fresh(rng):
    """After zero_grad the engine may write the first gradient straight into .grad: the Jacobian keeps that so."""
    layer = N.Linear(3, 2, rng=0)
    layer.zero_grad()
    layer.forward(rng.standard_normal((4, 3)))
    layer.jacobian(wrt="weight")
    assert layer.weight.fresh_zero and layer.bias.fresh_zero
    assert not np.any(layer.weight.grad)


def test_a_shared_parameter_sums_both_uses(rng):
    layer = N.Linear(3, 3, rng=0)
    model = Sequential(layer, N.Tanh(), layer)
    x = rng.standard_normal((2, 3))
    model.forward(x)
    jacobian = model.jacobian(wrt=layer.weight)
    np.testing.assert_allclose(jacobian, finite_differences(model, (x,), layer.weight)[0], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("wrt, error, match", [
    ("wieght", ValueError, r"no parameter named 'wieght'; the parameters are \['weight', 'bias'\]"),
    (Parameter(np.zeros(2)), ValueError, "a Parameter of another node"),
    (3, TypeError, "takes a parameter's name or the Parameter, got int"),
])
def test_a_wrong_wrt_is_named(wrt, error, match, rng):
    layer = N.Linear(3, 2, rng=0)
    with pytest.raises(error, match=match):
        layer.jacobian(rng.standard_normal((1, 3)), wrt=wrt)


def test_a_node_without_parameters_says_so(rng):
    with pytest.raises(ValueError, match="the node has no parameters"):
        N.Tanh().jacobian(rng.standard_normal(3), wrt="weight")


def test_without_a_kept_pass_the_jacobian_asks_for_forward():
    with pytest.raises(RuntimeError, match="forward must run first"):
        N.Linear(3, 2, rng=0).jacobian(wrt="weight")
