r"""Learning-rate schedulers with ``torch.optim.lr_scheduler`` semantics.

A scheduler records each parameter group's rate at construction as its
``initial_lr`` (kept in the group, as torch does) and ``base_lrs``, sets
``last_epoch = 0`` (the constructor performs the initial step, as in torch)
and, on every :meth:`LRScheduler.step` - called once per epoch, *after*
that epoch's optimizer steps - advances ``last_epoch`` and writes the new
rate into every group's ``"lr"``.

**Two ways to the same rates.**  Torch computes each rate from the one
before (``get_lr``, its "chainable" form, so that schedulers can be
chained and other changes to the rate carry on), and gives most schedulers
a closed form in ``last_epoch`` as well (``_get_closed_form_lr``).  Here:

* stepped on its own, a scheduler sets the closed form's rate: the same
  numbers as torch's recursion to rounding while nothing else changes the
  rate, and it *sets* the rate whatever else changed it (a
  ``ReduceLROnPlateau`` callback beside it does not compound with it, and
  replaying ``last_epoch`` steps on a fresh scheduler - what a resumed fit
  does - reaches the rate of that epoch);
* inside a :class:`~nn_from_scratch.optim.ChainedScheduler`, or when built
  with ``last_epoch >= 0`` to continue a run (which needs the groups'
  ``initial_lr``, from the optimizer's state dict, as torch), it applies
  torch's recursion to the group's current rate, exactly as torch does
  (``follows_the_rate``);
* the initial step is torch's recursion in both cases.

A scheduler's :meth:`~LRScheduler.state_dict` holds ``base_lrs``,
``last_epoch``, its step count, the last rates and its constants; with the
optimizer's state dict (which holds the rates and ``initial_lr``) a run
resumes exactly.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Callable, Dict, List, Mapping, Sequence

import numpy as np

from .arguments import as_scalar, check_bool, check_count, check_float
from .base import Optimizer

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "StepLR"]


def check_positive_int(name: str, value: Any) -> int:
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    result = operator.index(value)
    if result < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be a positive integer)")
    return result


def check_gamma(value: Any) -> float:
    gamma = check_float("gamma", value)
    if gamma <= 0:
        raise ValueError(f"Invalid gamma: {value!r} (must be > 0)")
    return gamma


def check_last_epoch(value: Any) -> int:
    """``last_epoch``: -1 for a new schedule, else the epoch a resumed schedule has reached."""
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"last_epoch must be an integer, got {type(value).__name__}: {value!r}")
    if value < -1:
        raise ValueError(f"Invalid last_epoch: {value!r} (must be -1 for a new schedule, or >= 0)")
    return int(value)


def check_rates(name: str, value: Any, count: int) -> List[float]:
    """A list of ``count`` learning rates (one per parameter group)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(f"{name} must list {count} learning rate{'s' * (count != 1)} (one per parameter group), "
                         f"got {value!r:.80}")
    return [check_float(name, v) for v in value]


def check_scheduler_name(state_dict: Any, cls: type) -> None:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    name = as_scalar(state_dict.get("scheduler"))
    if not isinstance(name, str) or name != cls.__name__:
        raise ValueError(f"state_dict is for scheduler {name!r}, cannot load it into {cls.__name__}")


