r"""ReduceLROnPlateau: lower the rates when a watched number stops improving, as torch's scheduler of that name.

(:class:`nn_from_scratch.training.ReduceLROnPlateau` is the training
callback, which watches a value ``fit`` logs, with Keras's counting rule.)
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .arguments import as_scalar, check_count, check_float
from .base import Optimizer
from .schedulers import LRScheduler, check_rates, check_scheduler_name

__all__ = ["ReduceLROnPlateau"]

_CONSTANTS = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "eps")


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply each group's rate by ``factor`` once the metric has not improved for more than ``patience`` steps.

    ``step(metric)``, once per epoch, with the validation loss (``mode="min"``)
    or a score (``"max"``).  A value :math:`a` improves on the best
    :math:`b` when, with ``threshold`` :math:`\tau`,

    .. math::
        \text{rel, min}: a < b\,(1 - \tau), \quad \text{abs, min}: a < b - \tau, \quad
        \text{rel, max}: a > b\,(1 + \tau), \quad \text{abs, max}: a > b + \tau.

    After ``patience + 1`` steps without one (torch's count), each rate
    becomes :math:`\max(\eta\,\text{factor}, \eta_{\min})` where that lowers
    it by more than ``eps``, and ``cooldown`` steps pass before the count
    starts again.  A NaN metric never improves.  ``min_lr`` is one floor or
    one per group.  Its state dict holds the count, the best value and the
    cool-down, for an exact resume.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: Union[float, Sequence[float]] = 0, eps: float = 1e-8) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs an Optimizer, got {type(optimizer).__name__}")
        constants = self._check_constants(dict(mode=mode, factor=factor, patience=patience, threshold=threshold,
                                               threshold_mode=threshold_mode, cooldown=cooldown, eps=eps))
        count = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            self.min_lrs: List[float] = check_rates("min_lr", min_lr, count)
            self.default_min_lr: Optional[float] = None
        else:
            self.default_min_lr = check_float("min_lr", min_lr)
            self.min_lrs = [self.default_min_lr] * count
        for name, value in constants.items():
            setattr(self, name, value)
        self.optimizer = optimizer
        self.last_epoch = 0
        self._last_lr = self._current_rates()
        self.best: float = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        mode, threshold_mode = as_scalar(constants["mode"]), as_scalar(constants["threshold_mode"])
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        factor = check_float("factor", constants["factor"], high=1.0, high_inclusive=False)
        return {"mode": mode, "factor": factor, "patience": check_count("patience", constants["patience"]),
                "threshold": check_float("threshold", constants["threshold"]), "threshold_mode": threshold_mode,
                "cooldown": check_count("cooldown", constants["cooldown"]), "eps": check_float("eps", constants["eps"])}

    @property
    def mode_worse(self) -> float:
        """The value every metric improves on: +inf when minimising, -inf when maximising."""
        return math.inf if self.mode == "min" else -math.inf

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether ``a`` improves on ``best`` (by the mode and threshold)."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def get_lr(self) -> List[float]:
        return self._current_rates()

    def step(self, metrics: Any) -> None:  # type: ignore[override]
        """Count one more epoch with the metric ``metrics`` (a number), and lower the rates when it is time."""
        current = as_scalar(metrics)
        if isinstance(current, bool) or not isinstance(current, numbers.Real):
            raise TypeError(f"ReduceLROnPlateau.step needs the metric, a real number; got {type(current).__name__}")
        current = float(current)
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(f"The number of param groups in the optimizer ({len(groups)}) differs from when "
                                 f"ReduceLROnPlateau was made ({len(self.min_lrs)}); set its min_lrs to one per group")
            self.min_lrs = [self.default_min_lr] * len(groups)
        best, bad, cooling = self.best, self.num_bad_epochs, self.cooldown_counter
        if self.is_better(current, best):
            best, bad = current, 0
        else:
            bad += 1
        if cooling > 0:
            cooling -= 1
            bad = 0
        updates: List[Dict[str, Any]] = [{} for _ in groups]
        if bad > self.patience:
            for entries, group, floor in zip(updates, groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, floor)
                if old - new > self.eps:
                    entries["lr"] = new
            cooling, bad = self.cooldown, 0
        self._apply(updates)
        self.last_epoch += 1
        self.best, self.num_bad_epochs, self.cooldown_counter = best, bad, cooling

    def state_dict(self) -> Dict[str, Any]:
        state = {"scheduler": type(self).__name__, **{name: getattr(self, name) for name in _CONSTANTS}}
        state.update(min_lrs=list(self.min_lrs), default_min_lr=self.default_min_lr, last_epoch=self.last_epoch,
                     _last_lr=list(self._last_lr), best=self.best, cooldown_counter=self.cooldown_counter,
                     num_bad_epochs=self.num_bad_epochs)
        return state

    def _checked_load(self, state_dict: Any) -> Callable[[], None]:
        check_scheduler_name(state_dict, type(self))
        required = {*_CONSTANTS, "min_lrs", "default_min_lr", "last_epoch", "_last_lr", "best", "cooldown_counter",
                    "num_bad_epochs"}
        missing = required - set(state_dict)
        if missing:
            raise ValueError(f"scheduler state_dict is missing {sorted(missing)}")
        constants = self._check_constants({name: state_dict[name] for name in _CONSTANTS})
        min_lrs_in = state_dict["min_lrs"]
        if not isinstance(min_lrs_in, (list, tuple)):
            raise ValueError(f"min_lrs must list one floor per parameter group, got {min_lrs_in!r:.80}")
        min_lrs = check_rates("min_lrs", min_lrs_in, len(min_lrs_in))
        default = state_dict["default_min_lr"]
        default = None if default is None else check_float("default_min_lr", default)
        last_lr = check_rates("_last_lr", state_dict["_last_lr"], len(self.optimizer.param_groups))
        best = as_scalar(state_dict["best"])
        if isinstance(best, bool) or not isinstance(best, numbers.Real):
            raise TypeError(f"best must be a real number, got {type(best).__name__}")
        counts = {name: check_count(name, state_dict[name]) for name in ("last_epoch", "cooldown_counter",
                                                                        "num_bad_epochs")}

        def commit() -> None:
            for name, value in {**constants, **counts}.items():
                setattr(self, name, value)
            self.min_lrs, self.default_min_lr, self._last_lr, self.best = min_lrs, default, last_lr, float(best)

        return commit

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor!r}, patience={self.patience}, "
                f"best={self.best!r}, num_bad_epochs={self.num_bad_epochs})")
