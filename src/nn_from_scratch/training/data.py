"""The data of ``fit``, ``evaluate`` and ``predict``, made into batches the model takes.

``X`` is an array (a model with one input), a tuple or list with one array
per input in the model's order, a dict keyed by the names of a Graph's
Inputs (``Input(4, name="image")``), or a
:class:`~nn_from_scratch.datasets.DataLoader` whose batches are ``(inputs,
targets)`` pairs shaped so.  A :class:`Feed` hands out ``(inputs, targets)``
per batch, the inputs as a tuple in the model's order.

Data must be finite: arrays are checked once, before training, loader
batches (and the batches a transform makes) as they come, and a NaN or an
infinity is a ``ValueError`` naming the input and the sample, before any
step is taken on it.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..context import as_float_array
from ..datasets.loader import ArrayDataset, DataLoader, leaves
from ..node import Node

__all__ = ["Feed", "check_finite", "input_names", "model_inputs"]

Inputs = Tuple[Any, ...]
#: Rows scanned at a time for NaN and infinity, so that the check of a large array allocates little.
_FINITE_CHUNK = 4096


def input_names(model: Node) -> Optional[Tuple[str, ...]]:
    """The names of a model's inputs, in its order (a Graph's Input names, ``input_<i>`` where none was given).

    None for a model that does not name its inputs (a Sequential, a layer).
    """
    names = getattr(model, "input_names", None)  # a Graph's
    return None if names is None else tuple(names)


def model_inputs(model: Node, X: Any, name: str) -> Tuple[Inputs, List[str]]:
    """``X`` as one value per input of ``model``, in its order, and the name of each (``X``, ``X[1]``, ``X['image']``)."""
    count = getattr(model, "num_inputs", 1)
    if isinstance(X, Mapping):
        names = input_names(model)
        if names is None:
            raise TypeError(f"{name} is a dict, but a {type(model).__name__} does not name its inputs: give an array "
                            "(a dict's keys are the names of a Graph's Inputs)")
        missing = [key for key in names if key not in X]
        extra = [key for key in X if key not in names]
        if missing or extra:
            raise ValueError(f"{name} must hold one array per input of the model, named {list(names)}; "
                             + "; ".join(([f"missing {missing}"] if missing else [])
                                         + ([f"unknown {extra}"] if extra else [])))
        return tuple(X[key] for key in names), [f"{name}[{key!r}]" for key in names]
    if count == 1:
        return (X,), [name]
    if not isinstance(X, (tuple, list)) or len(X) != count:
        names = input_names(model)
        got = f"a {type(X).__name__} of {len(X)}" if isinstance(X, (tuple, list)) else f"a {type(X).__name__}"
        raise ValueError(f"the model takes {count} inputs: give {name} as a tuple of {count} arrays in its order"
                         + (f" or a dict keyed by {list(names)}" if names else "") + f", got {got}")
    return tuple(X), [f"{name}[{i}]" for i in range(count)]


def first_non_finite(array: Any) -> Optional[Tuple[int, Any]]:
    """``(sample, value)`` of the first NaN or infinity of a NumPy array along its first axis, else None."""
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fc" or array.ndim == 0:
        return None  # integers and booleans are finite; other arrays are the model's to refuse
    for start in range(0, len(array), _FINITE_CHUNK):
        part = array[start:start + _FINITE_CHUNK]
        bad = ~np.isfinite(part).reshape(len(part), -1).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            values = np.asarray(part[row])
            return start + row, values[~np.isfinite(values)].flat[0]
    return None


def check_finite(named: Sequence[Tuple[str, Any]], where: Callable[[int], str] = lambda row: f"sample {row}") -> None:
    """``ValueError`` naming the array and the sample (``where(row)``) of the first NaN or infinity, if any."""
    for name, array in named:
        found = first_non_finite(array)
        if found is not None:
            row, value = found
            raise ValueError(f"{name} holds {value} at {where(row)}: training needs finite data; "
                             "clean or drop that sample")


def _same_samples(named: Sequence[Tuple[str, Any]], allow_empty: bool = False) -> int:
    first_name, first = named[0]
    for name, array in named:
        if np.ndim(array) == 0 or np.ndim(first) == 0 or len(array) != len(first):
            raise ValueError(f"{first_name} and {name} must have the same number of samples, got shapes "
                             f"{np.shape(first)} and {np.shape(array)}")
    if len(first) == 0 and not allow_empty:
        raise ValueError(f"{first_name} is empty")
    return len(first)


class Feed:
    """The batches of one data set: ``(inputs, targets)`` per batch, the inputs a tuple in the model's order.

    Made by :meth:`arrays` (checked, converted and finite-checked at once)
    or :meth:`loader` (a user's DataLoader, each batch checked as it
    comes).  ``transform(batch, rng)`` makes each batch of a one-input
    model ready; it gets the loader's generator while training and None
    when scoring.
    """

    def __init__(self, model: Node, source: DataLoader, name: str, from_user: bool,
                 transform: Optional[Callable[..., Any]] = None, targets: bool = True) -> None:
        self.model, self.source, self.name, self.from_user = model, source, name, from_user
        self.transform, self.targets = transform, targets
        self.samples: Optional[int] = source.samples
        self.steps: Optional[int] = None if self.samples is None else len(source)

    # ------------------------------------------------------------ making one
    @classmethod
    def arrays(cls, model: Node, X: Any, y: Any, name: str, *, transform: Optional[Callable[..., Any]] = None,
               batch_size: int = 32, shuffle: bool = False, check: bool = True, allow_empty: bool = False,
               make_targets: Any = None) -> "Feed":
        """A feed over arrays: ``X`` shaped for the model, ``y`` (None: inputs only) as ``make_targets(y, name)`` makes it."""
        target_name = name.replace("X", "y")
        xs, names = model_inputs(model, X, name)
        if transform is None:
            xs = tuple(as_float_array(x, n) for x, n in zip(xs, names))
        else:
            xs = tuple(np.asarray(x) for x in xs)  # kept as stored (uint8 images): each batch is converted when drawn
        named = list(zip(names, xs))
        if y is not None:
            y = make_targets(y, target_name) if make_targets is not None else np.asarray(y)
            named += leaves(y, target_name)
        _same_samples(named, allow_empty)
        if check:
            check_finite(named)
        dataset = ArrayDataset(xs, y)
        return cls(model, DataLoader(dataset, batch_size, shuffle), name, False, transform, y is not None)

    @classmethod
    def loader(cls, model: Node, loader: DataLoader, name: str, *, transform: Optional[Callable[..., Any]] = None,
               targets: bool = True) -> "Feed":
        """A feed over a user's DataLoader; ``targets``: its batches are ``(inputs, targets)`` pairs."""
        dataset = loader.dataset
        if targets and getattr(dataset, "has_targets", True) is False:
            raise TypeError(f"{name} is a DataLoader over an ArrayDataset without targets; give it y: "
                            "ArrayDataset(X, y)")
        return cls(model, loader, name, True, transform, targets)

    def sample_shapes(self) -> Optional[Tuple[Tuple[int, ...], ...]]:
        """The shape of one sample of each input, where it is known before any batch is drawn (arrays, no
        transform); None otherwise."""
        dataset = self.source.dataset
        if self.transform is not None or not isinstance(dataset, ArrayDataset):
            return None
        return tuple(tuple(array.shape[1:]) for _, array in leaves(dataset.X, "X"))

    def split(self, fraction: Any, generator: np.random.Generator, validation_batch: int) -> Tuple["Feed", "Feed"]:
        """``(training, validation)``: the last ``fraction`` of the samples held out, as Keras's ``validation_split``.

        The training part is shuffled (if this feed is) by ``generator``; the
        validation part is read in order, ``validation_batch`` samples at a time.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (float, int, np.floating)) or not 0 < fraction < 1:
            raise ValueError(f"validation_split must be a fraction between 0 and 1, got {fraction!r}")
        n = self.samples
        cut = int(n * (1 - float(fraction)))
        if cut == 0 or cut == n:
            raise ValueError(f"validation_split={fraction!r} of {n} samples leaves "
                             f"{'no training' if cut == 0 else 'no validation'} sample")
        dataset = self.source.dataset
        parts = []
        for rows, size, shuffle in ((slice(0, cut), self.source.batch_size, self.source.shuffle),
                                    (slice(cut, n), validation_batch, False)):
            x, y = dataset.take(rows) if dataset.has_targets else (dataset.take(rows), None)
            loader = DataLoader(ArrayDataset(x, y), size, shuffle, rng=generator)
            parts.append(type(self)(self.model, loader, self.name, False, self.transform, self.targets))
        return parts[0], parts[1]

    # ------------------------------------------------------------ using one
    @property
    def generator(self) -> np.random.Generator:
        """The generator that orders the batches (and that a training transform draws from)."""
        return self.source.rng

    @generator.setter
    def generator(self, value: np.random.Generator) -> None:
        self.source.rng = value

    def fit_info(self) -> Dict[str, Any]:
        """What a resume must repeat: the batch size, the shuffling and the samples (and ``drop_last`` when on)."""
        info = {"batch_size": int(self.source.batch_size), "shuffle": bool(self.source.shuffle),
                "samples": self.samples}
        if self.source.drop_last:
            info["drop_last"] = True
        return info

    def batches(self, training: bool) -> Iterator[Tuple[Inputs, Any]]:
        """One pass: ``(inputs, targets)`` per batch (targets None for a feed of inputs only)."""
        rng = self.source.rng if training else None
        for number, batch in enumerate(self.source, 1):
            if self.targets:
                if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                    raise TypeError(f"{self.name}: a DataLoader for training or scoring must give (inputs, targets) "
                                    f"batches, got a {type(batch).__name__}" + (
                                        f" of {len(batch)} parts" if isinstance(batch, (tuple, list)) else ""))
                x, y = batch
            else:
                x, y = (batch[0] if self.from_user and isinstance(batch, (tuple, list)) and len(batch) == 2
                        and getattr(self.source.dataset, "has_targets", True) else batch), None
            xs = model_inputs(self.model, x, self.name)[0] if self.from_user else x
            if self.transform is not None:
                xs = (self.transform(xs[0], rng),)
            if self.from_user or self.transform is not None:
                self._check_batch(xs, y, number)
            yield xs, y

    def _check_batch(self, xs: Inputs, y: Any, number: int) -> None:
        names = model_inputs(self.model, xs if len(xs) > 1 else xs[0], self.name)[1]
        if not self.from_user:  # the arrays were checked; what a transform made of them is checked here
            names = [f"the transformed batch of {name}" for name in names]
        target_name = self.name.replace("X", "y")
        named = list(zip(names, xs)) + ([] if y is None or not self.from_user else
                                        leaves(y if not isinstance(y, list) else tuple(y), target_name))
        indices = self.source.indices

        def where(row: int) -> str:
            if isinstance(indices, np.ndarray):
                return f"sample {int(indices[row])} (row {row} of batch {number})"
            if isinstance(indices, slice):
                return f"sample {indices.start + row} (row {row} of batch {number})"
            return f"row {row} of batch {number}"

        check_finite(named, where)
