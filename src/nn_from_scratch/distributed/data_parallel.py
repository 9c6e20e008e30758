"""DataParallel: a model and its optimizer trained by several processes, each on its part of every batch.

.. code-block:: python

    parallel = DataParallel(model, optimizer)                  # in every process, after building both alike
    network = NeuralNetwork(model, loss, optimizer, scheduler, reduction=parallel)
    network.fit(X, y, batch_size=256, rng=0, checkpoint="run.npz")  # 256 over all processes

and ``mpiexec -n 4 python -m mpi4py train.py``.  Every process draws the
same global batches (the order of one process, seeded alike); each trains
on its part (:mod:`.sampler`); the backward pass leaves each process's
gradient of its part, scaled by its share of the batch, which the
reduction point of the step (:mod:`nn_from_scratch.training.reduction`)
sums across the processes (:mod:`.buckets`); every process then takes the
same optimizer step on the same gradient.  The result is that of one
process at the whole batch, to the rounding of the sums.

What is the same on every process, and how it stays so:

* the parameters, buffers and optimizer state: sent from process 0 when
  DataParallel is made and when ``fit`` starts (after a resume), and the
  same steps after that; checked at the end of every epoch (a digest of the
  parameters), so that an MPI whose sums differ between processes is found;
* the batch order and a transform's randomness: the training generator is
  set to process 0's when ``fit`` starts;
* the step's verdict (the loss and the gradients finite) and Ctrl-C: agreed
  at every step, so that all processes stop together;
* the epoch's scores: each process's sums, added up once, on process 0 and
  sent out;
* BatchNorm: with ``sync_batchnorm=True`` the batch statistics of the whole
  batch (:mod:`.sync_batchnorm`); without, each process normalises its part
  by its own statistics (a smaller batch than one process would see), and
  the running statistics are process 0's, sent to the others at the end of
  each epoch (as PyTorch's DistributedDataParallel sends its buffers);
* Dropout masks are not: each process draws its own, for its part, from a
  stream that process 0's generator seeds at the start of every epoch (so a
  resumed run draws the same masks as one never stopped).
"""
from __future__ import annotations

import hashlib
from typing import Any, List, Optional, Tuple

import numpy as np

from ..node import Node
from ..training.generators import node_generators
from ..training.reduction import GradientReduction
from ..training.steps import Score
from .buckets import GradientBuckets
from .communicator import DEFAULT_TIMEOUT, Communicator, DeferredInterrupt
from .sampler import check_batches, split_batch
from .sync_batchnorm import convert_sync_batchnorm

__all__ = ["DEFAULT_BUCKET_MB", "DataParallel"]

#: The default size of a gradient bucket (PyTorch's DistributedDataParallel uses 25 MB).
DEFAULT_BUCKET_MB = 4.0
#: The verdict of a step: nothing wrong, the loss, or a gradient not finite (the largest of all processes wins).
_FINE, _LOSS, _GRADIENT = 0, 1, 2


