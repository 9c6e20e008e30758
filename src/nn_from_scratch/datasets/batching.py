"""Mini-batch iteration over arrays, optionally shuffled with a seeded generator."""
from __future__ import annotations

import numbers
from typing import Any, Iterator, Optional, Tuple, Union, overload

import numpy as np

from ..random import as_generator

__all__ = ["iterate_minibatches", "num_batches"]

RngLike = Union[np.random.Generator, int, None]


def _check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as int if it is a positive integer, else raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def num_batches(n: int, batch_size: int) -> int:
    """Number of mini-batches for ``n`` items: ``ceil(n / batch_size)``.

    The last, partial batch counts, matching :func:`iterate_minibatches`.

    Args:
        n: number of items, a non-negative int.
        batch_size: a positive int.

    Raises:
        TypeError: if either is not an integer.
        ValueError: if ``n`` is negative or ``batch_size`` is not positive.
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be a non-negative int, got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"n must be a non-negative int, got {n}")
    batch_size = _check_positive_int("batch_size", batch_size)
    return -(-int(n) // batch_size)


@overload
def iterate_minibatches(
    X: Any, y: None = None, batch_size: int = 32, *, shuffle: bool = True, rng: RngLike = None
) -> Iterator[np.ndarray]: ...


@overload
def iterate_minibatches(
    X: Any, y: Any, batch_size: int = 32, *, shuffle: bool = True, rng: RngLike = None
) -> Iterator[Tuple[np.ndarray, np.ndarray]]: ...


def iterate_minibatches(
    X: Any,
    y: Optional[Any] = None,
    batch_size: int = 32,
    *,
    shuffle: bool = True,
    rng: RngLike = None,
) -> Iterator[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]:
    """Iterate over ``X`` (and ``y``) in mini-batches along the first axis.

    Arguments are checked when this function is called, not at the first
    ``next()``. Every item appears in exactly one batch; all batches have
    ``batch_size`` items except possibly the last, which is kept even when
    partial (so there are :func:`num_batches` ``(len(X), batch_size)`` of them).

    Args:
        X: array-like with the items along axis 0 (converted with ``np.asarray``).
        y: optional array-like of targets, ``len(y) == len(X)``.
        batch_size: a positive int.
        shuffle: if True, visit the items in a random order drawn from ``rng``
            (batches are then copies); if False, in order (batches are views).
        rng: only used when ``shuffle`` is True. A ``numpy.random.Generator``
            is used as is, so passing the same one on every epoch gives a new
            order each epoch; an int is a seed for ``np.random.default_rng``, so
            the same int gives the same order; None draws a fresh, unseeded
            generator (a different order each call, not reproducible).

    Yields:
        ``(X_batch, y_batch)`` when ``y`` is given, else ``X_batch`` alone.

    Raises:
        TypeError: for a non-integer ``batch_size``, a bad ``rng``, or a 0-d ``X``/``y``.
        ValueError: for a non-positive ``batch_size``, a negative seed, or
            ``len(X) != len(y)`` (the message names both lengths).
    """
    X_arr = np.asarray(X)
    if X_arr.ndim == 0:
        raise TypeError("X must have at least one dimension (items along axis 0), got a scalar")
    y_arr = None
    if y is not None:
        y_arr = np.asarray(y)
        if y_arr.ndim == 0:
            raise TypeError("y must have at least one dimension (items along axis 0), got a scalar")
        if len(y_arr) != len(X_arr):
            raise ValueError(
                f"X and y must have the same length, got len(X)={len(X_arr)} and len(y)={len(y_arr)}"
            )
    batch_size = _check_positive_int("batch_size", batch_size)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__} {shuffle!r}")
    order = as_generator(rng).permutation(len(X_arr)) if shuffle else None
    return _batches(X_arr, y_arr, batch_size, order)


def _batches(
    X: np.ndarray, y: Optional[np.ndarray], batch_size: int, order: Optional[np.ndarray]
) -> Iterator[Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]:
    """The generator behind :func:`iterate_minibatches` (arguments already checked)."""
    n = len(X)
    for start in range(0, n, batch_size):
        idx: Union[slice, np.ndarray]
        if order is None:
            idx = slice(start, start + batch_size)
        else:
            idx = order[start : start + batch_size]
        if y is None:
            yield X[idx]
        else:
            yield X[idx], y[idx]
