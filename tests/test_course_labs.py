"""The course's labs 5 to 11, their calls reconstructed from the course's API, each number against finite differences.

Every lab's calls are written here as a student of the course writes them (its imports, its constructors, its
private attributes ``_W_pd``, ``_B_pd``, ``_output_dim``), on the digits bundled with the library instead of
MNIST, and each gradient is held against central differences of the layer's own forward pass.  Where the
course's code gave another number (its padded convolution's input gradient, its SoftMaxLoss gradient, its
``use_jacobian`` weight gradient and ``W_jacobian``), the number checked is the derivative: docs/course.md.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from nn_from_scratch.datasets import load_digits
from nn_from_scratch.examples.simple_nn import NeuralNetwork
from nn_from_scratch.gradcheck import numerical_jacobian
from nn_from_scratch.interfaces import Neuron
from nn_from_scratch.neurons import Convolution, Linear
from nn_from_scratch.nodes import MSELoss, ReLU, SoftMax, SoftMaxLoss, Vectorization
from nn_from_scratch.optimizers import GradientDescent

FD = dict(rtol=1e-6, atol=1e-8)


def weight_jacobian(layer, name: str, f: Callable[[], Any]) -> np.ndarray:
    """Central differences of ``f()`` with respect to the layer's weights ``name`` (``W``, ``B``), put back after:
    ``f().shape + weights.shape``."""
    weights = np.array(getattr(layer, name), copy=True, order="C")  # numerical_jacobian perturbs C-ordered arrays only

    def through(w: np.ndarray) -> Any:
        setattr(layer, name, w)
        return f()
    try:
        return numerical_jacobian(through, weights)
    finally:
        setattr(layer, name, weights)


def pairing(layer, g: np.ndarray) -> Callable[[np.ndarray], float]:
    """``x -> <g, layer(x)>``, whose gradient is the backward pass of ``g``."""
    return lambda x: float(np.sum(g * layer.forward(x)))


@pytest.fixture(autouse=True)
def seeded():
    """The course draws its weights from NumPy's global generator: seeded for each test, and put back."""
    state = np.random.get_state()
    np.random.seed(7)
    yield
    np.random.set_state(state)


# ------------------------------------------------------------------ lab 5: vector and matrix backpropagation
def test_lab5_softmax_and_relu():
    sm = SoftMax(5)
    x_input, dL_dy = np.array([0, 1, 2, 3, 4]), np.array([1, 2, 3, 2, 1])
    y_value = sm.forward(x_input)
    dL_dx = sm.backward(dL_dy)
    np.testing.assert_allclose(y_value, np.exp(x_input) / np.exp(x_input).sum(), rtol=1e-14)
    np.testing.assert_allclose(dL_dx, numerical_jacobian(pairing(sm, dL_dy), x_input), **FD)

    relu = ReLU(5)
    x_input = np.array([0, -1, 2, -1, 4])
    np.testing.assert_array_equal(relu.forward(x_input), [0, 0, 2, 0, 4])
    np.testing.assert_array_equal(relu.backward(dL_dy), [0, 0, 3, 0, 1])  # d ReLU/dx (0) = 0, as the course chose

    relu = ReLU((2, 5))
    x_input, dL_dy = np.array([[0.5, -1, 2, -1, 4]] * 2), np.array([[1, 2, 3, 2, 1]] * 2)
    relu.forward(x_input)
    np.testing.assert_allclose(relu.backward(dL_dy), numerical_jacobian(pairing(relu, dL_dy), x_input), **FD)


