"""The course's forms in ``nodes``: ReLU(n), Vectorization(dim), SoftMaxLoss(n), MSELoss(input_size), label sets.

Each against finite differences and, where torch has the function, against torch (1e-10 in float64, float32
within float32 tolerance); our own forms (``ReLU()``, ``Vectorization()``, ``losses.SoftMaxLoss``) keep their
shapes and numbers.
"""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import losses
from nn_from_scratch.gradcheck import numerical_jacobian as numerical_gradient
from nn_from_scratch.nodes import MSELoss, ReLU, SoftMaxLoss, Vectorization

TIGHT = dict(rtol=1e-10, atol=1e-12)
FLOAT32 = dict(rtol=2e-5, atol=1e-6)


def multi_hot(rng, shape):
    """0/1 rows with at least one 1 each."""
    labels = (rng.random(shape) < 0.4).astype(np.int64)
    rows = labels.reshape(-1, shape[-1])
    rows[rows.sum(axis=1) == 0, 0] = 1
    return labels


# ------------------------------------------------------------------ ReLU(n) and Vectorization(dim)
def test_relu_of_a_size_keeps_our_shapes():
    relu = ReLU(5)
    x, g = np.array([0, -1, 2, -1, 4]), np.array([1, 2, 3, 2, 1])
    np.testing.assert_array_equal(relu.forward(x), [0, 0, 2, 0, 4])
    dx = relu.backward(g)
    assert dx.shape == (5,)  # the course's ReLU gave (1, 1, 1, 5): that shape lives in neurons.ReLU only
    np.testing.assert_array_equal(dx, [0, 0, 3, 0, 1])
    assert repr(ReLU()) == "ReLU()" and ReLU((2, 5)).input_shape == (None, 5)


def test_relu_of_a_size_takes_any_batch_and_refuses_other_shapes(rng):
    relu = ReLU((50, 4, 26, 26))
    assert relu.forward(rng.standard_normal((1, 4, 26, 26))).shape == (1, 4, 26, 26)  # one image through a batch layer
    with pytest.raises(ValueError, match=r"ReLU expects input of shape \('any', 4, 26, 26\), got \(1, 4, 26, 25\)"):
        relu.forward(rng.standard_normal((1, 4, 26, 25)))
    with pytest.raises(ValueError, match=r"ReLU expects input of shape \(5,\), got \(6,\)"):
        ReLU(5).forward(np.zeros(6))


@pytest.mark.parametrize("size, error, match", [
    (True, TypeError, "not a bool"),
    (0, ValueError, "positive int"),
    ((2, -1), ValueError, "positive int"),
    ("5", ValueError, "positive int"),
    (2.5, TypeError, "an int or a tuple of ints"),
])
def test_relu_refuses_a_bad_size(size, error, match):
    with pytest.raises(error, match=match):
        ReLU(size)


def test_vectorization_of_a_size_is_the_courses(rng):
    vectorize = Vectorization((2, 2, 2, 2))
    assert vectorize._output_dim == (2, 8) and vectorize._input_dim == (2, 2, 2, 2)
    x = rng.integers(-10, 10, size=(2, 2, 2, 2))
    y = vectorize(x)
    g = rng.standard_normal(vectorize._output_dim)
    np.testing.assert_array_equal(y, x.reshape(2, 8))
    np.testing.assert_array_equal(vectorize.backward(g), g.reshape(2, 2, 2, 2))
    assert vectorize.forward(rng.standard_normal((5, 2, 2, 2))).shape == (5, 8)  # any batch
    assert repr(vectorize) == "Vectorization(input_dim=(2, 2, 2, 2))"
    assert repr(Vectorization()) == "Vectorization(start_dim=1, end_dim=-1)"


@pytest.mark.parametrize("size, error, match", [
    (5, ValueError, "two or more axes"),
    ((4, 0), ValueError, "positive int"),
    (3.5, TypeError, "an int or a tuple of ints"),
])
def test_vectorization_refuses_a_bad_size(size, error, match):
    with pytest.raises(error, match=match):
        Vectorization(size)


