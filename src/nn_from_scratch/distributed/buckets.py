"""The gradients of a model in a few flat buffers, summed across processes a buffer at a time, as soon as each is ready.

Summing each parameter's gradient in a message of its own costs a latency
per tensor; one buffer for the whole model cannot start before the whole
backward pass has ended.  So the parameters are laid out, in the order the
backward pass reaches them (the reverse of ``named_parameters()``), in
*buckets* of about ``bucket_bytes`` each, one dtype per bucket, as
PyTorch's DistributedDataParallel does.  Each parameter's ``grad`` becomes
a view of its place in its bucket, so the layers write their gradients
straight into the buffer MPI sums (no copy on the way in or out; a
gradient that someone replaced with another array is copied in).

With ``overlap``, a bucket's sum starts while the backward pass goes on:
each parameter's gradient hook (:meth:`Parameter.register_grad_hook`)
fires when its last contribution of the pass lands, and the bucket whose
last parameter that was is sent (``MPI_Iallreduce``).  How many
contributions a pass brings to each parameter (two for a weight shared by
two layers) is read off the first pass, which sends every bucket after
backward; a later pass that brings a parameter more than that would have
sent its bucket too early, and is refused with a ``RuntimeError`` that
says to turn ``overlap`` off.  Without ``overlap``, every bucket is sent
after the backward pass.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ..parameter import GradHookHandle, Parameter
from .communicator import Communicator

__all__ = ["Bucket", "GradientBuckets"]


class Bucket:
    """One flat buffer: the gradients of ``params`` side by side, ``views`` their places in it."""

    def __init__(self, params: List[Parameter], names: List[str]) -> None:
        self.params, self.names = params, names
        self.flat = np.zeros(sum(p.size for p in params), dtype=params[0].dtype)
        self.views: List[np.ndarray] = []
        start = 0
        for p in params:
            self.views.append(self.flat[start:start + p.size].reshape(p.shape))
            start += p.size
        self.pending = 0
        self.started = False

    @property
    def nbytes(self) -> int:
        return int(self.flat.nbytes)


class GradientBuckets:
    """The gradients of ``named`` parameters in buckets of about ``bucket_bytes``, summed over ``communicator``."""

    def __init__(self, named: List[tuple], communicator: Communicator, bucket_bytes: int, overlap: bool) -> None:
        self.communicator, self.overlap = communicator, overlap
        self.params = [p for _, p in named]
        self.buckets: List[Bucket] = []
        group: List[tuple] = []
        for name, p in reversed(named):  # the order backward reaches them
            size = sum(q.value.nbytes for _, q in group)
            if group and (p.dtype != group[0][1].dtype or size + p.value.nbytes > bucket_bytes):
                self.buckets.append(Bucket([q for _, q in group], [n for n, _ in group]))
                group = []
            group.append((name, p))
        if group:
            self.buckets.append(Bucket([q for _, q in group], [n for n, _ in group]))
        self._where: Dict[int, Bucket] = {}
        for bucket in self.buckets:
            for p, view in zip(bucket.params, bucket.views):
                view[...] = p.grad
                p.grad = view  # the layers now write into the buffer itself
                self._where[id(p)] = bucket
        self._handles: List[GradHookHandle] = [p.register_grad_hook(self._ready) for p in self.params]
        #: Contributions per pass of each parameter (in ``params`` order), read off the first pass.
        self.counts: Optional[List[int]] = None
        self._before: List[int] = []
        self._armed = False
        self._requests: List[Any] = []

    def arm(self) -> None:
        """A backward pass starts: count its contributions and, with ``overlap``, send the buckets as they fill."""
        if self._requests:
            raise RuntimeError("a gradient reduction is still under way: reduce() ends one before the next pass")
        self._before = [p.contributions for p in self.params]
        for bucket in self.buckets:
            bucket.pending, bucket.started = len(bucket.params), False
        if self.overlap and self.counts is not None:
            self._armed = True
            for p, count in zip(self.params, self.counts):
                p.expect(count)

    def _ready(self, p: Parameter) -> None:
        """A parameter's gradient of this pass is complete; its bucket is sent when it was the last one missing."""
        if not self._armed:
            return
        bucket = self._where[id(p)]
        bucket.pending -= 1
        if bucket.pending == 0:
            self._start(bucket)

    def _start(self, bucket: Bucket) -> None:
        for p, view in zip(bucket.params, bucket.views):
            if p.grad is not view:  # replaced by another array since: its values go in, and the view comes back
                view[...] = p.grad
                p.grad = view
        bucket.started = True
        self._requests.append(self.communicator.start_sum(bucket.flat))
        self.communicator.progress(self._requests)  # MPI moves a started sum on only inside its own calls

    def reduce(self) -> None:
        """After the backward pass: send what is not sent yet, wait for every sum; each ``grad`` is then the sum."""
        self._armed = False
        for bucket in self.buckets:
            if not bucket.started:
                self._start(bucket)
        requests, self._requests = self._requests, []
        self.communicator.wait(requests, "the gradient reduction of a training step")
        landed = [p.contributions - before for p, before in zip(self.params, self._before)]
        if self.counts is None:
            self.counts = landed
            return
        if self.overlap:
            for p, count, expected in zip(self.params, landed, self.counts):
                if count > expected:
                    name = self._name(p)
                    raise RuntimeError(
                        f"parameter {name!r} got {count} gradient contributions in this backward pass and {expected} "
                        "in the first one: its bucket was sent before its gradient was complete. A model that uses "
                        "its parameters differently from pass to pass needs DataParallel(..., overlap=False)")

    def _name(self, p: Parameter) -> str:
        bucket = self._where[id(p)]
        return bucket.names[next(i for i, q in enumerate(bucket.params) if q is p)]

    def close(self) -> None:
        """Take the hooks off and give every parameter a gradient array of its own again (a copy of its view)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for bucket in self.buckets:
            for p, view in zip(bucket.params, bucket.views):
                if p.grad is view:
                    p.grad = view.copy()

    def describe(self) -> str:
        """The buckets in words: how many, and their sizes."""
        sizes = ", ".join(f"{b.nbytes / 2**20:.2f}" for b in self.buckets)
        return f"{len(self.buckets)} bucket{'s' * (len(self.buckets) != 1)} of {sizes} MiB"