@pytest.mark.parametrize("input_dim, output_dim", [((3, 2), (3, 5)), (3, 5)])
def test_lab5_linear_layer(input_dim, output_dim):
    linear = Linear(input_dim, output_dim)
    x_input = np.random.rand(*np.atleast_1d(input_dim))
    dL_dy = np.random.rand(*np.atleast_1d(output_dim))

    y_value = linear.forward(x_input)
    dL_dx = linear.backward(dL_dy)
    dL_dw = linear._W_pd

    W = linear.W
    assert W.shape == (np.atleast_1d(input_dim)[-1] + 1, np.atleast_1d(output_dim)[-1])
    np.testing.assert_allclose(y_value, x_input @ W[1:] + W[0], rtol=1e-14)
    assert dL_dx.shape == x_input.shape and y_value.shape == dL_dy.shape
    np.testing.assert_allclose(dL_dx, numerical_jacobian(pairing(linear, dL_dy), x_input), **FD)
    np.testing.assert_allclose(dL_dw, weight_jacobian(linear, "W", lambda: pairing(linear, dL_dy)(x_input)), **FD)

    # the same through the dense Jacobians (the course's use_jacobian=True)
    linear.forward(x_input)
    dL_dx_jac = linear.backward(dL_dy, use_jacobian=True)
    np.testing.assert_allclose(dL_dx_jac, dL_dx, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(linear._W_pd, dL_dw, rtol=1e-12, atol=1e-15)


def test_lab5_linear_jacobians_in_the_courses_layout():
    linear = Linear((3, 2), (3, 5))
    x_input = np.random.rand(3, 2)
    linear.forward(x_input)
    jacobian, w_jacobian = linear.jacobian(), linear.W_jacobian()
    assert jacobian.shape == (3, 2, 3, 5) and w_jacobian.shape == (3, 5, 3, 5)  # x.shape + y.shape, W.shape + y.shape
    np.testing.assert_allclose(jacobian, np.transpose(numerical_jacobian(linear.forward, x_input), (2, 3, 0, 1)), **FD)
    numeric = weight_jacobian(linear, "W", lambda: linear.forward(x_input))  # y.shape + W.shape
    np.testing.assert_allclose(w_jacobian, np.transpose(numeric, (2, 3, 0, 1)), **FD)
    augmented = np.concatenate([np.ones((3, 1)), x_input], axis=1)  # the course passed its input with a column of ones
    np.testing.assert_array_equal(linear.W_jacobian(augmented), linear.W_jacobian(x_input))


# ------------------------------------------------------------------ lab 6: a loss, and a network
def test_lab6_linear_remake_has_a_bias():
    linear = Linear((3, 2), (3, 5))
    x_input = np.zeros((3, 2))
    np.testing.assert_allclose(linear.forward(x_input), np.broadcast_to(linear.W[0], (3, 5)), rtol=0, atol=0)


@pytest.mark.parametrize("input_dim", [5, (10, 5)])
def test_lab6_softmax_loss_with_multi_hot_labels(input_dim):
    softmax_loss = SoftMaxLoss(input_dim)
    x_input = np.random.rand(*np.atleast_1d(input_dim))
    labels = np.random.choice(2, input_dim)
    labels.reshape(-1, 5)[:, 0] = 1  # every row marks a class (an empty row's -log 0 is refused)
    y_value = softmax_loss.forward(x_input, labels)
    dL_dx = softmax_loss.backward(x_input)
    assert y_value.shape == (1,) and dL_dx.shape == x_input.shape
    np.testing.assert_allclose(dL_dx, numerical_jacobian(lambda x: float(softmax_loss.value(x, labels)), x_input),
                               **FD)


def digits(batch_size: int, shape=(64,)):
    """The digits, pre-batched as the course's labs batched MNIST: X (batches, B, *shape), one-hot y."""
    X_train, y_train, X_test, y_test = load_digits(seed=0)
    n, m = len(X_train) // batch_size * batch_size, len(X_test) // batch_size * batch_size
    X = X_train[:n].reshape((-1, batch_size) + shape)
    y = np.eye(10)[y_train[:n]].reshape(-1, batch_size, 10)
    return X, y, X_test[:m].reshape((-1, batch_size) + shape), y_test[:m].reshape(-1, batch_size)


def compute_accuracy(test_X, test_y, model) -> float:
    correct = total = 0
    for inputs, labels in zip(test_X, test_y):
        correct += int((np.argmax(model.predict(inputs), axis=1) == labels).sum())
        total += len(labels)
    return correct / total


def test_lab6_one_and_two_layer_networks_learn_the_digits(capsys):
    batch_size = 40
    train_X, train_y_ohe, test_X, test_y = digits(batch_size)
    network = NeuralNetwork(n_input=64, n_output=10, batch_size=batch_size, optimizer=GradientDescent(lr=2.0),
                            layers=[Linear((batch_size, 64), (batch_size, 10))],
                            loss_fn=SoftMaxLoss((batch_size, 10)))
    first = network.fit(train_X, train_y_ohe, n_epochs=1)
    last = network.fit(train_X, train_y_ohe, n_epochs=5)
    assert last < first and network.loss == last
    assert "Epoch 5, Loss:" in capsys.readouterr().out
    assert compute_accuracy(test_X, test_y, network) > 0.9

    layers = [Linear((batch_size, 64), (batch_size, 32), W_init_range=0.3), ReLU((batch_size, 32)),
              Linear((batch_size, 32), (batch_size, 10), W_init_range=0.3)]
    network = NeuralNetwork(n_input=64, n_output=10, batch_size=batch_size, optimizer=GradientDescent(lr=0.5),
                            layers=layers, loss_fn=SoftMaxLoss((batch_size, 10)))
    network.fit(train_X, train_y_ohe, n_epochs=10, verbose=False)
    assert compute_accuracy(test_X, test_y, network) > 0.9
    assert network.predict(test_X[0]).shape == (batch_size, 10)


# ------------------------------------------------------------------ lab 7: the convolution layer
def test_lab7_convolution_layer(torch):
    input_dim, kernel_size, output_layers = (1, 3, 6, 5), 2, 4
    conv = Convolution(input_dim, kernel_size, output_layers=output_layers)
    output_dim = conv._output_dim
    assert output_dim == (1, 4, 5, 4)
    x_input, dL_dy = np.random.random(input_dim), np.random.random(output_dim)
    output = conv.forward(x_input)
    dL_dx = conv.backward(dL_dy)
    dL_dw, bias, dL_db = conv._W_pd, conv._B, conv._B_pd

    xt = torch.from_numpy(x_input.copy()).requires_grad_(True)
    wt = torch.from_numpy(conv.W.copy()).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt) + torch.from_numpy(bias.copy())
    yt.backward(torch.from_numpy(dL_dy))
    np.testing.assert_allclose(output, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dL_dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dL_dw, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(dL_db, dL_dy[0])  # one bias per output position: its gradient is G itself
    np.testing.assert_allclose(dL_dx, numerical_jacobian(pairing(conv, dL_dy), x_input), **FD)


# ------------------------------------------------------------------ lab 8: batches, ReLU and Vectorization, a CNN
def test_lab8_batched_convolution_without_bias():
    input_dim, kernel_size, output_layers = (4, 3, 7, 5), 2, 3
    conv = Convolution(input_dim, kernel_size, output_layers=output_layers, use_bias=False)
    x_input = np.random.random(input_dim).astype(np.float32)
    dL_dy = np.random.random(conv._output_dim).astype(np.float32)
    output = conv.forward(x_input)
    dL_dx = conv.backward(dL_dy)
    b, m, n, p, q = input_dim[0], input_dim[2], input_dim[3], kernel_size, kernel_size
    for i, kern, j, k in np.ndindex(b, output_layers, m - p + 1, n - q + 1):
        np.testing.assert_allclose(output[i][kern][j][k], (x_input[i, :, j:j + p, k:k + q] * conv._W[kern]).sum(),
                                   rtol=1e-12)
    x = x_input.astype(np.float64)
    np.testing.assert_allclose(dL_dx, numerical_jacobian(pairing(conv, dL_dy), x), **FD)
    conv.forward(x)
    conv.backward(dL_dy)
    np.testing.assert_allclose(conv._W_pd, weight_jacobian(conv, "W", lambda: pairing(conv, dL_dy)(x)), rtol=1e-6,
                               atol=1e-7)
    assert not hasattr(conv, "_B")


def test_lab8_relu_and_vectorization_of_tensors():
    input_dim = (2, 2, 2, 2)
    x_input = np.random.randint(-10, 10, size=input_dim)
    dL_dy = np.random.randint(-10, 10, size=input_dim)
    relu = ReLU(input_dim)
    np.testing.assert_array_equal(relu.forward(x_input), np.maximum(x_input, 0))
    np.testing.assert_array_equal(relu.backward(dL_dy), np.where(x_input > 0, dL_dy, 0))

    vectorize = Vectorization(input_dim)
    output_dim = vectorize._output_dim
    dL_dy = np.random.randint(-10, 10, size=output_dim)
    y_value = vectorize(x_input)
    dL_dx = vectorize.backward(dL_dy)
    assert (y_value.shape, dL_dx.shape) == ((2, 8), (2, 2, 2, 2))
    np.testing.assert_array_equal(dL_dx, dL_dy.reshape(input_dim))


def test_lab8_a_convolutional_network_learns_the_digits():
    batch_size, n_channels, n_output = 40, 1, 10
    train_X, train_y_ohe, test_X, test_y = digits(batch_size, (n_channels, 8, 8))
    layers = [
        Convolution((batch_size, n_channels, 8, 8), kernel_size=3, output_layers=4, use_bias=False,
                    W_init_range=0.3),
        ReLU((batch_size, 4, 6, 6)),
        Convolution((batch_size, 4, 6, 6), kernel_size=3, output_layers=4, use_bias=False, W_init_range=0.3),
        ReLU((batch_size, 4, 4, 4)),
        Vectorization((batch_size, 4, 4, 4)),
        Linear((batch_size, 64), (batch_size, n_output), W_init_range=0.1),
    ]
    network = NeuralNetwork(n_input=64, n_output=n_output, batch_size=batch_size, optimizer=GradientDescent(lr=0.5),
                            layers=layers, loss_fn=SoftMaxLoss((batch_size, n_output)))
    network.fit(train_X, train_y_ohe, n_epochs=6, verbose=False)
    assert compute_accuracy(test_X, test_y, network) > 0.8
    assert network.predict(test_X[0][0, 0]).shape == (1, 10)  # one 8x8 image through layers sized for a batch

    # the lab's check: every layer's backward pass, the weights' gradients kept as _W_pd
    state = test_X[0]
    for layer in layers:
        state = layer.forward(state)
    SoftMaxLoss((batch_size, n_output)).forward(state, np.eye(10)[test_y[0]])
    partial_derivative = np.random.standard_normal(state.shape)
    dL_dw = []
    for layer in layers[::-1]:
        partial_derivative = layer.backward(partial_derivative)
        if isinstance(layer, Neuron):
            dL_dw.append(layer._W_pd)
    assert partial_derivative.shape == test_X[0].shape
    assert [w.shape for w in dL_dw] == [(65, 10), (4, 4, 3, 3), (4, 1, 3, 3)]


# ------------------------------------------------------------------ lab 9: padding
def test_lab9_padded_convolution(torch):
    input_dim, kernel_size, output_layers, padding = (2, 3, 4, 5), 3, 5, 1
    conv = Convolution(input_dim, kernel_size, output_layers=output_layers, padding=padding)
    assert conv._output_dim == (2, 5, 4, 5)
    x_input, dL_dy = np.random.random(input_dim), np.random.random(conv._output_dim)
    output = conv.forward(x_input)
    dL_dx = conv.backward(dL_dy)
    xt = torch.from_numpy(x_input.copy()).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(conv.W.copy()), padding=1) + torch.from_numpy(conv.B.copy())
    yt.backward(torch.from_numpy(dL_dy))
    np.testing.assert_allclose(output, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dL_dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)  # the course's crop was not this
    np.testing.assert_allclose(dL_dx, numerical_jacobian(pairing(conv, dL_dy), x_input), **FD)
    conv.forward(x_input)
    conv.backward(dL_dy)
    np.testing.assert_allclose(conv._B_pd, weight_jacobian(conv, "B", lambda: pairing(conv, dL_dy)(x_input)), **FD)
    np.testing.assert_allclose(conv._W_pd, weight_jacobian(conv, "W", lambda: pairing(conv, dL_dy)(x_input)), **FD)


