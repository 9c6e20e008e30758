"""The course's modules class by class: torch as the oracle, weights both ways, the course's shapes, clear errors.

``neurons.Linear`` and ``neurons.Convolution`` against torch (forward, input gradient and every weight's gradient,
1e-10 in float64, float32 within float32 tolerance) with the course's weight layout moved to torch's and back;
``neurons.ReLU``'s course shapes; a student's own ``interfaces.Node``; ``optimizers.GradientDescent``;
``examples.simple_nn.NeuralNetwork``; and an error naming the problem for each bad argument or input.
"""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import optim
from nn_from_scratch.examples.simple_nn import NeuralNetwork
from nn_from_scratch.interfaces import Neuron, Node, Optimizer
from nn_from_scratch.neurons import Convolution, Linear, ReLU
from nn_from_scratch.nodes import Linear as LinearNode
from nn_from_scratch.nodes import MSELoss, SoftMaxLoss
from nn_from_scratch.optimizers import GradientDescent
from nn_from_scratch.parameter import Parameter

TIGHT = dict(rtol=1e-10, atol=1e-12)
FLOAT32 = dict(rtol=2e-5, atol=1e-5)


# ------------------------------------------------------------------ Linear
def torch_linear(torch, layer: Linear, dtype):
    """torch.nn.Linear holding the course layer's weights: weight = W[1:].T, bias = W[0]."""
    reference = torch.nn.Linear(layer.W.shape[0] - 1, layer.W.shape[1]).to(dtype)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(layer.W[1:].T.copy()))
        reference.bias.copy_(torch.from_numpy(layer.W[0].copy()))
    return reference


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_follows_torch(dtype, torch, rng):
    layer = Linear((5, 3), (5, 4), rng=0)
    x, g = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(g)
    reference = torch_linear(torch, layer, getattr(torch, np.dtype(dtype).name))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = reference(xt)
    yt.backward(torch.from_numpy(g))
    tol = TIGHT if dtype == np.float64 else FLOAT32
    assert dx.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(layer._W_pd[1:], reference.weight.grad.numpy().T, **tol)
    np.testing.assert_allclose(layer._W_pd[0], reference.bias.grad.numpy(), **tol)


def test_linear_weights_move_to_torch_and_back(torch, rng):
    reference = torch.nn.Linear(3, 2).double()
    W = np.vstack([reference.bias.detach().numpy(), reference.weight.detach().numpy().T])
    layer = Linear((4, 3), (4, 2), W=W)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(layer.forward(x), reference(torch.from_numpy(x)).detach().numpy(), **TIGHT)
    state = layer.node.state_dict()  # the library's node holds them in torch's layout, under torch's keys
    assert sorted(state) == ["bias", "weight"]
    np.testing.assert_array_equal(state["weight"], reference.weight.detach().numpy())
    np.testing.assert_array_equal(layer.W, W)


def test_linear_weight_jacobian_comes_from_the_library_node(rng):
    layer = Linear((2, 3), (2, 4), rng=0)
    x = rng.standard_normal((2, 3))
    layer.forward(x)
    weight, bias = layer.node.jacobian(wrt="weight"), layer.node.jacobian(wrt="bias")
    w_jacobian = layer.W_jacobian()
    np.testing.assert_array_equal(w_jacobian[0], np.moveaxis(bias, -1, 0))
    np.testing.assert_array_equal(w_jacobian[1:], np.transpose(weight, (3, 2, 0, 1)))
    # the course's 0/1 structure: dY[n, o] / dW[i, j] = [o == j] [1, X][n, i]
    expected = np.einsum("oj,ni->ijno", np.eye(4), np.hstack([np.ones((2, 1)), x]))
    np.testing.assert_allclose(w_jacobian, expected, rtol=0, atol=0)


def test_linear_draws_from_numpys_global_generator_or_rng():
    np.random.seed(3)
    first = Linear(3, 2).W
    np.random.seed(3)
    np.testing.assert_array_equal(Linear(3, 2).W, first)
    np.testing.assert_array_equal(Linear(3, 2, rng=5).W, Linear(3, 2, rng=5).W)
    assert np.all(np.abs(Linear(3, 2, W_init_range=0.01, rng=1).W) <= 0.01)