class DataParallel(GradientReduction):
    """Data-parallel training of ``model`` with ``optimizer`` over MPI (the module); a NeuralNetwork's ``reduction``.

    ``comm``: an mpi4py communicator or a :class:`Communicator` (default
    ``MPI.COMM_WORLD``).  ``bucket_mb``: the size of a gradient bucket in
    MiB.  ``overlap``: send each bucket as soon as the backward pass has
    filled it (else all after it).  ``sync_batchnorm``: synchronise the
    model's batch norms (in place).  ``timeout``: seconds a process waits
    for the others in one collective before it stops them all.  Every
    process makes its DataParallel at the same point, from a model and
    optimizer built alike; process 0's parameters, buffers and optimizer
    state are sent to the others now.
    """

    collective = True

    def __init__(self, model: Node, optimizer: Any, *, comm: Any = None, bucket_mb: float = DEFAULT_BUCKET_MB,
                 overlap: bool = True, sync_batchnorm: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not isinstance(model, Node):
            raise TypeError(f"model must be a Node, got {type(model).__name__}")
        for name, flag in (("overlap", overlap), ("sync_batchnorm", sync_batchnorm)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) or not 0 < bucket_mb < float("inf"):
            raise ValueError(f"bucket_mb must be a positive number of MiB, got {bucket_mb!r}")
        named = list(model.named_parameters())
        if not named:
            raise ValueError("the model has no parameters to train")
        for name, p in named:
            if not isinstance(p.value, np.ndarray):
                raise TypeError(f"DataParallel trains NumPy parameters; {name!r} lives in "
                                f"{type(p.value).__module__.split('.')[0]}")
        own = {id(p) for _, p in named}
        stepped = getattr(optimizer, "params", None)
        if stepped is None or not callable(getattr(optimizer, "state_dict", None)):
            raise TypeError(f"optimizer must be an nn_from_scratch optimizer (params, state_dict), got "
                            f"{type(optimizer).__name__}")
        strangers = [i for i, p in enumerate(stepped) if id(p) not in own]
        if strangers:
            raise ValueError(f"the optimizer steps parameters the model does not hold (its parameters {strangers}): "
                             "their gradients would never be summed")
        self.communicator = comm if isinstance(comm, Communicator) else Communicator(comm, timeout=timeout)
        self.rank, self.size = self.communicator.rank, self.communicator.size
        self.main = self.rank == 0
        self.model, self.optimizer = model, optimizer
        self.sync_batchnorm = sync_batchnorm
        if sync_batchnorm:
            convert_sync_batchnorm(model, self.communicator)
        self.buckets = GradientBuckets(named, self.communicator, int(bucket_mb * 2**20), overlap)
        self.interrupt = DeferredInterrupt()
        self._share: Tuple[int, int] = (1, 1)
        self._factors: List[float] = []
        self._epochs_checked = 0
        self.broadcast_state()

    def __repr__(self) -> str:
        return (f"DataParallel(process {self.rank} of {self.size}, {self.buckets.describe()}, "
                f"overlap={self.buckets.overlap}, sync_batchnorm={self.sync_batchnorm})")

    # ------------------------------------------------------------ the same start everywhere
    def broadcast_state(self) -> None:
        """Process 0's parameters, buffers and optimizer state, on every process."""
        if self.size == 1:
            return
        for _, p in self.model.named_parameters():
            self._broadcast_array(p.value, "the parameters sent from process 0")
        for _, buffer in self.model.named_buffers():
            self._broadcast_array(buffer, "the buffers sent from process 0")
        state = self.communicator.broadcast(self.optimizer.state_dict() if self.main else None,
                                            "the optimizer state sent from process 0")
        if not self.main:
            self.optimizer.load_state_dict(state)

    def _broadcast_array(self, array: np.ndarray, what: str) -> None:
        if array.flags.c_contiguous:
            self.communicator.broadcast_array(array, what)
        else:
            copy = np.ascontiguousarray(array)
            self.communicator.broadcast_array(copy, what)
            array[...] = copy

    def _seed_dropout(self) -> None:
        """Each process > 0: its own stream for every generator of the model, seeded by process 0's (see the module)."""
        generators = [g for _, g in node_generators(self.model)]
        if self.size == 1 or not generators:
            return
        states = self.communicator.broadcast([g.bit_generator.state for g in generators] if self.main else None,
                                             "the random generators sent from process 0")
        if self.main:
            return
        for g, state in zip(generators, states):
            source = np.random.Generator(type(g.bit_generator)())
            source.bit_generator.state = state
            words = source.integers(0, 2**63, size=4, dtype=np.int64)
            seed = np.random.SeedSequence([int(w) for w in words], spawn_key=(self.rank,))
            g.bit_generator.state = type(g.bit_generator)(seed).state

    # ------------------------------------------------------------ the reduction point (training/reduction.py)
    def begin(self, network: Any, train: Any) -> None:
        info = train.fit_info()
        check_batches(info.get("samples"), info["batch_size"], self.size, bool(info.get("drop_last")))
        self._factors = []
        for loss in network.objective.losses:
            if loss.reduction not in ("mean", "sum"):
                raise ValueError(f"data-parallel training sums the losses of the processes: a {type(loss).__name__} "
                                 f"with reduction={loss.reduction!r} has no single value to train on")
            self._factors.append(loss.reduction == "mean")
        self._epochs_checked = 0
        self.interrupt.start()
        self.broadcast_state()
        if self.size > 1:
            generator = train.generator
            state = self.communicator.broadcast(generator.bit_generator.state if self.main else None,
                                                "the batch order sent from process 0")
            generator.bit_generator.state = state
        self._seed_dropout()

    def part(self, xs: Tuple[Any, ...], y: Any, training: bool) -> Tuple[Tuple[Any, ...], Any]:
        count = len(xs[0])
        if training and count < self.size:  # every process sees this batch: all refuse it alike
            raise ValueError(f"a training batch of {count} samples cannot be shared by {self.size} processes (each "
                             f"needs at least one): give a batch size of at least {self.size}, and leave a short "
                             "last batch out (drop_last) where the data leave one")
        start, stop = split_batch(count, self.size)[self.rank]
        self._share = (stop - start, count)
        if self.size == 1:
            return xs, y
        return tuple(x[start:stop] for x in xs), _rows(y, slice(start, stop))

    def output_gradient(self, g: Any) -> Any:
        part, whole = self._share
        self.buckets.arm()
        share = part / whole
        if isinstance(g, tuple):
            return tuple(None if gi is None else (gi * share if mean else gi)
                         for gi, mean in zip(g, self._factors))
        return g * share if self._factors[0] else g

    def reduce(self) -> None:
        self.buckets.reduce()

    def agree(self, problem: Optional[str]) -> Optional[str]:
        mine = _FINE if problem is None else (_LOSS if problem.startswith("the loss") else _GRADIENT)
        verdict = np.array([mine, self.interrupt.take()], dtype=np.int64)
        self.communicator.allreduce(verdict, "the verdict on a training step", op="max")
        if verdict[1]:
            raise KeyboardInterrupt("interrupted (Ctrl-C reached a process); every process stops at this step")
        if problem is not None or verdict[0] == _FINE:
            return problem
        return ("the loss stopped being finite on another process" if verdict[0] == _LOSS
                else "a gradient stopped being finite")

    def combine(self, score: Score, training: bool) -> None:
        names = list(score.sums)
        hits = list(score.correct)
        values = np.array([score.count, *(score.sums[n] for n in names), *(score.correct[n] for n in hits),
                           self.interrupt.take()], dtype=np.float64)
        self.communicator.agreed_sum(values, "the scores of an epoch")
        if values[-1]:
            raise KeyboardInterrupt("interrupted (Ctrl-C reached a process); every process stops here")
        score.count = int(values[0])
        score.sums = dict(zip(names, (float(v) for v in values[1:1 + len(names)])))
        score.correct = dict(zip(hits, (int(v) for v in values[1 + len(names):-1])))
        if training:
            self._end_of_epoch()

    def _end_of_epoch(self) -> None:
        """The buffers of process 0 everywhere, parameters and buffers checked to be the same, new dropout streams."""
        if self.size == 1:
            return
        if not self.sync_batchnorm:
            for _, buffer in self.model.named_buffers():
                self._broadcast_array(buffer, "the buffers sent from process 0")
        digest = hashlib.blake2b(digest_size=16)
        for _, array in [*((name, p.value) for name, p in self.model.named_parameters()),
                         *self.model.named_buffers()]:
            digest.update(np.ascontiguousarray(array).tobytes())
        digests = self.communicator.gather_all(digest.hexdigest(), "the check that the parameters agree")
        self._epochs_checked += 1
        others = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if others:
            raise RuntimeError(f"after {self._epochs_checked} epoch(s) of this fit the parameters or buffers of "
                               f"process(es) {others} differ from those of process 0: this MPI's sums are not the same "
                               "bits on every process. Report it with the MPI library's name and version")
        self._seed_dropout()

    def end(self, error: Optional[BaseException] = None) -> None:
        # a run stopping on an agreed Ctrl-C drops a late one: the same press, reaching this process after its vote
        self.interrupt.stop(deliver=not isinstance(error, KeyboardInterrupt))

    def close(self) -> None:
        """Stop using MPI for this model: its gradient hooks off, its gradients in arrays of their own again."""
        self.buckets.close()


def _rows(value: Any, rows: slice) -> Any:
    """``value``'s rows ``rows``: an array, or a tuple, list or dict of them (the targets of several outputs)."""
    if isinstance(value, dict):
        return {key: _rows(item, rows) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(item, rows) for item in value)
    return value[rows]
