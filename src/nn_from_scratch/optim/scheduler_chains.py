r"""Schedulers made of schedulers: one after another (SequentialLR) or all at once (ChainedScheduler), as torch's."""
from __future__ import annotations

import bisect
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .arguments import check_count
from .base import Optimizer
from .plateau import ReduceLROnPlateau
from .schedulers import LRScheduler, check_last_epoch, check_rates, check_scheduler_name

__all__ = ["ChainedScheduler", "SequentialLR"]


def check_members(owner: str, schedulers: Any, optimizer: Optional[Optimizer]) -> List[LRScheduler]:
    """The schedulers of a composite: at least one, none a ReduceLROnPlateau, all of one optimizer."""
    if isinstance(schedulers, LRScheduler) or not isinstance(schedulers, (list, tuple)):
        raise TypeError(f"{owner} takes a list of schedulers, got {type(schedulers).__name__}")
    if not schedulers:
        raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
    optimizer = optimizer if optimizer is not None else getattr(schedulers[0], "optimizer", None)
    for i, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{owner}: the scheduler at index {i} is a {type(scheduler).__name__}, not a scheduler of "
                            "nn_from_scratch.optim")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires additional "
                             f"kwargs to be specified when calling `step`, but got one at index {i} in the given "
                             "schedulers sequence.")
        if scheduler.optimizer is not optimizer:
            raise ValueError(f"{owner} expects all schedulers to belong to the same optimizer, but got scheduler "
                             f"{type(scheduler).__name__} at index {i} of another one")
    if len({id(s) for s in schedulers}) != len(schedulers):
        raise ValueError(f"{owner}: a scheduler is listed twice")
    return list(schedulers)


def checked_members(state_dict: Mapping[str, Any], schedulers: Sequence[LRScheduler]) -> Callable[[], None]:
    """The members' saved states, each checked by its scheduler; what puts them all in force."""
    saved = state_dict["_schedulers"]
    if not isinstance(saved, (list, tuple)) or len(saved) != len(schedulers):
        raise ValueError(f"_schedulers must hold the states of {len(schedulers)} schedulers, got {saved!r:.80}")
    commits = [scheduler._checked_load(entry) for scheduler, entry in zip(schedulers, saved)]
    return lambda: [commit() for commit in commits] and None