# ------------------------------------------------------------------ the course's SoftMaxLoss
def torch_label_set_loss(torch, x, labels):
    """The reference: the mean over rows of -log <l, softmax(x / max|x|)>."""
    rows = x if x.dim() == 2 else x[None]
    scale = rows.abs().amax(dim=1, keepdim=True)
    y = torch.softmax(rows / torch.where(scale == 0, torch.ones_like(scale), scale), dim=1)
    return -torch.log((y * (labels if labels.dim() == 2 else labels[None])).sum(dim=1)).mean()


@pytest.mark.parametrize("shape", [(5,), (10, 5), (3, 2)])
def test_softmax_loss_follows_torch_and_finite_differences(shape, torch, rng):
    x, labels = rng.standard_normal(shape), multi_hot(rng, shape)
    loss = SoftMaxLoss(shape if len(shape) == 2 else shape[0])
    value = loss.forward(x, labels)
    dx = loss.backward()
    assert value.shape == (1,) and dx.shape == x.shape
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    reference = torch_label_set_loss(torch, xt, torch.from_numpy(labels.astype(np.float64)))
    reference.backward()
    np.testing.assert_allclose(value[0], reference.item(), **TIGHT)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TIGHT)
    np.testing.assert_allclose(dx, numerical_gradient(lambda z: float(loss.value(z, labels)), x), rtol=1e-6, atol=1e-8)
    x32 = x.astype(np.float32)
    value32 = loss.forward(x32, labels)
    assert value32.dtype == np.float32 and loss.backward().dtype == np.float32
    np.testing.assert_allclose(value32[0], reference.item(), **FLOAT32)


def test_softmax_loss_takes_any_batch_and_class_count_its_size_has_only_a_rank(rng):
    """The course's lab 11 declares SoftMaxLoss((10, 4)) for 3 classes: the lengths are read off x."""
    loss = SoftMaxLoss((10, 4))
    x, labels = rng.standard_normal((7, 3)), np.eye(3)[rng.integers(0, 3, 7)]
    assert loss.forward(x, labels).shape == (1,)
    assert loss.backward(x).shape == (7, 3)  # the argument is ignored: the course passes x there


def test_softmax_loss_jacobian_is_its_gradient_and_leaves_the_pass(rng):
    loss = SoftMaxLoss(4)
    x, labels = rng.standard_normal(4), np.array([0, 1, 1, 0])
    loss.forward(x, labels)
    gradient = loss.backward(reset_after=False)
    np.testing.assert_array_equal(loss.jacobian(), gradient)
    np.testing.assert_array_equal(loss.jacobian(x, labels), gradient)
    assert loss.pending is not None


@pytest.mark.parametrize("labels, error, match", [
    (np.zeros((2, 3)), ValueError, r"label row 0 marks no class"),
    (np.array([[1, 0, 0], [0, 0, 0]]), ValueError, r"label row 1 marks no class"),
    (np.array([[1, -1, 1], [0, 1, 0]]), ValueError, "finite and non-negative"),
    (np.array([[1, np.nan, 0], [0, 1, 0]]), ValueError, "finite and non-negative"),
    (np.ones((2, 4)), ValueError, r"labels must have the shape of x \(2, 3\), got \(2, 4\)"),
    (np.array([["a", "b", "c"]] * 2), TypeError, "labels must hold real numbers"),
])
def test_softmax_loss_refuses_bad_labels(labels, error, match, rng):
    loss = SoftMaxLoss((2, 3))
    with pytest.raises(error, match=match):
        loss.forward(rng.standard_normal((2, 3)), labels)
    assert loss.pending is None


@pytest.mark.parametrize("make, x, match", [
    (lambda: SoftMaxLoss(3), np.zeros((2, 3, 1)), r"takes a vector \(n,\) or rows \(N, n\), got x of shape"),
    (lambda: SoftMaxLoss(3), np.zeros((2, 0)), "n >= 1"),
    (lambda: MSELoss(3), np.zeros(()), r"got x of shape \(\)"),
])
def test_the_course_losses_refuse_bad_input(make, x, match):
    with pytest.raises(ValueError, match=match):
        make().forward(x, np.ones_like(x))