def test_lab9_padding_in_a_network():
    batch_size = 40
    train_X, train_y_ohe, test_X, test_y = digits(batch_size, (1, 8, 8))
    layers = [Convolution((batch_size, 1, 8, 8), kernel_size=3, output_layers=4, padding=1, use_bias=False,
                          W_init_range=0.3),
              ReLU((batch_size, 4, 8, 8)), Vectorization((batch_size, 4, 8, 8)),
              Linear((batch_size, 256), (batch_size, 10), W_init_range=0.1)]
    network = NeuralNetwork(n_input=64, n_output=10, batch_size=batch_size, optimizer=GradientDescent(lr=0.5),
                            layers=layers, loss_fn=SoftMaxLoss((batch_size, 10)))
    network.fit(train_X, train_y_ohe, n_epochs=3, verbose=False)
    assert compute_accuracy(test_X, test_y, network) > 0.85


# ------------------------------------------------------------------ labs 10 and 11: boxes, then boxes and classes
def test_lab10_box_loss():
    box_loss = MSELoss(input_size=(10, 4))
    x_input = np.random.randint(0, 255, size=(16, 4))
    labels = np.random.randint(0, 255, size=(16, 4))
    y_value = box_loss.forward(x_input, labels)
    dL_dx = box_loss.backward(x_input)
    np.testing.assert_allclose(y_value, [np.sum((x_input - labels) ** 2) / 4], rtol=1e-14)
    x = x_input.astype(float)
    np.testing.assert_allclose(dL_dx, numerical_jacobian(lambda v: float(box_loss.value(v, labels)), x), rtol=1e-6,
                               atol=1e-4)


