"""Which samples each process trains on: every global batch cut into near-equal parts, one per process.

All processes draw the same order with the same seeded generator (the
order one process alone would draw, ``rng.permutation(samples)`` each epoch,
as :class:`~nn_from_scratch.datasets.DataLoader` does), cut it into the same
global batches, and each keeps its part of every batch: a batch of ``B``
samples on ``P`` processes gives the first ``B mod P`` processes
``B // P + 1`` samples and the others ``B // P``.  So every process takes
the same number of steps, the last, shorter batch included, and the
samples of a step are exactly those of one process's step at batch ``B``.
A batch with fewer samples than processes would leave a process with
nothing to train on; it is refused, naming the batch sizes that work.

``fit`` under :class:`~nn_from_scratch.distributed.DataParallel` cuts the
batches it draws with :func:`split_batch` (so transforms and the order are
those of one process); :class:`DistributedSampler` hands out the same
parts as index arrays, for a loop of one's own that reads only its part of
a large data set.
"""
from __future__ import annotations

from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from ..datasets.batching import _check_positive_int
from ..random import as_generator

__all__ = ["DistributedSampler", "check_batches", "split_batch"]


def split_batch(count: int, size: int) -> List[Tuple[int, int]]:
    """``(start, stop)`` of each process's part of a batch of ``count`` samples: contiguous, sizes differing by one."""
    base, extra = divmod(int(count), int(size))
    bounds, start = [], 0
    for rank in range(size):
        stop = start + base + (rank < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def check_batches(samples: Optional[int], batch_size: int, size: int, drop_last: bool = False) -> None:
    """``ValueError`` when a batch of ``samples`` cut in batches of ``batch_size`` has fewer samples than processes."""
    if size <= 1:
        return
    if batch_size < size:
        raise ValueError(f"a batch of {batch_size} samples cannot be shared by {size} processes: each needs at least "
                         f"one; give a batch size of at least {size} (the batch size is the global one, over all "
                         "processes)")
    if samples is None:
        return
    last = samples % batch_size
    if 0 < last < size and not drop_last:
        raise ValueError(f"{samples} samples in batches of {batch_size} leave a last batch of {last}, fewer than the "
                         f"{size} processes (each needs at least one sample): choose a batch size that leaves "
                         f"{size} or more (or none), or leave the short batch out (drop_last)")


class DistributedSampler:
    """This process's sample indices for each step of an epoch: ``for indices in sampler: ...``.

    ``samples`` in global batches of ``batch_size`` (over all processes),
    shuffled each pass by ``rng`` (a Generator or a seed, which must be the
    same on every process: the order is drawn, not sent) unless ``shuffle``
    is false; ``rank`` and ``size`` say which process this is (a
    :class:`~nn_from_scratch.distributed.DataParallel` or a
    :class:`~nn_from_scratch.distributed.Communicator` has both).
    ``drop_last`` leaves a short last batch out.  Every process gets
    ``len(sampler)`` index arrays per pass, none empty; ``sampler.share``
    is ``(part, batch)``, the samples of the last part handed out and of
    its global batch (the weight of this process's gradient is
    ``part / batch`` for a mean loss).
    """

    def __init__(self, samples: int, batch_size: int, *, rank: int, size: int, shuffle: bool = True, rng: Any = None,
                 drop_last: bool = False) -> None:
        if isinstance(samples, (bool, np.bool_)) or not isinstance(samples, (int, np.integer)) or samples < 0:
            raise ValueError(f"samples must be a number of samples >= 0, got {samples!r}")
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.size = _check_positive_int("size", size)
        if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
            raise ValueError(f"rank must be an integer from 0 to {size - 1}, got {rank!r}")
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
        check_batches(int(samples), self.batch_size, self.size, bool(drop_last))
        self.samples, self.rank = int(samples), int(rank)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = as_generator(rng)
        self.share: Tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        """Steps per pass, the same on every process."""
        return self.samples // self.batch_size if self.drop_last else -(-self.samples // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        """One pass: the order is drawn now (as a DataLoader draws it), then cut into this process's parts."""
        order = self.rng.permutation(self.samples) if self.shuffle else np.arange(self.samples)
        stop = len(self) * self.batch_size
        return self._parts(order[:stop] if self.drop_last else order)

    def _parts(self, order: np.ndarray) -> Iterator[np.ndarray]:
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            first, last = split_batch(len(batch), self.size)[self.rank]
            self.share = (last - first, len(batch))
            yield batch[first:last]