class SequentialLR(LRScheduler):
    r"""Run ``schedulers`` one after another, switching at the ``milestones`` epochs, as torch's ``SequentialLR``.

    Epochs :math:`[0, m_1)` follow the first scheduler, :math:`[m_1, m_2)`
    the second (restarted at its epoch 0 when its turn comes), and so on: a
    warm-up, ``SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=5),
    CosineAnnealingLR(opt, T_max=95)], milestones=[5])``.  Built, it puts
    every group's rate back to its ``initial_lr`` and starts the first.
    Its state dict holds each scheduler's.
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"SequentialLR needs an Optimizer, got {type(optimizer).__name__}")
        members = check_members("SequentialLR", schedulers, optimizer)
        milestones = self._check_milestones(milestones, len(members))
        last_epoch = check_last_epoch(last_epoch)
        saved = [dict(group) for group in optimizer.param_groups]
        epochs = [s.last_epoch for s in members]
        try:
            self._schedulers, self._milestones, self.optimizer = members, milestones, optimizer
            self.last_epoch = last_epoch + 1
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            for scheduler in members:  # torch undoes the initial step each one took when built
                scheduler.last_epoch -= 1
            first = members[bisect.bisect_right(milestones, 0)]
            first._initial_step()
            self._last_lr = first.get_last_lr()
        except BaseException:
            for group, entries in zip(optimizer.param_groups, saved):
                dict.clear(group)
                dict.update(group, entries)
            for scheduler, epoch in zip(members, epochs):
                scheduler.last_epoch = epoch
            raise

    @staticmethod
    def _check_milestones(milestones: Any, count: int) -> List[int]:
        if not isinstance(milestones, (list, tuple)):
            raise TypeError(f"milestones must be a list of epochs, got {type(milestones).__name__}")
        if len(milestones) != count - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be one more than the "
                             f"number of milestone points, but got number of schedulers {count} and the number of "
                             f"milestones to be equal to {len(milestones)}")
        epochs = [check_count("milestone", m) for m in milestones]
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ValueError(f"milestones must increase, got {epochs}")
        return epochs

    def step(self) -> None:
        """Advance one epoch: the scheduler whose turn it is steps, or starts at its epoch 0 on its milestone."""
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        try:
            if index > 0 and self._milestones[index - 1] == self.last_epoch:
                scheduler._restart()
            else:
                scheduler.step()
        except BaseException:
            self.last_epoch -= 1
            raise
        self._last_lr = scheduler.get_last_lr()

    def _chained_step(self) -> None:
        self.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"scheduler": "SequentialLR", "last_epoch": self.last_epoch, "_milestones": list(self._milestones),
                "_last_lr": list(self._last_lr), "_schedulers": [s.state_dict() for s in self._schedulers]}

    def _checked_load(self, state_dict: Any) -> Callable[[], None]:
        check_scheduler_name(state_dict, type(self))
        missing = {"last_epoch", "_milestones", "_last_lr", "_schedulers"} - set(state_dict)
        if missing:
            raise ValueError(f"scheduler state_dict is missing {sorted(missing)}")
        last_epoch = check_count("last_epoch", state_dict["last_epoch"])
        milestones = self._check_milestones(state_dict["_milestones"], len(self._schedulers))
        last_lr = check_rates("_last_lr", state_dict["_last_lr"], len(self.optimizer.param_groups))
        members = checked_members(state_dict, self._schedulers)

        def commit() -> None:
            self.last_epoch, self._milestones, self._last_lr = last_epoch, milestones, last_lr
            members()

        return commit

    def __repr__(self) -> str:
        return f"SequentialLR({self._schedulers!r}, milestones={self._milestones}, last_epoch={self.last_epoch})"


class ChainedScheduler(LRScheduler):
    r"""Step every one of ``schedulers`` at each step, each on the rate the one before left, as torch's.

    Each applies torch's recursion to the current rate (so
    ``ChainedScheduler([ConstantLR-like LinearLR, ExponentialLR])``
    multiplies their factors), where a scheduler stepped alone would set
    its closed form (:mod:`~nn_from_scratch.optim.schedulers`).  Built, it
    changes nothing; its state dict holds each scheduler's.
    """

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Optional[Optimizer] = None) -> None:
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"ChainedScheduler's optimizer must be an Optimizer, got {type(optimizer).__name__}")
        self._schedulers = check_members("ChainedScheduler", schedulers, optimizer)
        self.optimizer = self._schedulers[0].optimizer
        self._last_lr = self._current_rates()

    def step(self) -> None:
        """Step each scheduler in turn, each by torch's recursion from the rate the one before set."""
        for scheduler in self._schedulers:
            scheduler._chained_step()
        self._last_lr = self._current_rates()

    def _chained_step(self) -> None:
        self.step()

    def state_dict(self) -> Dict[str, Any]:
        return {"scheduler": "ChainedScheduler", "_last_lr": list(self._last_lr),
                "_schedulers": [s.state_dict() for s in self._schedulers]}

    def _checked_load(self, state_dict: Any) -> Callable[[], None]:
        check_scheduler_name(state_dict, type(self))
        missing = {"_last_lr", "_schedulers"} - set(state_dict)
        if missing:
            raise ValueError(f"scheduler state_dict is missing {sorted(missing)}")
        last_lr = check_rates("_last_lr", state_dict["_last_lr"], len(self.optimizer.param_groups))
        members = checked_members(state_dict, self._schedulers)

        def commit() -> None:
            self._last_lr = last_lr
            members()

        return commit

    def __repr__(self) -> str:
        return f"ChainedScheduler({self._schedulers!r})"