def test_linear_optimize_weights_hands_its_arrays_to_the_optimizer(rng):
    layer = Linear((2, 3), (2, 2), rng=0)
    before = layer.W
    layer.forward(rng.standard_normal((2, 3)))
    layer.backward(rng.standard_normal((2, 2)))
    gradient = layer._W_pd
    layer.optimize_weights(GradientDescent(lr=0.1))
    np.testing.assert_allclose(layer.W, before - 0.1 * gradient, rtol=1e-15)


@pytest.mark.parametrize("make, error, match", [
    (lambda: Linear((3, 2), (4, 5)), ValueError, "input's 3 rows must give as many output rows"),
    (lambda: Linear((2, 3, 4), (2, 3, 5)), ValueError, "vectors"),
    (lambda: Linear(3, (2, 5)), ValueError, "vectors"),
    (lambda: Linear(0, 5), ValueError, "positive int"),
    (lambda: Linear(3, 5, W=np.zeros((3, 5))), ValueError, r"W must have shape \(4, 5\), got \(3, 5\)"),
    (lambda: Linear(3, 5, W_init_range=-1), ValueError, "W_init_range must be a finite number >= 0"),
    (lambda: Linear(3, 5, W=[["a"] * 5] * 4), TypeError, "W must hold real numbers"),
])
def test_linear_refuses_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_linear_refuses_bad_calls(rng):
    layer = Linear((2, 3), (2, 4), rng=0)
    with pytest.raises(RuntimeError, match="forward must run first"):
        layer.backward(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"Linear expects input of shape \(\.\.\., 3\), got \(2, 5\)"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="only leading axes of length 1 are dropped"):
        layer.forward(np.zeros((2, 2, 3)))
    layer.forward(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match=r"dL_dy must have the output's shape \(2, 4\), got \(2, 3\)"):
        layer.backward(np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="backward must run first"):
        layer.optimize_weights(GradientDescent())
    assert layer._W_pd is None


# ------------------------------------------------------------------ Convolution
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("padding, use_bias", [(0, True), (2, True), (1, False)])
def test_convolution_follows_torch(padding, use_bias, dtype, torch, rng):
    conv = Convolution((2, 3, 5, 4), 3, output_layers=2, padding=padding, use_bias=use_bias, rng=0)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    g = rng.standard_normal(conv._output_dim).astype(dtype)
    y = conv.forward(x)
    dx = conv.backward(g)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    wt = torch.from_numpy(conv.W.astype(dtype)).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, padding=padding)
    if use_bias:
        bt = torch.from_numpy(conv.B.astype(dtype)).requires_grad_(True)
        yt = yt + bt  # one bias per output position
    yt.backward(torch.from_numpy(g))
    tol = TIGHT if dtype == np.float64 else FLOAT32
    assert y.shape == conv._output_dim and dx.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(conv._W_pd, wt.grad.numpy(), **tol)
    if use_bias:
        np.testing.assert_allclose(conv._B_pd, bt.grad.numpy(), **tol)


def test_convolution_weights_are_torchs_layout_both_ways(torch, rng):
    reference = torch.nn.Conv2d(2, 3, 2, bias=False).double()
    conv = Convolution((1, 2, 4, 4), 2, output_layers=3, use_bias=False, W=reference.weight.detach().numpy())
    x = rng.standard_normal((1, 2, 4, 4))
    np.testing.assert_allclose(conv.forward(x), reference(torch.from_numpy(x)).detach().numpy(), **TIGHT)
    with torch.no_grad():
        reference.weight.copy_(torch.from_numpy(conv.W))
    assert sorted(conv.node.state_dict()) == ["weight"]