@pytest.mark.parametrize("make, error, match", [
    (lambda: SoftMaxLoss((2, 3, 4)), ValueError, r"not an input size of 3 axes"),
    (lambda: MSELoss(0), ValueError, "positive int"),
    (lambda: MSELoss(input_size=None), TypeError, "the course's input size"),
])
def test_the_course_losses_refuse_bad_sizes(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_the_course_losses_need_labels():
    with pytest.raises(ValueError, match="labels are not provided"):
        SoftMaxLoss(3).forward(np.zeros(3))


# ------------------------------------------------------------------ the course's MSELoss
def test_mse_loss_divides_by_the_row_size_and_follows_torch(torch, rng):
    loss = MSELoss(input_size=(10, 4))
    x, boxes = rng.integers(0, 255, size=(16, 4)), rng.integers(0, 255, size=(16, 4))
    value, dx = loss.forward(x, boxes), loss.backward(x)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    reference = ((xt - torch.from_numpy(boxes.astype(np.float64))) ** 2).sum() / 4
    reference.backward()
    assert value.shape == (1,) and dx.shape == (16, 4)
    np.testing.assert_allclose(value[0], reference.item(), **TIGHT)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TIGHT)
    xf = rng.standard_normal((3, 4))
    np.testing.assert_allclose(loss.forward(xf, boxes[:3]) * 1, [np.sum((xf - boxes[:3]) ** 2) / 4], **TIGHT)
    np.testing.assert_allclose(loss.backward(), numerical_gradient(lambda z: float(loss.value(z, boxes[:3])), xf),
                               rtol=1e-6, atol=1e-6)
    value32 = loss.forward(xf.astype(np.float32), boxes[:3])
    assert value32.dtype == np.float32
    np.testing.assert_allclose(value32[0], np.sum((xf - boxes[:3]) ** 2) / 4, **FLOAT32)


def test_mse_loss_of_a_vector():
    loss = MSELoss(4)
    np.testing.assert_allclose(loss.forward([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 3.0, 2.0]), [5.0 / 4])
    np.testing.assert_allclose(loss.backward(), [0.5, 0.0, 0.0, 1.0])


def test_the_course_losses_are_not_layers_nor_star_exported():
    import nn_from_scratch
    import nn_from_scratch.nodes as nodes

    assert "SoftMaxLoss" not in nodes.__all__ and "MSELoss" not in nodes.__all__
    assert not hasattr(nn_from_scratch, "SoftMaxLoss")
    assert losses.SoftMaxLoss is not SoftMaxLoss and losses.MSELoss is not MSELoss


# ------------------------------------------------------------------ label sets in losses.SoftMaxLoss
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_library_softmax_loss_takes_label_sets(reduction, torch, rng):
    x, labels = rng.standard_normal((6, 4)), multi_hot(rng, (6, 4)).astype(np.float64)
    loss = losses.SoftMaxLoss(reduction)
    value = loss.forward(x, labels)
    dx = loss.backward(np.ones(np.shape(value)), reset_after=False)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    scale = xt.abs().amax(dim=1, keepdim=True)
    per = -torch.log((torch.softmax(xt / scale, dim=1) * torch.from_numpy(labels)).sum(dim=1))
    reference = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    reference.sum().backward()
    np.testing.assert_allclose(value, reference.detach().numpy(), **TIGHT)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TIGHT)
    np.testing.assert_allclose(loss.jacobian(), np.asarray(loss.jacobian(x, labels)), **TIGHT)


def test_one_hot_rows_give_the_same_bits_as_class_indices(rng):
    x, t = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    by_index, by_row = losses.SoftMaxLoss(), losses.SoftMaxLoss()
    assert by_index.forward(x, t) == by_row.forward(x, np.eye(3)[t])
    np.testing.assert_array_equal(by_index.backward(), by_row.backward())


def test_the_course_loss_equals_the_library_loss_on_label_sets(rng):
    x, labels = rng.standard_normal((4, 5)), multi_hot(rng, (4, 5))
    np.testing.assert_allclose(SoftMaxLoss((4, 5)).forward(x, labels)[0],
                               losses.SoftMaxLoss().forward(x, labels.astype(float)), **TIGHT)


def test_a_label_set_without_a_label_is_refused(rng):
    with pytest.raises(ValueError, match="marks no class"):
        losses.SoftMaxLoss().forward(rng.standard_normal((2, 3)), np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