def test_lab10_linear_layer_validation(torch):
    linear = Linear((10, 2), (10, 5))
    x_input, dL_dy = np.random.rand(10, 2), np.random.rand(10, 5)
    y_value = linear.forward(x_input)
    dL_dx = linear.backward(dL_dy)
    dL_dw = linear._W_pd
    reference = torch.nn.Linear(2, 5).double()
    with torch.no_grad():  # the course's W: the bias in row 0, then torch's weight transposed
        reference.weight.copy_(torch.from_numpy(linear.W[1:, :].T.copy()))
        reference.bias.copy_(torch.from_numpy(linear.W[0, :].copy()))
    xt = torch.from_numpy(x_input.copy()).requires_grad_(True)
    yt = reference(xt)
    yt.backward(torch.from_numpy(dL_dy))
    np.testing.assert_allclose(y_value, yt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dL_dx, xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dL_dw[1:], reference.weight.grad.numpy().T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dL_dw[0], reference.bias.grad.numpy(), rtol=1e-12, atol=1e-14)


def boxes_and_images(count: int, rng: np.random.Generator):
    """Images (3, 12, 12) holding one bright square each, its box (x0, y0, w, h) / 12, and a class (its size)."""
    images, boxes, classes = np.zeros((count, 3, 12, 12)), np.zeros((count, 4)), np.zeros(count, dtype=int)
    for i in range(count):
        size = rng.integers(3, 6)
        x0, y0 = rng.integers(0, 12 - size, 2)
        images[i, :, y0:y0 + size, x0:x0 + size] = 1.0
        boxes[i], classes[i] = np.array([x0, y0, size, size]) / 12, size - 3
    return images, boxes, classes


