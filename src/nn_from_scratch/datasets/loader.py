"""Datasets and the DataLoader: data of any shape, batched with a seeded shuffle (torch's Dataset and DataLoader).

* A *map-style* dataset has ``__len__`` and ``__getitem__(index)`` (one
  sample); :class:`ArrayDataset` is one over arrays, tuples of arrays or
  dicts of arrays, for inputs ``X`` and, optionally, targets ``y``.
* An *iterable* dataset (:class:`IterableDataset`) hands out its samples in
  order, for data read a piece at a time (files larger than memory);
  :class:`GeneratorDataset` makes one from a function that starts a fresh
  pass, drawing any randomness from the generator it is given.
* :class:`DataLoader` groups samples into batches: shuffled with its own
  generator (``rng``: a Generator or a seed, so a seed repeats the order
  and a training checkpoint saves its state), ``drop_last`` to leave out a
  short last batch, and :func:`default_collate` to stack samples made of
  arrays, tuples and dicts (a dataset with ``take(indices)``, as
  :class:`ArrayDataset`, hands out a whole batch at once instead).

A batch of ``ArrayDataset(X, y)`` is ``(X_batch, y_batch)``, each shaped as
``X`` and ``y`` were (an array, a tuple or a dict of batches); that of
``ArrayDataset(X)`` is ``X_batch`` alone.  ``NeuralNetwork.fit``,
``evaluate`` and ``predict`` take a DataLoader whose batches are ``(inputs,
targets)`` pairs.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..random import as_generator
from .batching import _check_positive_int

__all__ = ["ArrayDataset", "DataLoader", "Dataset", "GeneratorDataset", "IterableDataset", "default_collate",
           "leaves"]

#: An array, or a tuple/list or str-keyed dict of them (nested as deep as wanted).
Structure = Any
Index = Union[slice, np.ndarray]


def leaves(value: Structure, name: str) -> List[Tuple[str, Any]]:
    """``(name, array)`` for every array in ``value``: ``X``, ``X[0]``, ``X['image']``, in order."""
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} is a dict whose keys must be strings, got {type(key).__name__} {key!r}")
            found.extend(leaves(item, f"{name}[{key!r}]"))
        return found
    if isinstance(value, tuple):
        return [leaf for i, item in enumerate(value) for leaf in leaves(item, f"{name}[{i}]")]
    return [(name, value)]


def _map(function: Callable[[Any], Any], value: Structure) -> Structure:
    """``value`` with ``function`` applied to each array, its tuples and dicts kept."""
    if isinstance(value, Mapping):
        return {key: _map(function, item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_map(function, item) for item in value)
    return function(value)


def _as_arrays(value: Structure) -> Structure:
    """Tuples and lists of arrays as tuples, dicts as dicts, everything else as a NumPy array (lists of numbers too)."""
    if isinstance(value, Mapping):
        return {key: _as_arrays(item) for key, item in value.items()}
    if isinstance(value, tuple) or (isinstance(value, list) and value and all(
            isinstance(item, (np.ndarray, tuple, Mapping)) for item in value)):
        return tuple(_as_arrays(item) for item in value)
    return np.asarray(value)


class Dataset:
    """A map-style dataset: ``len(dataset)`` samples, ``dataset[i]`` the i-th; subclass and define both."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class ArrayDataset(Dataset):
    """Samples along the first axis of ``X`` (and ``y``): arrays, tuples or lists of arrays, or str-keyed dicts.

    ``ArrayDataset(X, y)[i]`` is ``(x_i, y_i)``, each shaped as ``X`` and
    ``y``; without ``y`` it is ``x_i``.  Every array must have the same
    number of samples (``ValueError`` naming the first two that differ); a
    0-d array or an empty dict or tuple is refused.  The arrays are kept as
    given (no copy, no conversion: uint8 images stay uint8, a memory-mapped
    file stays on disk); :meth:`take` cuts a whole batch at once.
    """

    def __init__(self, X: Structure, y: Structure = None) -> None:
        self.X, self.y = _as_arrays(X), None if y is None else _as_arrays(y)
        found = leaves(self.X, "X")
        if not found:
            raise ValueError("ArrayDataset needs at least one array in X")
        found += [] if self.y is None else leaves(self.y, "y")
        first_name, first = found[0]
        for name, array in found:
            if array.ndim == 0 or first.ndim == 0 or len(array) != len(first):
                raise ValueError(f"{first_name} and {name} must have the same number of samples, got shapes "
                                 f"{first.shape} and {array.shape}")
        self.length = len(first)

    @property
    def has_targets(self) -> bool:
        """Whether samples are ``(x, y)`` pairs (the dataset was given ``y``)."""
        return self.y is not None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
            raise TypeError(f"ArrayDataset index must be an int, got {type(index).__name__}")
        if not -self.length <= index < self.length:
            raise IndexError(f"ArrayDataset index {index} is out of range for {self.length} samples")
        return self.take(int(index))

    def take(self, indices: Union[int, Index]) -> Any:
        """The samples at ``indices`` (a slice, an index array or one int), batched as the dataset is shaped."""
        x = _map(lambda a: a[indices], self.X)
        return x if self.y is None else (x, _map(lambda a: a[indices], self.y))


