"""The per-batch pipeline: augmentation steps, normalisation, reproducibility, and fit(transform=...)."""
from __future__ import annotations

import numpy as np
import pytest

from nn_from_scratch import models, optim
from nn_from_scratch.datasets import (BatchPipeline, HorizontalFlip, Normalize, RandomCrop, RandomErasing,
                                      image_statistics)
from nn_from_scratch.losses import CrossEntropyLoss
from nn_from_scratch.training import NeuralNetwork

from file_helpers import peak_while


def images(n=16, size=10, seed=3):
    return np.random.default_rng(seed).integers(1, 256, size=(n, 1, size, size), dtype=np.uint8)


def shifted(image, dy, dx, p):
    """``image`` zero-padded by ``p`` and cropped back at offset (dy, dx), pixel by pixel."""
    _, h, w = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for c in range(w):
            rr, cc = r + dy - p, c + dx - p
            if 0 <= rr < h and 0 <= cc < w:
                out[:, r, c] = image[:, rr, cc]
    return out


def test_random_crop_shifts_each_image_by_at_most_the_padding():
    batch = images()
    out = RandomCrop(2)(batch, np.random.default_rng(0))
    assert out.shape == batch.shape and out.dtype == np.uint8
    seen = set()
    for original, cropped in zip(batch, out):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(shifted(original, dy, dx, 2), cropped)]
        assert matches, "every crop is a shift of its image by at most 2 pixels"
        seen.add(matches[0])
    assert len(seen) > 3  # the offsets differ between images


def test_flip_mirrors_the_chosen_images_only():
    batch = images()
    out = HorizontalFlip(0.5)(batch, np.random.default_rng(1))
    flipped = [np.array_equal(o, b[..., ::-1]) for o, b in zip(out, batch)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert np.array_equal(HorizontalFlip(1.0)(batch, np.random.default_rng(1)), batch[..., ::-1])
    assert np.array_equal(HorizontalFlip(0.0)(batch, np.random.default_rng(1)), batch)


def test_erasing_fills_one_rectangle_per_chosen_image():
    batch = images(n=32)  # pixels 1..255: an erased pixel (value 0) is always a change
    out = RandomErasing(0.5, value=0)(batch, np.random.default_rng(2))
    erased = 0
    for original, result in zip(batch, out):
        changed = result[0] != original[0]
        if not changed.any():
            continue
        erased += 1
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        box = changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.all() and changed.sum() == box.size  # one full rectangle
        assert (result[0][changed] == 0).all()
    assert 4 <= erased <= 28
    assert np.array_equal(RandomErasing(0.0)(batch, np.random.default_rng(2)), batch)


def test_steps_never_write_into_the_batch_they_are_given():
    batch = images()
    before = batch.copy()
    for step in (RandomCrop(2), HorizontalFlip(1.0), RandomErasing(1.0)):
        step(batch, np.random.default_rng(0))
    assert np.array_equal(batch, before)


def pipeline(flatten=False):
    return BatchPipeline(np.float32, [RandomCrop(2), HorizontalFlip(), RandomErasing(value=100)],
                         Normalize(0.3, 0.35), image_shape=(1, 10, 10), flatten=flatten)


def test_the_pipeline_is_reproducible_bit_for_bit_for_a_seed():
    batch = images(n=64)
    a = pipeline()(batch, np.random.default_rng(7))
    b = pipeline()(batch, np.random.default_rng(7))
    c = pipeline()(batch, np.random.default_rng(8))
    assert a.dtype == np.float32 and a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


def test_without_a_generator_the_pipeline_only_converts_and_normalises():
    batch = images()
    out = pipeline(flatten=True)(batch.reshape(len(batch), -1))
    expected = (batch.astype(np.float64) / 255 - 0.3) / 0.35
    assert out.shape == (16, 100) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected.reshape(16, 100), rtol=1e-6, atol=1e-6)


def test_normalize_matches_torch(torch):
    batch = images()
    ours = Normalize(0.2860, 0.3530)(batch, np.float64)
    theirs = ((torch.from_numpy(batch).double() / 255 - 0.2860) / 0.3530).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_image_statistics_agree_with_numpy_in_float64():
    batch = images(n=50)
    mean, std = image_statistics(batch, chunk=7)
    as_float = batch.astype(np.float64) / 255
    np.testing.assert_allclose([mean, std], [as_float.mean(), as_float.std()], rtol=1e-12, atol=0)


@pytest.mark.parametrize("bad", [
    lambda: RandomCrop(-1), lambda: HorizontalFlip(1.5), lambda: RandomErasing(scale=(0.5, 0.1)),
    lambda: Normalize(0.0, 0.0), lambda: BatchPipeline(np.int32),
    lambda: BatchPipeline(np.float32, [RandomCrop(1)]),
])
def test_bad_settings_are_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()


