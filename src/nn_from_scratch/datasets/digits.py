"""The 8x8 handwritten digits (1797 images, 10 classes) bundled with the package.

The data are the UCI ML "Optical Recognition of Handwritten Digits" test set
(E. Alpaydin, C. Kaynak, 1998), taken once from scikit-learn's copy; see
``data/DIGITS_LICENSE.txt`` for source and licence and
``tools/extract_digits.py`` for how ``data/digits.npz`` was made.
"""
from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator, Tuple

import numpy as np

__all__ = ["DatasetSplit", "load_digits"]

_N_DIGITS = 1797
_N_CLASSES = 10
_MAX_PIXEL = 16


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """A train/test split: ``X_train, y_train, X_test, y_test``.

    Frozen (the fields cannot be rebound) but the arrays themselves are
    ordinary writable NumPy arrays owned by this object. Supports tuple
    unpacking::

        X_train, y_train, X_test, y_test = load_digits()
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield ``X_train, y_train, X_test, y_test`` in that order."""
        return iter((self.X_train, self.y_train, self.X_test, self.y_test))

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{name}=<{arr.dtype} array {arr.shape}>"
            for name, arr in zip(("X_train", "y_train", "X_test", "y_test"), self)
        )
        return f"DatasetSplit({parts})"


def _as_float_dtype(dtype: Any) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is a floating dtype, else raise TypeError."""
    try:
        result = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(
            f"dtype must be a NumPy floating dtype (e.g. np.float64), got {dtype!r}"
        ) from exc
    if not np.issubdtype(result, np.floating):
        raise TypeError(
            f"dtype must be a NumPy floating dtype (e.g. np.float64), got {result}"
        )
    return result


def _check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as bool if it is a bool (or NumPy bool), else raise TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


@lru_cache(maxsize=1)
def _raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """Load (and cache) the uint8 images (1797, 8, 8) and labels (1797,), read-only."""
    resource = resources.files(__package__).joinpath("data/digits.npz")
    with np.load(io.BytesIO(resource.read_bytes()), allow_pickle=False) as data:
        images = np.array(data["images"])
        labels = np.array(data["labels"])
    if images.shape != (_N_DIGITS, 8, 8) or images.dtype != np.uint8:
        raise ValueError(  # pragma: no cover - guards a damaged installation
            f"digits.npz: expected images uint8 (1797, 8, 8), got {images.dtype} {images.shape}"
        )
    if labels.shape != (_N_DIGITS,) or labels.dtype != np.uint8:
        raise ValueError(  # pragma: no cover - guards a damaged installation
            f"digits.npz: expected labels uint8 (1797,), got {labels.dtype} {labels.shape}"
        )
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _stratified_test_mask(labels: np.ndarray, n_test: int) -> np.ndarray:
    """Boolean mask choosing ``n_test`` items, spread over classes in proportion.

    Each class gets ``floor(n_test * count / n)`` items, and the items left over
    go to the classes with the largest remainders (ties to the smaller label).
    Within a class the *first* items in ``labels`` order are chosen, so the
    caller shuffles ``labels`` beforehand.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quotas = n_test * counts / labels.size
    take = np.floor(quotas).astype(np.int64)
    leftover = n_test - int(take.sum())
    order = np.argsort(-(quotas - take), kind="stable")
    take[order[:leftover]] += 1
    mask = np.zeros(labels.size, dtype=bool)
    for cls, k in zip(classes, take):
        mask[np.flatnonzero(labels == cls)[:k]] = True
    return mask


def load_digits(
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    flatten: bool = True,
    dtype: Any = np.float64,
) -> DatasetSplit:
    """Load the 8x8 digits as a seeded, stratified train/test split.

    Args:
        test_fraction: share of the 1797 images put in the test set, strictly
            between 0 and 1. The test set gets ``round(test_fraction * 1797)``
            images (at least 1, at most 1796), spread over the 10 classes in
            proportion to their sizes.
        seed: non-negative integer seeding ``np.random.default_rng``. The same
            seed always gives bit-identical arrays; both sets are in shuffled
            order.
        flatten: if True, ``X`` has shape ``(N, 64)``; if False, ``(N, 1, 8, 8)``
            (NCHW, one channel, for convolutional networks).
        dtype: floating dtype of ``X_train`` and ``X_test``.

    Returns:
        A :class:`DatasetSplit` whose ``X`` arrays hold the pixels divided by 16
        (so values lie in [0, 1]) and whose ``y`` arrays hold the int64 labels
        0..9. It unpacks as ``X_train, y_train, X_test, y_test``.

    Raises:
        TypeError: for a non-numeric ``test_fraction``, a non-integer ``seed``,
            a non-bool ``flatten`` or a non-floating ``dtype``.
        ValueError: for ``test_fraction`` outside (0, 1) or a negative ``seed``.
    """
    if isinstance(test_fraction, (bool, np.bool_)) or not isinstance(
        test_fraction, numbers.Real
    ):
        raise TypeError(
            f"test_fraction must be a real number in (0, 1), got "
            f"{type(test_fraction).__name__} {test_fraction!r}"
        )
    if not (math.isfinite(test_fraction) and 0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction must lie strictly in (0, 1), got {test_fraction!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    flatten = _check_bool("flatten", flatten)
    float_dtype = _as_float_dtype(dtype)

    images, labels = _raw_digits()
    n = labels.size
    n_test = min(max(int(round(test_fraction * n)), 1), n - 1)

    perm = np.random.default_rng(int(seed)).permutation(n)
    test_mask = _stratified_test_mask(labels[perm], n_test)
    test_idx, train_idx = perm[test_mask], perm[~test_mask]

    shape = (-1, 64) if flatten else (-1, 1, 8, 8)

    def features(idx: np.ndarray) -> np.ndarray:
        X = images[idx].astype(float_dtype).reshape(shape)
        X /= _MAX_PIXEL
        return X

    return DatasetSplit(
        X_train=features(train_idx),
        y_train=labels[train_idx].astype(np.int64),
        X_test=features(test_idx),
        y_test=labels[test_idx].astype(np.int64),
    )