class IterableDataset:
    """A dataset read in order, for data that do not fit in memory: subclass and define ``__iter__``.

    A :class:`DataLoader` calls :meth:`stream` at the start of each pass;
    it calls ``iter(self)`` unless a subclass draws from the loader's
    generator (see :class:`GeneratorDataset`).  ``length``, when known,
    is the number of samples (the loader's ``len``, a progress bar's total).
    """

    length: Optional[int] = None

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def stream(self, rng: np.random.Generator) -> Iterator[Any]:
        """One pass over the samples; ``rng`` is the loader's generator (this default ignores it)."""
        return iter(self)


class GeneratorDataset(IterableDataset):
    """Samples from ``make(rng)``, called at the start of each pass to start a new one (a generator function).

    ``make`` gets the loader's generator: draw any randomness from it (the
    order of a file's chunks, say), so that a seed repeats the pass and a
    training checkpoint, which saves that generator, resumes it exactly.
    ``length`` is the number of samples when known (None: unknown).
    """

    def __init__(self, make: Callable[[np.random.Generator], Iterable[Any]], length: Optional[int] = None) -> None:
        if not callable(make):
            raise TypeError(f"GeneratorDataset needs a function make(rng) that starts a pass, got "
                            f"{type(make).__name__}")
        if length is not None:
            if isinstance(length, (bool, np.bool_)) or not isinstance(length, numbers.Integral) or length < 0:
                raise ValueError(f"length must be a non-negative int or None, got {length!r}")
            length = int(length)
        self.make, self.length = make, length

    def __iter__(self) -> Iterator[Any]:
        return self.stream(np.random.default_rng())

    def stream(self, rng: np.random.Generator) -> Iterator[Any]:
        return iter(self.make(rng))


def default_collate(samples: List[Any]) -> Any:
    """Samples stacked along a new first axis, keeping their structure: arrays and numbers, tuples, dicts.

    All samples must share one structure (the same tuple length, the same
    dict keys; ``ValueError`` otherwise); anything but arrays, numbers,
    tuples, lists and dicts is refused with ``TypeError``.
    """
    if not samples:
        raise ValueError("default_collate needs at least one sample")
    first = samples[0]
    if isinstance(first, Mapping):
        keys = list(first)
        for sample in samples:
            if not isinstance(sample, Mapping) or list(sample) != keys:
                raise ValueError(f"samples to collate must be dicts with the same keys {keys}, got {sample!r:.80}")
        return {key: default_collate([sample[key] for sample in samples]) for key in keys}
    if isinstance(first, (tuple, list)):
        for sample in samples:
            if not isinstance(sample, (tuple, list)) or len(sample) != len(first):
                raise ValueError(f"samples to collate must be tuples of {len(first)} parts, got {sample!r:.80}")
        return tuple(default_collate([sample[i] for sample in samples]) for i in range(len(first)))
    if isinstance(first, (np.ndarray, np.generic, numbers.Number)) and not isinstance(first, bool):
        return np.stack([np.asarray(sample) for sample in samples])
    raise TypeError(f"default_collate stacks arrays, numbers, tuples and dicts, got {type(first).__name__}")