# ------------------------------------------------------------ fit(transform=...)
def data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 1, 10, 10), dtype=np.uint8)
    y = (X[:, 0, :5].mean(axis=(1, 2)) > X[:, 0, 5:].mean(axis=(1, 2))).astype(np.int64)
    return X.reshape(n, 100), y


def network(dtype=np.float32):
    model = models.mlp(100, [16], 2, rng=1, dtype=dtype)
    return NeuralNetwork(model, CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-2))


def same_weights(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)


def test_an_unaugmented_transform_gives_the_array_path_bit_for_bit():
    X, y = data()
    arrays, batched = network(np.float64), network(np.float64)
    h1 = arrays.fit(X.astype(np.float64), y, epochs=3, batch_size=16, rng=5, progress=False)
    h2 = batched.fit(X, y, epochs=3, batch_size=16, rng=5, progress=False,
                     transform=BatchPipeline(np.float64))
    assert h1 == h2
    assert same_weights(arrays, batched)


def test_a_resumed_augmented_run_is_bit_identical(tmp_path):
    X, y = data()
    transform = BatchPipeline(np.float32, [RandomCrop(2), HorizontalFlip(), RandomErasing()], Normalize(0.5, 0.3),
                              image_shape=(1, 10, 10), flatten=True)
    straight = network()
    h_straight = straight.fit(X, y, epochs=4, batch_size=32, rng=9, progress=False, transform=transform,
                              validation_data=(X[:20], y[:20]))
    checkpoint = tmp_path / "c.npz"
    first = network()
    first.fit(X, y, epochs=2, batch_size=32, rng=9, progress=False, transform=transform,
              validation_data=(X[:20], y[:20]), checkpoint=checkpoint)
    resumed = network()
    h_resumed = resumed.fit(X, y, epochs=4, batch_size=32, rng=9, progress=False, transform=transform,
                            validation_data=(X[:20], y[:20]), resume=checkpoint)
    assert h_resumed == h_straight
    assert same_weights(straight, resumed)


def test_augmentation_changes_the_run():
    X, y = data()
    plain = network().fit(X, y, epochs=2, batch_size=32, rng=9, progress=False,
                          transform=BatchPipeline(np.float32, image_shape=(1, 10, 10), flatten=True))
    augmented = network().fit(X, y, epochs=2, batch_size=32, rng=9, progress=False,
                              transform=BatchPipeline(np.float32, [HorizontalFlip(1.0)], image_shape=(1, 10, 10),
                                                      flatten=True))
    assert plain["loss"] != augmented["loss"]


def test_uint8_data_are_never_copied_to_float_whole():
    X = np.random.default_rng(0).integers(0, 256, size=(4000, 100), dtype=np.uint8)
    y = np.random.default_rng(1).integers(0, 2, size=4000)
    net = network()
    transform = BatchPipeline(np.float32, normalize=Normalize(0.5, 0.3), image_shape=(1, 10, 10), flatten=True)
    peak = peak_while(lambda: net.fit(X, y, epochs=1, batch_size=64, rng=0, progress=False, transform=transform,
                                      validation_data=(X, y)))
    # a float32 copy of X alone would be 1.6 MB; batches of 64 (and the evaluation's of 1024) are far less
    assert peak < X.size * 4 // 2


def test_a_float32_run_never_hands_the_model_a_float64_batch():
    """Training, validation and prediction batches all reach the model as the pipeline's float32."""
    X, y = data()
    net = network(np.float32)
    seen = []
    for name in ("forward", "evaluate"):
        original = getattr(net.model, name)

        def spy(x, *more, _original=original):
            seen.append(np.asarray(x).dtype)
            return _original(x, *more)

        setattr(net.model, name, spy)  # the instance's own attribute: the trainer calls these two
    transform = BatchPipeline(np.float32, [RandomCrop(2), HorizontalFlip(), RandomErasing(value=128)],
                              Normalize(0.5, 0.3), image_shape=(1, 10, 10), flatten=True)
    net.fit(X, y, epochs=2, batch_size=32, rng=0, progress=False, transform=transform, validation_data=(X, y))
    net.predict(X, transform=transform)
    assert len(seen) > 6 and set(seen) == {np.dtype(np.float32)}


@pytest.mark.parametrize("value", [300, -1, 0.5])
def test_erasing_refuses_a_value_the_stored_pixels_cannot_hold(value):
    """uint8 pixels hold 0..255: 300 would wrap to 44 and 0.5 become 0, silently."""
    with pytest.raises(ValueError, match="cannot be stored as uint8"):
        RandomErasing(1.0, value=value)(images(), np.random.default_rng(0))
    out = RandomErasing(1.0, value=value)(images().astype(np.float32), np.random.default_rng(0))
    assert out.dtype == np.float32 and np.float32(value) in out