def detection_layers(batch_size: int, n_output: int):
    return [
        Convolution((batch_size, 3, 12, 12), kernel_size=3, output_layers=4, use_bias=False, W_init_range=0.2),
        ReLU((batch_size, 4, 10, 10)),
        Convolution((batch_size, 4, 10, 10), kernel_size=3, output_layers=2, use_bias=False, W_init_range=0.2),
        ReLU((batch_size, 2, 8, 8)),
        Vectorization((batch_size, 2, 8, 8)),
        Linear((batch_size, 2 * 8 * 8), (batch_size, n_output), W_init_range=0.05),
    ]


def test_lab10_object_detection_learns_boxes():
    batch_size, n_output = 10, 4
    images, boxes, _ = boxes_and_images(200, np.random.default_rng(0))
    train_pic = images.reshape(-1, batch_size, 3, 12, 12)
    train_ann = boxes.reshape(-1, batch_size, n_output)
    network = NeuralNetwork(n_input=28, n_output=n_output, batch_size=batch_size,
                            optimizer=GradientDescent(lr=5e-2), layers=detection_layers(batch_size, n_output),
                            loss_fn=MSELoss((batch_size, n_output, )))
    first = network.fit(train_pic, train_ann, n_epochs=1, verbose=False)
    last = network.fit(train_pic, train_ann, n_epochs=8, verbose=False)
    assert last < 0.5 * first
    assert network.predict(train_pic[0]).shape == (batch_size, n_output)