class DataLoader:
    """Batches of a dataset: ``for batch in DataLoader(dataset, batch_size=32, shuffle=True, rng=0)``.

    ``shuffle`` draws a new order of a map-style dataset at the start of
    each pass from ``rng`` (a Generator, used as it is, or a seed; None: an
    unseeded one), which the loader keeps as ``loader.rng`` (a training
    checkpoint saves its state, and a transform of ``fit`` draws from it
    too).  An iterable dataset is read in its own order (``shuffle=True`` is
    refused) and gets ``loader.rng`` through its ``stream``.  ``drop_last``
    leaves out the last batch when it is short.  ``collate_fn(samples)``
    makes a batch of a list of samples (default :func:`default_collate`);
    without one, a dataset with ``take(indices)`` cuts each batch at once.
    ``loader.indices`` holds the dataset indices of the last batch handed
    out (None for an iterable dataset), for error messages.
    """

    def __init__(self, dataset: Any, batch_size: int = 32, shuffle: bool = False, *, drop_last: bool = False,
                 rng: Any = None, collate_fn: Optional[Callable[[List[Any]], Any]] = None) -> None:
        self.iterable = isinstance(dataset, IterableDataset)
        if not self.iterable and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader needs a Dataset (__len__ and __getitem__) or an IterableDataset, got "
                            f"{type(dataset).__name__}")
        self.batch_size = _check_positive_int("batch_size", batch_size)
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        if shuffle and self.iterable:
            raise ValueError("an IterableDataset is read in its own order: shuffle=True is for map-style datasets "
                             "(draw any order inside the dataset from the generator its stream gets)")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable as collate_fn(samples), got {type(collate_fn).__name__}")
        self.dataset, self.shuffle, self.drop_last = dataset, bool(shuffle), bool(drop_last)
        self.collate_fn, self.rng = collate_fn, as_generator(rng)
        self.indices: Optional[Index] = None

    @property
    def samples(self) -> Optional[int]:
        """The dataset's number of samples (None for an iterable dataset of unknown length)."""
        return getattr(self.dataset, "length", None) if self.iterable else len(self.dataset)

    def __len__(self) -> int:
        """The number of batches of a pass (``TypeError`` for an iterable dataset of unknown length)."""
        samples = self.samples
        if samples is None:
            raise TypeError("this DataLoader's IterableDataset has no length")
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        """A pass over the batches; a shuffled order is drawn now, when the pass starts."""
        if self.iterable:
            return self._stream(self.dataset.stream(self.rng))
        n = len(self.dataset)
        order = self.rng.permutation(n) if self.shuffle else None
        return self._mapped(n, order)

    def _batch(self, samples: List[Any]) -> Any:
        return (self.collate_fn or default_collate)(samples)

    def _mapped(self, n: int, order: Optional[np.ndarray]) -> Iterator[Any]:
        take = getattr(self.dataset, "take", None) if self.collate_fn is None else None
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            index: Index = slice(start, min(start + self.batch_size, n)) if order is None else \
                order[start:start + self.batch_size]
            self.indices = index
            if take is not None:
                yield take(index)
            else:
                rows = range(n)[index] if isinstance(index, slice) else index
                yield self._batch([self.dataset[int(i)] for i in rows])

    def _stream(self, samples: Iterator[Any]) -> Iterator[Any]:
        self.indices = None
        pending: List[Any] = []
        for sample in samples:
            pending.append(sample)
            if len(pending) == self.batch_size:
                yield self._batch(pending)
                pending = []
        if pending and not self.drop_last:
            yield self._batch(pending)