def test_convolution_weight_jacobian_matches_finite_differences(rng):
    conv = Convolution((1, 1, 3, 3), 2, output_layers=2, padding=1, rng=0)
    x = rng.standard_normal((1, 1, 3, 3))
    conv.forward(x)
    w_jacobian = conv.W_jacobian()
    assert w_jacobian.shape == conv.W.shape + conv._output_dim
    weights, eps = conv.W, 1e-6
    numeric = np.zeros(w_jacobian.shape)
    for index in np.ndindex(weights.shape):
        for sign in (1, -1):
            shifted = weights.copy()
            shifted[index] += sign * eps
            conv.W = shifted
            numeric[index] += sign * conv.forward(x) / (2 * eps)
    conv.W = weights
    np.testing.assert_allclose(w_jacobian, numeric, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(conv.W_jacobian(x), w_jacobian)
    assert conv.jacobian().shape == (1, 1, 3, 3) + conv._output_dim


def test_convolution_returns_copies(rng):
    conv = Convolution((1, 1, 3, 3), 2, rng=0)
    conv.forward(rng.standard_normal((1, 1, 3, 3)))
    conv.backward(np.ones(conv._output_dim))
    gradient = conv._W_pd
    conv.forward(rng.standard_normal((1, 1, 3, 3)))
    conv.backward(np.zeros(conv._output_dim))
    assert np.any(gradient) and not np.any(conv._W_pd)  # an earlier gradient is not changed by a later pass
    conv.W[...] = 0.0
    assert np.any(conv.W)


@pytest.mark.parametrize("make, error, match", [
    (lambda: Convolution((1, 3, 4), 2), ValueError, r"input_dim must be the batch's size \(N, C, H, W\)"),
    (lambda: Convolution(4, 2), ValueError, r"input_dim must be the batch's size"),
    (lambda: Convolution((1, 1, 2, 2), 4), ValueError, "a 4x4 kernel does not fit a 2x2 image padded by 0"),
    (lambda: Convolution((1, 1, 4, 4), 0), ValueError, "kernel_size must be an int >= 1"),
    (lambda: Convolution((1, 1, 4, 4), 2, padding=-1), ValueError, "padding must be an int >= 0"),
    (lambda: Convolution((1, 1, 4, 4), 2, output_layers=1.5), ValueError, "output_layers must be an int >= 1"),
    (lambda: Convolution((1, 1, 4, 4), 2, use_bias="yes"), TypeError, "use_bias must be a bool"),
    (lambda: Convolution((1, 1, 4, 4), 2, B=np.zeros((1, 2, 2))), ValueError, r"B must have shape \(1, 3, 3\)"),
    (lambda: Convolution((1, 1, 4, 4), 2, W=np.zeros((1, 1, 3, 3))), ValueError, r"W must have shape \(1, 1, 2, 2\)"),
])
def test_convolution_refuses_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_convolution_refuses_bad_input_and_names_its_bias(rng):
    conv = Convolution((2, 1, 4, 4), 2, rng=0)
    with pytest.raises(ValueError, match="Conv2d expects 1 input channels, got 2"):
        conv.forward(np.zeros((2, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"one value per output position \(1, 3, 3\)"):
        conv.forward(np.zeros((2, 1, 5, 5)))
    with pytest.raises(ValueError, match="the bias is not initialized"):
        Convolution((1, 1, 3, 3), 2, use_bias=False).B
    assert conv.forward(rng.standard_normal((4, 4))).shape == (1, 1, 3, 3)  # one image, as the course took it


# ------------------------------------------------------------------ the course's ReLU
def test_the_courses_relu_keeps_the_courses_shapes():
    relu = ReLU(5)
    x, g = np.array([0, -1, 2, -1, 4]), np.array([1, 2, 3, 2, 1])
    np.testing.assert_array_equal(relu.forward(x), [0, 0, 2, 0, 4])
    relu_again = ReLU(5)
    relu_again.forward(x)
    assert relu_again.jacobian().shape == (1, 1, 1, 5) * 2
    np.testing.assert_array_equal(relu_again.jacobian().reshape(5, 5), np.diag([0, 0, 1, 0, 1]))
    dx = relu.backward(g)
    assert dx.shape == (1, 1, 1, 5)  # the course's: its input on four axes
    np.testing.assert_array_equal(dx.reshape(5), [0, 0, 3, 0, 1])
    relu.forward(x)
    with pytest.raises(ValueError, match=r"expected \(5,\), got \(1, 5\)"):
        relu.backward(g[None])


# ------------------------------------------------------------------ a student's own nodes on interfaces
class Square(Node):
    """y = x ** 2 on rows, its Jacobian in the course's layout x.shape + y.shape."""

    def __init__(self, n):
        super().__init__(n, n, 2)

    def __call__(self, x, y=None):
        return x ** 2

    def jacobian(self, x=None, y=None):
        rows, n = x.shape
        return np.einsum("ij,ik,jl->ijkl", 2 * x, np.eye(rows), np.eye(n))


class HalfSquaredNorm(Node):
    """A loss: 0.5 |x - labels|², its gradient as its Jacobian."""

    def __init__(self, n):
        super().__init__(n, 1, 2, is_output_node=True)

    def __call__(self, x, y=None):
        return 0.5 * np.sum((x - y) ** 2)

    def jacobian(self, x=None, y=None):
        return x - self._labels


def test_a_students_node_gets_forward_and_backward(rng):
    node = Square((2, 3))
    x, g = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_allclose(node.forward(x), x ** 2)
    np.testing.assert_allclose(node.backward(g), 2 * x * g, rtol=1e-15)
    vector = Square(3)
    assert vector.forward(x[0]).shape == (3,)
    np.testing.assert_allclose(vector.backward(g[0]), 2 * x[0] * g[0], rtol=1e-15)
    loss = HalfSquaredNorm(3)
    assert loss.forward(x[0], g[0]).shape == (1,)
    np.testing.assert_allclose(loss.backward(), x[0] - g[0])


def test_the_abstract_classes_say_what_is_missing(rng):
    node = Node(3, 3, 2)
    with pytest.raises(NotImplementedError, match="must define __call__"):
        node.forward(np.zeros(3))
    with pytest.raises(ValueError, match="labels are not provided"):
        HalfSquaredNorm(3).forward(np.zeros(3))
    with pytest.raises(ValueError, match="partial derivatives are not provided"):
        square = Square(3)
        square.forward(np.zeros(3))
        square.backward()
    with pytest.raises(ValueError, match="inner_ndim must be a positive int"):
        Node(3, 3, 0)
    with pytest.raises(RuntimeError, match="system is not initialized"):
        Linear(3, 2).optimize_weights(GradientDescent())
    assert Optimizer().limit_reached() is False
    assert isinstance(Linear(3, 2), Neuron) and isinstance(Convolution((1, 1, 2, 2), 1), Neuron)


# ------------------------------------------------------------------ GradientDescent
def test_gradient_descent_is_the_librarys_step_on_arrays(rng):
    targets = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    gradients = [rng.standard_normal((3, 2)), rng.standard_normal(4)]
    updated = GradientDescent(lr=0.3).optimize(targets, gradients)
    parameters = [Parameter(t) for t in targets]
    for p, g in zip(parameters, gradients):
        p.grad = g.copy()
    optim.GradientDescent(parameters, lr=0.3).step()
    for new, p, old in zip(updated, parameters, targets):
        np.testing.assert_array_equal(new, p.value)
        assert new is not old


def test_gradient_descent_reports_its_updates_and_stops_below_eps():
    gds = GradientDescent(lr=0.5, eps=1.0)
    assert not gds.limit_reached() and gds.delta is None
    gds.optimize([np.zeros(2)], [np.array([3.0, 4.0])])
    assert gds.delta == 2.5 and not gds.limit_reached()
    gds.reset()
    assert not gds.limit_reached()  # no update since the reset
    gds.optimize([np.zeros(2)], [np.array([0.3, 0.4])])
    gds.optimize([np.zeros(1)], [np.array([1.0])])
    assert gds.delta == 0.5 and gds.limit_reached()
    assert repr(gds) == "GradientDescent(lr=0.5, eps=1.0)"
    assert (GradientDescent().lr, GradientDescent().eps) == (1e-3, 1e-3)


@pytest.mark.parametrize("targets, gradients, error, match", [
    ([np.zeros(2)], [np.zeros(2), np.zeros(2)], ValueError, r"unequal: 1 != 2"),
    ([np.zeros(2)], [np.zeros(3)], ValueError, r"target 0 has shape \(2,\) but its gradient \(3,\)"),
    ([np.zeros(2)], [np.array([1.0, np.nan])], ValueError, "gradient 0 holds NaN or infinite values"),
    (np.zeros(2), [np.zeros(2)], ValueError, "unequal"),
    ("W", ["dW"], TypeError, "takes a list of targets"),
])
def test_gradient_descent_refuses_bad_lists(targets, gradients, error, match):
    with pytest.raises(error, match=match):
        GradientDescent().optimize(targets, gradients)


@pytest.mark.parametrize("arguments, error, match", [
    (dict(lr=-0.1), ValueError, "Negative learning rate is not allowed"),
    (dict(eps=float("nan")), ValueError, "eps must be finite"),
    (dict(lr="0.1"), TypeError, "lr must be a real number"),
])
def test_gradient_descent_refuses_bad_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        GradientDescent(**arguments)


# ------------------------------------------------------------------ NeuralNetwork
def test_the_network_trains_library_layers_through_the_courses_optimizer(rng):
    X = rng.standard_normal((6, 8, 3))
    y = X @ np.array([[1.0], [-1.0], [2.0]])
    layer = LinearNode(3, 1, rng=0)
    network = NeuralNetwork(3, 1, 8, GradientDescent(lr=0.1), [layer], MSELoss((8, 1)))
    first = network.fit(X, y, n_epochs=1, verbose=False)
    assert network.fit(X, y, n_epochs=20, verbose=False) < 1e-3 * first
    np.testing.assert_allclose(layer.weight.value, [[1.0, -1.0, 2.0]], atol=1e-2)


@pytest.mark.parametrize("make, error, match", [
    (lambda: NeuralNetwork(0, 1, 1, GradientDescent(), [Linear(2, 1)], MSELoss(1)), ValueError, "n_input"),
    (lambda: NeuralNetwork(2, 1, 1, GradientDescent(), [], MSELoss(1)), TypeError, "non-empty list"),
    (lambda: NeuralNetwork(2, 1, 1, object(), [Linear(2, 1)], MSELoss(1)), TypeError, "course Optimizer"),
    (lambda: NeuralNetwork(2, 1, 1, GradientDescent(), [Linear(2, 1)], object()), TypeError, "loss_fn must have"),
    (lambda: NeuralNetwork(2, 1, 1, GradientDescent(), [np.zeros(2)], MSELoss(1)), TypeError, "layer 0 must have"),
])
def test_the_network_refuses_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_the_network_refuses_bad_data_and_a_diverging_loss(rng):
    network = NeuralNetwork(2, 1, 4, GradientDescent(lr=1e3), [Linear((4, 2), (4, 1), rng=0)], MSELoss((4, 1)))
    with pytest.raises(ValueError, match="same number"):
        network.fit(np.zeros((3, 4, 2)), np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match="n_epochs must be a positive int"):
        network.fit(np.zeros((3, 4, 2)), np.zeros((3, 4, 1)), n_epochs=0)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        network.fit(rng.standard_normal((3, 4, 2)) * 1e3, rng.standard_normal((3, 4, 1)), n_epochs=50, verbose=False)
    with pytest.raises(ValueError, match="one number"):
        NeuralNetwork(2, 1, 4, GradientDescent(), [Linear((4, 2), (4, 1))], Linear((4, 1), (4, 1))).fit(
            np.zeros((1, 4, 2)), np.zeros((1, 4, 1)))


def test_the_courses_softmax_loss_fits_its_network(rng):
    network = NeuralNetwork(4, 3, 5, GradientDescent(lr=0.5), [Linear((5, 4), (5, 3), rng=0)], SoftMaxLoss((5, 3)))
    X = rng.standard_normal((2, 5, 4))
    y = np.eye(3)[rng.integers(0, 3, (2, 5))]
    assert np.isfinite(network.fit(X, y, n_epochs=2, verbose=False))