class LRScheduler:
    r"""Base class: sets each parameter group's ``"lr"`` on every :meth:`step` (see the module docstring).

    Subclasses implement :meth:`get_lr` (torch's recursion from the
    groups' current rates) and, where torch has one, :meth:`lr_at` (the
    closed form, with ``_closed_form = True``), and list their constants in
    ``_constants`` with :meth:`_check_constants` to validate them.
    """

    _constants: tuple = ()
    #: Whether the scheduler has a closed form (lr_at) that a scheduler stepped on its own follows.
    _closed_form = False
    #: True during the initial step (torch's initial mode, in which some recursions keep the rate).
    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} needs an Optimizer, got {type(optimizer).__name__}"
            )
        last_epoch = check_last_epoch(last_epoch)
        groups = optimizer.param_groups
        if last_epoch >= 0:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise ValueError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming a "
                                     "scheduler with last_epoch >= 0: load the optimizer's state dict first (it "
                                     "holds initial_lr), or start a new schedule with last_epoch=-1")
        saved = [dict(group) for group in groups]
        try:
            if last_epoch == -1:
                for group in groups:
                    group.setdefault("initial_lr", group["lr"])
            self.optimizer = optimizer
            self.base_lrs: List[float] = [group["initial_lr"] for group in groups]
            self.last_epoch: int = last_epoch
            #: Whether every step follows torch's recursion from the current rates (module docstring).
            self.follows_the_rate: bool = last_epoch >= 0
            self._initial_step()
        except BaseException:  # a refused schedule leaves the optimizer's groups as they were
            for group, entries in zip(groups, saved):
                dict.clear(group)
                dict.update(group, entries)
            raise

    def _initial_step(self) -> None:
        """Torch's initial step: ``last_epoch`` one on, by the recursion in its initial mode."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    # -- the rates ----------------------------------------------------------
    def get_lr(self) -> List[float]:  # pragma: no cover - abstract
        """Torch's rates for ``last_epoch``, one per group, from the groups' current rates (its recursion)."""
        raise NotImplementedError

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:  # pragma: no cover - only with a closed form
        """The closed-form rate at ``epoch`` (0 is the first) of a group starting at ``base_lr`` (the first's)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed form")

    def _get_closed_form_lr(self) -> List[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def _current_rates(self) -> List[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> List[float]:
        """The rates the last :meth:`step` set, one per parameter group, like torch's."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set every group's learning rate (nothing changes if a rate is refused)."""
        self._advance(self.follows_the_rate)

    def _advance(self, recursive: bool) -> None:
        self._step_count += 1
        self.last_epoch += 1
        try:
            self._apply(self._updates(recursive))
        except BaseException:
            self._step_count -= 1
            self.last_epoch -= 1
            raise

    def _chained_step(self) -> None:
        """One step inside a ChainedScheduler: torch's recursion from the rate the scheduler before left."""
        self._advance(recursive=True)

    def _restart(self) -> None:
        """Back to epoch 0 and its rate (torch's ``_update_lr(0)``, when a SequentialLR reaches its milestone)."""
        before = self.last_epoch
        self.last_epoch = 0
        try:
            self._apply(self._updates(recursive=False))
        except BaseException:
            self.last_epoch = before
            raise

    def _updates(self, recursive: bool) -> List[Dict[str, Any]]:
        """Per group, the entries this step sets: the recursion's or the closed form's rate."""
        closed = self._closed_form and not recursive and not self._is_initial
        return [{"lr": lr} for lr in (self._get_closed_form_lr() if closed else self.get_lr())]

    def _apply(self, updates: Sequence[Mapping[str, Any]]) -> None:
        """Set each group's entries, every one checked before any is set; remember the rates."""
        groups = self.optimizer.param_groups
        if len(updates) != len(groups):
            raise ValueError(f"{type(self).__name__} schedules {len(updates)} parameter groups and the optimizer "
                             f"now has {len(groups)}: build the scheduler after adding the groups")
        checked = [{key: group.checked(key, value) for key, value in entries.items()}
                   for group, entries in zip(groups, updates)]
        for group, entries in zip(groups, checked):
            dict.update(group, entries)
        self._last_lr = self._current_rates()

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """``base_lrs``, ``last_epoch``, the step count, the last rates, ``follows_the_rate`` and the constants.

        As in torch the optimizer is not part of it: restore the optimizer's
        own state dict (which carries the current rates) alongside.
        """
        state = {
            "scheduler": type(self).__name__,
            "base_lrs": list(self.base_lrs),
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
            "follows_the_rate": self.follows_the_rate,
        }
        for name in self._constants:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; validates everything first and changes nothing on a bad one.

        As in torch this does not touch the optimizer.  A state dict written
        before parameter groups (``base_lr`` and ``last_lr`` of the one
        group) loads into the scheduler of a one-group optimizer.
        """
        self._checked_load(state_dict)()

    def _checked_load(self, state_dict: Any) -> Callable[[], None]:
        """Check ``state_dict`` completely; return what puts it in force (so that composites load all or nothing)."""
        check_scheduler_name(state_dict, type(self))
        count = len(self.optimizer.param_groups)
        if "base_lrs" not in state_dict and "base_lr" in state_dict:  # written before parameter groups
            required = {"base_lr", "last_epoch", "last_lr", *self._constants}
        else:
            required = {"base_lrs", "last_epoch", "_step_count", "_last_lr", "follows_the_rate", *self._constants}
        missing = required - set(state_dict)
        if missing:
            raise ValueError(f"scheduler state_dict is missing {sorted(missing)}")
        last_epoch = check_last_epoch(state_dict["last_epoch"])  # -1: a SequentialLR's scheduler yet to start
        if "base_lrs" in required:
            base_lrs = check_rates("base_lrs", state_dict["base_lrs"], count)
            last_lr = check_rates("_last_lr", state_dict["_last_lr"], count)
            step_count = check_count("_step_count", state_dict["_step_count"])
            follows = check_bool("follows_the_rate", state_dict["follows_the_rate"])
        else:
            base_lrs = check_rates("base_lr", [state_dict["base_lr"]], count)
            last_lr = state_dict["last_lr"]
            last_lr = check_rates("last_lr", last_lr if isinstance(last_lr, (list, tuple, np.ndarray)) else [last_lr],
                                  count)
            step_count, follows = last_epoch + 1, False  # its steps: the initial one and one per epoch
        constants = self._check_constants({k: state_dict[k] for k in self._constants})
        extra = self._checked_extra(state_dict)

        def commit() -> None:
            self.base_lrs, self.last_epoch, self._step_count = base_lrs, last_epoch, step_count
            self._last_lr, self.follows_the_rate = last_lr, follows
            for k, v in constants.items():
                setattr(self, k, v)
            extra()

        return commit

    def _checked_extra(self, state_dict: Mapping[str, Any]) -> Callable[[], None]:
        """A subclass's further state, checked; what puts it in force."""
        return lambda: None

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return constants

    def __repr__(self) -> str:
        consts = "".join(f"{k}={getattr(self, k)!r}, " for k in self._constants)
        return f"{type(self).__name__}({consts}base_lrs={self.base_lrs!r}, last_epoch={self.last_epoch})"

    @property
    def base_lr(self) -> float:
        """The first group's base rate (the one rate of a one-group optimizer)."""
        return self.base_lrs[0]


class StepLR(LRScheduler):
    r"""Decay each group's rate by ``gamma`` every ``step_size`` epochs, as torch's ``StepLR``.

    .. math::
        \eta_e = \eta_0\, \gamma^{\lfloor e / s \rfloor}

    (torch's recursion: :math:`\eta_e = \gamma\,\eta_{e-1}` when :math:`s`
    divides :math:`e > 0`, else :math:`\eta_{e-1}`).
    """

    _constants = ("step_size", "gamma")
    _closed_form = True

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        constants = self._check_constants({"step_size": step_size, "gamma": gamma})
        self.step_size: int = constants["step_size"]
        self.gamma: float = constants["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "step_size": check_positive_int("step_size", constants["step_size"]),
            "gamma": check_gamma(constants["gamma"]),
        }

    def get_lr(self) -> List[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_rates()
        return [lr * self.gamma for lr in self._current_rates()]

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:
        return (self.base_lr if base_lr is None else base_lr) * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    r"""Decay each group's rate by ``gamma`` every epoch, as torch's ``ExponentialLR``.

    .. math::
        \eta_e = \eta_0\, \gamma^{e}
    """

    _constants = ("gamma",)
    _closed_form = True

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma: float = self._check_constants({"gamma": gamma})["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {"gamma": check_gamma(constants["gamma"])}

    def get_lr(self) -> List[float]:
        if self._is_initial:
            return self._current_rates()
        return [lr * self.gamma for lr in self._current_rates()]

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:
        return (self.base_lr if base_lr is None else base_lr) * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from each group's initial rate to ``eta_min`` over ``T_max`` epochs.

    As torch's ``CosineAnnealingLR`` (without restarts):

    .. math::
        \eta_e = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
                 \left(1 + \cos\frac{e\,\pi}{T_{\max}}\right)

    Torch computes this through a recursion in the previous rate; the closed
    form is the same function (also past :math:`T_{\max}`, where the rate
    climbs back along the cosine) and agrees with torch's values to rounding.
    """

    _constants = ("T_max", "eta_min")
    _closed_form = True

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        constants = self._check_constants({"T_max": T_max, "eta_min": eta_min})
        self.T_max: int = constants["T_max"]
        self.eta_min: float = constants["eta_min"]
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "T_max": check_positive_int("T_max", constants["T_max"]),
            "eta_min": check_float("eta_min", constants["eta_min"]),
        }

    def get_lr(self) -> List[float]:
        e, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_rates()
        if self._step_count == 1 and e > 0:
            return [eta_min + (base - eta_min) * (1 + math.cos(e * math.pi / t_max)) / 2 for base in self.base_lrs]
        if (e - 1 - t_max) % (2 * t_max) == 0:
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                    for base, lr in zip(self.base_lrs, self._current_rates())]
        return [(1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max)) * (lr - eta_min)
                + eta_min for lr in self._current_rates()]

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:
        base_lr = self.base_lr if base_lr is None else base_lr
        if epoch == 0:
            return base_lr
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(epoch * math.pi / self.T_max)) / 2
