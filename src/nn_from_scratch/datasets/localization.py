"""A synthetic single-object localisation task: each embedded digit scaled and placed on a blank canvas."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Tuple

import numpy as np

from ..random import as_generator
from .digits import load_digits

__all__ = ["LocalizationSplit", "place_digits", "load_localization", "resize_bilinear",
           "validate_localization_settings", "MAX_TRAIN_CANVASES", "MAX_TEST_CANVASES", "MAX_CANVAS",
           "MAX_TEST_PIXELS"]

#: Bounds on settings read from a file (:func:`validate_localization_settings`): training canvases are only
#: drawn there, 8 bytes of random numbers each at a time; the test canvases are rendered.
MAX_TRAIN_CANVASES = 10**6
MAX_TEST_CANVASES = 10**5
MAX_CANVAS = 1024
MAX_TEST_PIXELS = 1 << 26


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
    _check_sizes(canvas, min_size, max_size)
    which, sizes, x0, y0 = _draw_placements(as_generator(rng), len(images), count, canvas, min_size, max_size)
    out = np.zeros((count, 1, canvas, canvas))
    for size in np.unique(sizes):
        chosen = np.flatnonzero(sizes == size)
        patches = resize_bilinear(images[which[chosen]], int(size))
        for index, patch in zip(chosen, patches):  # data generation, one slice copy per canvas
            out[index, 0, y0[index]:y0[index] + size, x0[index]:x0[index] + size] = patch
    boxes = np.stack([x0, y0, sizes, sizes], axis=1) / canvas
    return out, labels[which].astype(np.int64), boxes


def _check_sizes(canvas: int, min_size: int, max_size: int) -> None:
    if not 1 <= min_size <= max_size <= canvas:
        raise ValueError(f"need 1 <= min_size <= max_size <= canvas, got {min_size}, {max_size}, {canvas}")


def _draw_placements(generator: np.random.Generator, n_images: int, count: int, canvas: int, min_size: int,
                     max_size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The random numbers of ``count`` canvases, in the order drawn: which image, its size, its corner."""
    which = generator.integers(0, n_images, size=count)
    sizes = generator.integers(min_size, max_size + 1, size=count)
    x0 = (generator.random(count) * (canvas - sizes + 1)).astype(int)
    y0 = (generator.random(count) * (canvas - sizes + 1)).astype(int)
    return which, sizes, x0, y0


def _skip_placements(generator: np.random.Generator, n_images: int, count: int, canvas: int, min_size: int,
                     max_size: int) -> None:
    """Advance ``generator`` exactly as :func:`place_digits` does for ``count`` canvases, rendering nothing.

    The same numbers are drawn (so the stream moves on by the same amount,
    rejection sampling included), one array at a time, then dropped.
    """
    generator.integers(0, n_images, size=count)  # which
    generator.integers(min_size, max_size + 1, size=count)  # sizes
    generator.random(count)  # x0 and y0: one double each per canvas, whatever the sizes
    generator.random(count)


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
    render_train: bool = True,
) -> LocalizationSplit:
    """The localisation task built from the embedded digits, seeded.

    Training canvases use only the digits' training images and test canvases
    only their test images, so no test digit is ever seen in training.  The
    test canvases are drawn after the training ones from one generator; with
    ``render_train=False`` the training canvases are not made (the split's
    training arrays are empty) but the generator is advanced exactly as if
    they had been, so the test canvases are bit for bit the same: what
    evaluating a saved model needs, at the cost of ``8 * n_train`` bytes of
    random numbers instead of ``8 * n_train * canvas**2`` of images.
    """
    digits = load_digits(flatten=False, seed=seed)
    generator = np.random.default_rng(seed)
    if render_train:
        train = place_digits(digits.X_train[:, 0], digits.y_train, n_train, canvas=canvas,
                             min_size=min_size, max_size=max_size, rng=generator)
    else:
        _check_sizes(canvas, min_size, max_size)
        _skip_placements(generator, len(digits.X_train), n_train, canvas, min_size, max_size)
        train = (np.zeros((0, 1, canvas, canvas)), digits.y_train[:0].astype(np.int64), np.zeros((0, 4)))
    test = place_digits(digits.X_test[:, 0], digits.y_test, n_test, canvas=canvas,
                        min_size=min_size, max_size=max_size, rng=generator)
    dtype = np.dtype(dtype)
    return LocalizationSplit(train[0].astype(dtype), train[1], train[2].astype(dtype),
                             test[0].astype(dtype), test[1], test[2].astype(dtype))


_SETTINGS = ("n_train", "n_test", "canvas", "min_size", "max_size", "seed")


def validate_localization_settings(settings: Any) -> Dict[str, int]:
    """Check the keyword arguments of :func:`load_localization` read from a file (its ``data`` metadata).

    Each of ``n_train``, ``n_test``, ``canvas``, ``min_size``, ``max_size``
    and ``seed`` must be present and an integer (not a bool, a float or a
    string), no other key may be, and the sizes must lie within
    :data:`MAX_TRAIN_CANVASES`, :data:`MAX_TEST_CANVASES`, :data:`MAX_CANVAS`
    and :data:`MAX_TEST_PIXELS` (test canvases times pixels per canvas).
    Whether the digit sizes fit the canvas is :func:`place_digits`' check.
    Returns the settings as plain ints; raises ``ValueError`` naming the key.
    """
    if not isinstance(settings, Mapping):
        raise ValueError(f"the canvas settings must be a dict, got {type(settings).__name__}")
    unknown = sorted(str(key)[:40] for key in settings if key not in _SETTINGS)
    if unknown:
        raise ValueError(f"the canvas settings have unknown keys {unknown[:5]}")
    result: Dict[str, int] = {}
    bounds = {"n_train": (0, MAX_TRAIN_CANVASES), "n_test": (1, MAX_TEST_CANVASES), "canvas": (1, MAX_CANVAS),
              "min_size": (1, MAX_CANVAS), "max_size": (1, MAX_CANVAS), "seed": (0, 2**63 - 1)}
    for key in _SETTINGS:
        if key not in settings:
            raise ValueError(f"the canvas settings lack {key!r}")
        value = settings[key]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"the canvas setting {key!r} must be an integer, got {type(value).__name__}")
        low, high = bounds[key]
        if not low <= value <= high:
            shown = value if abs(value) < 10**30 else "a huge number"
            raise ValueError(f"the canvas setting {key!r} must lie in [{low}, {high}], got {shown}")
        result[key] = int(value)
    if result["n_test"] * result["canvas"] ** 2 > MAX_TEST_PIXELS:
        raise ValueError(f"the canvas settings ask for {result['n_test']} test canvases of {result['canvas']}x"
                         f"{result['canvas']} pixels, more than {MAX_TEST_PIXELS} pixels in all")
    return result
