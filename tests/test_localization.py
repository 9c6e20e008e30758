"""Localisation: the synthetic data, IoU, the combined loss and smooth L1."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch.datasets import load_localization, place_digits
from nn_from_scratch.gradcheck import assert_gradients
from nn_from_scratch.losses import CrossEntropyLoss, LocalizationLoss, SmoothL1Loss
from nn_from_scratch.metrics import box_iou, mean_iou


def test_data_shapes_boxes_and_reproducibility():
    data = load_localization(200, 50, seed=1)
    assert data.X_train.shape == (200, 1, 32, 32) and data.X_test.shape == (50, 1, 32, 32)
    assert data.targets_train.shape == (200, 5)
    assert np.all(data.boxes_train >= 0) and np.all(data.boxes_train[:, :2] + data.boxes_train[:, 2:] <= 1)
    again = load_localization(200, 50, seed=1)
    np.testing.assert_array_equal(data.X_train, again.X_train)
    np.testing.assert_array_equal(data.boxes_test, again.boxes_test)
    assert not np.array_equal(load_localization(200, 50, seed=2).X_train, data.X_train)


def test_ink_lies_inside_the_box():
    data = load_localization(100, 10, seed=0)
    for image, box in zip(data.X_train[:, 0], data.boxes_train):
        x, y, w, h = np.round(box * 32).astype(int)
        outside = image.copy()
        outside[y:y + h, x:x + w] = 0
        np.testing.assert_array_equal(outside, np.zeros_like(outside))
        assert abs(image[y:y + h, x:x + w].sum()) > 1


def test_place_digits_validates_sizes():
    with pytest.raises(ValueError, match="min_size <= max_size <= canvas"):
        place_digits(np.zeros((1, 8, 8)), np.zeros(1), 1, canvas=10, min_size=12, max_size=24)


def test_box_iou_known_values():
    a = np.array([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0]])
    b = np.array([[1.0, 1.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 1.0, 1.0], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b), [1 / 7, 1.0, 0.0, 0.0], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(mean_iou(a, b), (1 / 7 + 1) / 4, rtol=1e-15, atol=0)
    with pytest.raises(ValueError, match=r"same shape \(\.\.\., 4\)"):
        box_iou(a, b[:, :3])


def test_smooth_l1_gradients_and_oracle(torch, rng):
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    for reduction in ("mean", "sum", "none"):
        for beta in (1.0, 0.3):
            loss = SmoothL1Loss(reduction, beta=beta)
            assert_gradients(loss, x, target=t)
            tx = torch.tensor(x, requires_grad=True)
            ref = torch.nn.functional.smooth_l1_loss(tx, torch.tensor(t), reduction=reduction, beta=beta)
            g = rng.standard_normal(ref.shape)
            ref.backward(torch.tensor(g))
            np.testing.assert_allclose(loss.forward(x, t), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(loss.backward(g), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="beta must be"):
        SmoothL1Loss(beta=-1)


def test_localization_loss(rng, torch):
    prediction = rng.standard_normal((5, 14))
    target = np.column_stack([rng.integers(0, 10, 5), rng.random((5, 4))])
    loss = LocalizationLoss(10, class_weight=0.5, box_weight=2.0, box_loss="mse")
    assert_gradients(loss, prediction, target=target)
    tx = torch.tensor(prediction, requires_grad=True)
    ref = 0.5 * torch.nn.functional.cross_entropy(tx[:, :10], torch.tensor(target[:, 0]).long()) \
        + 2.0 * torch.nn.functional.mse_loss(tx[:, 10:], torch.tensor(target[:, 1:]))
    ref.backward()
    np.testing.assert_allclose(loss.forward(prediction, target), ref.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.backward(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.probabilities(prediction).sum(axis=1), np.ones(5), rtol=1e-12, atol=1e-12)
    assert loss.count_correct(prediction, target) == int(np.sum(prediction[:, :10].argmax(1) == target[:, 0]))


def test_localization_loss_is_its_two_losses_weighted(rng):
    prediction = rng.standard_normal((5, 14))
    target = np.column_stack([rng.integers(0, 10, 5), rng.random((5, 4))])
    loss = LocalizationLoss(10, class_weight=0.5, box_weight=2.0)
    value, dx = loss.forward(prediction, target), loss.backward()
    assert loss.classification.pending is None and loss.box.pending is None  # their passes live in the localizer's
    ce, box = CrossEntropyLoss(), SmoothL1Loss(beta=0.05)
    expected = 0.5 * ce.forward(prediction[:, :10], target[:, 0].astype(int)) + 2.0 * box.forward(prediction[:, 10:],
                                                                                                  target[:, 1:])
    np.testing.assert_allclose(value, expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(dx, np.hstack([0.5 * ce.backward(), 2.0 * box.backward()]), rtol=1e-15, atol=0)


def test_localization_loss_errors(rng):
    loss = LocalizationLoss(10)
    with pytest.raises(ValueError, match=r"shape \(N, 14\)"):
        loss.forward(np.zeros((3, 13)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"shape \(3, 5\)"):
        loss.forward(np.zeros((3, 14)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="whole numbers"):
        loss.forward(np.zeros((3, 14)), np.full((3, 5), 0.5))
    with pytest.raises(ValueError, match=r"outside the range \[0, 10\)"):
        loss.forward(np.zeros((3, 14)), np.column_stack([np.full(3, 12.0), np.zeros((3, 4))]))
    with pytest.raises(ValueError, match="num_classes"):
        LocalizationLoss(1)


def test_accuracy():
    from nn_from_scratch.metrics import accuracy

    np.testing.assert_allclose(accuracy([1, 2, 3, 4], [1, 2, 0, 4]), 0.75, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="same shape"):
        accuracy([1, 2], [1])


def test_localization_loss_label_smoothing_and_split(rng, torch):
    prediction = rng.standard_normal((6, 14))
    target = np.column_stack([rng.integers(0, 10, 6), rng.random((6, 4))])
    loss = LocalizationLoss(10, box_weight=3.0, label_smoothing=0.2)
    assert "label_smoothing=0.2" in repr(loss)
    assert_gradients(loss, prediction, target=target)
    tx = torch.tensor(prediction, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(tx[:, :10], torch.tensor(target[:, 0]).long(), label_smoothing=0.2) \
        + 3.0 * torch.nn.functional.smooth_l1_loss(tx[:, 10:], torch.tensor(target[:, 1:]), beta=0.05)
    ref.backward()
    np.testing.assert_allclose(loss.forward(prediction, target), ref.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss.backward(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    logits, boxes = loss.split(prediction)
    np.testing.assert_array_equal(logits, prediction[:, :10])
    np.testing.assert_array_equal(boxes, prediction[:, 10:])
    # boxes larger than every logit: the class still comes from the logits alone
    shifted = np.hstack([prediction[:, :10] - 10.0, np.full((6, 4), 0.9)])
    np.testing.assert_array_equal(loss.predict_classes(shifted), prediction[:, :10].argmax(axis=1))
    with pytest.raises(ValueError, match=r"shape \(N, 14\)"):
        loss.split(prediction[:, :13])
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        LocalizationLoss(10, label_smoothing=1.5)


# ------------------------------------------------------------------ the test canvases alone
@pytest.mark.parametrize("n_train, n_test, canvas, min_size, max_size, seed", [
    (200, 50, 32, 12, 24, 0), (1, 1, 16, 6, 12, 3), (0, 7, 8, 3, 6, 11), (333, 20, 20, 8, 15, 123456),
    (57, 0, 32, 12, 24, 2),
])
def test_test_canvases_alone_are_bit_identical_to_the_full_split(n_train, n_test, canvas, min_size, max_size, seed):
    settings = dict(canvas=canvas, min_size=min_size, max_size=max_size, seed=seed)
    full = load_localization(n_train, n_test, **settings)
    alone = load_localization(n_train, n_test, **settings, render_train=False)
    for name in ("X_test", "labels_test", "boxes_test"):
        a, b = getattr(full, name), getattr(alone, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert alone.X_train.shape == (0, 1, canvas, canvas) and alone.labels_train.shape == (0,)
    assert alone.boxes_train.shape == (0, 4)


def test_test_canvases_alone_do_not_render_the_training_canvases():
    import tracemalloc

    tracemalloc.start()
    try:
        load_localization(20_000, 4, canvas=32, render_train=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20  # the training canvases alone would be 160 MB of float64


def test_test_canvases_alone_validate_the_sizes_too():
    with pytest.raises(ValueError, match="min_size <= max_size <= canvas"):
        load_localization(5, 5, canvas=10, min_size=12, max_size=24, render_train=False)


@pytest.mark.parametrize("changes, field", [
    ({"n_train": True}, "n_train"), ({"n_train": -1}, "n_train"), ({"n_train": 10**9}, "n_train"),
    ({"n_test": 2.0}, "n_test"), ({"n_test": 0}, "n_test"), ({"canvas": 10**5}, "canvas"),
    ({"seed": "0"}, "seed"), ({"seed": -3}, "seed"), ({"min_size": [1]}, "min_size"), ({"max_size": None}, "max_size"),
    ({"extra": 1}, "extra"), ({"n_test": 100_000, "canvas": 1024}, "pixels"),
])
def test_localization_settings_are_validated(changes, field):
    from nn_from_scratch.datasets.localization import validate_localization_settings

    good = {"n_train": 100, "n_test": 10, "canvas": 32, "min_size": 12, "max_size": 24, "seed": 0}
    assert validate_localization_settings(good) == good
    with pytest.raises(ValueError, match=field):
        validate_localization_settings(dict(good, **changes))
    missing = dict(good)
    del missing["seed"]
    with pytest.raises(ValueError, match="seed"):
        validate_localization_settings(missing)
