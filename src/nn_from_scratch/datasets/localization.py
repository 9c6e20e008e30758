"""A synthetic single-object localisation task: each embedded digit scaled and placed on a blank canvas."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Tuple

import numpy as np

from ..random import as_generator
from .digits import load_digits

__all__ = ["LocalizationSplit", "place_digits", "load_localization", "resize_bilinear"]


def _interpolation_matrix(size: int, source: int) -> np.ndarray:
    """``(size, source)`` weights of bilinear resampling with aligned pixel centres."""
    centres = (np.arange(size) + 0.5) * source / size - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = centres - low
    matrix = np.zeros((size, source))
    matrix[np.arange(size), low] += 1 - frac
    matrix[np.arange(size), high] += frac
    return matrix


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square images ``(N, h, h)`` to ``(N, size, size)`` by bilinear interpolation."""
    matrix = _interpolation_matrix(size, images.shape[-1])
    return matrix @ images @ matrix.T


def place_digits(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    *,
    canvas: int = 32,
    min_size: int = 12,
    max_size: int = 24,
    rng: Any = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``count`` canvases, each holding one of ``images`` (``(N, h, w)`` in [0, 1]) resized and placed at random.

    Returns images ``(count, 1, canvas, canvas)``, their labels and boxes
    ``(x, y, w, h)`` of the placed digit, normalised by the canvas size so
    that they lie in [0, 1] (``x, y`` is the top-left corner).
    """
    if not 1 <= min_size <= max_size <= canvas:
        raise ValueError(f"need 1 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")
    generator = as_generator(rng)
    which = generator.integers(0, len(images), size=count)
    sizes = generator.integers(min_size, max_size + 1, size=count)
    x0 = (generator.random(count) * (canvas - sizes + 1)).astype(int)
    y0 = (generator.random(count) * (canvas - sizes + 1)).astype(int)
    out = np.zeros((count, 1, canvas, canvas))
    for size in np.unique(sizes):
        chosen = np.flatnonzero(sizes == size)
        patches = resize_bilinear(images[which[chosen]], int(size))
        for index, patch in zip(chosen, patches):  # data generation, one slice copy per canvas
            out[index, 0, y0[index]:y0[index] + size, x0[index]:x0[index] + size] = patch
    boxes = np.stack([x0, y0, sizes, sizes], axis=1) / canvas
    return out, labels[which].astype(np.int64), boxes


@dataclass(frozen=True, eq=False)
class LocalizationSplit:
    """Train and test canvases with class labels and boxes; ``targets_*`` pack them as ``(N, 5)`` for LocalizationLoss."""

    X_train: np.ndarray
    labels_train: np.ndarray
    boxes_train: np.ndarray
    X_test: np.ndarray
    labels_test: np.ndarray
    boxes_test: np.ndarray

    @property
    def targets_train(self) -> np.ndarray:
        return np.column_stack([self.labels_train, self.boxes_train])

    @property
    def targets_test(self) -> np.ndarray:
        return np.column_stack([self.labels_test, self.boxes_test])

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.X_train, self.labels_train, self.boxes_train, self.X_test, self.labels_test, self.boxes_test))


def load_localization(
    n_train: int = 6000,
    n_test: int = 1000,
    *,
    canvas: int = 32,
    min_size: int = 12,
    max_size: int = 24,
    seed: int = 0,
    dtype: Any = np.float64,
) -> LocalizationSplit:
    """The localisation task built from the embedded digits, seeded.

    Training canvases use only the digits' training images and test canvases
    only their test images, so no test digit is ever seen in training.
    """
    digits = load_digits(flatten=False, seed=seed)
    generator = np.random.default_rng(seed)
    train = place_digits(digits.X_train[:, 0], digits.y_train, n_train, canvas=canvas,
                         min_size=min_size, max_size=max_size, rng=generator)
    test = place_digits(digits.X_test[:, 0], digits.y_test, n_test, canvas=canvas,
                        min_size=min_size, max_size=max_size, rng=generator)
    dtype = np.dtype(dtype)
    return LocalizationSplit(train[0].astype(dtype), train[1], train[2].astype(dtype),
                             test[0].astype(dtype), test[1], test[2].astype(dtype))