def test_lab11_classification_with_a_loss_sized_for_four():
    """Lab 11 declares SoftMaxLoss((batch_size, n_output)) with n_output = 4 for its 3 classes: it runs as it did."""
    batch_size, n_output, n_classes = 10, 4, 3
    images, _, classes = boxes_and_images(120, np.random.default_rng(1))
    train_pic = images.reshape(-1, batch_size, 3, 12, 12)
    train_y_ohe = np.eye(n_classes)[classes].reshape(-1, batch_size, n_classes)
    network = NeuralNetwork(n_input=28, n_output=n_output, batch_size=batch_size, optimizer=GradientDescent(lr=1e-1),
                            layers=detection_layers(batch_size, n_classes), loss_fn=SoftMaxLoss((batch_size, n_output)))
    first = network.fit(train_pic, train_y_ohe, n_epochs=1, verbose=False)
    last = network.fit(train_pic, train_y_ohe, n_epochs=6, verbose=False)
    assert last < first
    val_pic, val_y = images[:batch_size].reshape(1, batch_size, 3, 12, 12), classes[:batch_size].reshape(1, batch_size)
    assert 0.0 <= compute_accuracy(val_pic, val_y, network) <= 1.0


# ------------------------------------------------------------------ the optimizer's stopping rule
def test_gradient_descent_stops_once_the_updates_fall_below_eps():
    """Without n_epochs, fit runs until an epoch whose every update is smaller than eps."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 10, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    gds = GradientDescent(lr=0.05, eps=1e-4)
    sizes = []
    optimize = gds.optimize

    def recording(targets, gradients):
        updated = optimize(targets, gradients)
        sizes.append(gds.delta)
        return updated
    gds.optimize = recording
    network = NeuralNetwork(n_input=3, n_output=1, batch_size=10, optimizer=gds, layers=[Linear((10, 3), (10, 1))],
                            loss_fn=MSELoss((10, 1)))
    network.fit(X, y, verbose=False)
    epochs = np.array(sizes).reshape(-1, len(X))
    assert len(epochs) > 1 and gds.limit_reached()
    assert np.all(epochs[-1] < 1e-4) and not np.all(epochs[-2] < 1e-4)  # it stopped at the first such epoch
    np.testing.assert_allclose(network.predict(X[0]), y[0], atol=1e-2)
