r"""Learning-rate schedulers with ``torch.optim.lr_scheduler`` semantics.

A scheduler records the optimizer's learning rate at construction as
``base_lr``, sets ``last_epoch = 0`` (the constructor performs the initial
step, as in torch) and, on every :meth:`LRScheduler.step` - called once per
epoch, *after* that epoch's optimizer steps - advances ``last_epoch`` and
writes the new rate into ``optimizer.lr``.

Rates come from closed forms in ``last_epoch``; they agree with the values
torch produces (torch's chainable recursions) to rounding, and they make a
scheduler's state nothing more than ``last_epoch`` and its constants.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Dict, List, Mapping

import numpy as np

from .arguments import as_scalar, check_count, check_float
from .base import Optimizer

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "StepLR"]


def _check_positive_int(name: str, value: Any) -> int:
    value = as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    result = operator.index(value)
    if result < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be a positive integer)")
    return result


def _check_gamma(value: Any) -> float:
    gamma = check_float("gamma", value)
    if gamma <= 0:
        raise ValueError(f"Invalid gamma: {value!r} (must be > 0)")
    return gamma


class LRScheduler:
    r"""Base class: sets ``optimizer.lr`` to :meth:`lr_at` ``(last_epoch)`` on every step.

    Subclasses implement :meth:`lr_at` (the closed form, using
    ``self.base_lr``) and list their constants in ``_constants``.
    """

    _constants: tuple = ()

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__} needs an Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr: float = optimizer.lr
        self.last_epoch: int = -1
        self._last_lr: List[float] = [optimizer.lr]
        self.step()

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        """The learning rate for epoch ``epoch`` (0 is the first)."""
        raise NotImplementedError

    def get_lr(self) -> List[float]:
        """The learning rate for ``last_epoch`` as a one-element list (torch's convention)."""
        return [self.lr_at(self.last_epoch)]

    def get_last_lr(self) -> List[float]:
        """The rate the last :meth:`step` set, as a one-element list like torch's."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = lr
        self._last_lr = [self.optimizer.lr]

    def state_dict(self) -> Dict[str, Any]:
        """``base_lr``, ``last_epoch``, the last rate and the constants (no optimizer)."""
        state = {
            "scheduler": type(self).__name__,
            "base_lr": self.base_lr,
            "last_epoch": self.last_epoch,
            "last_lr": list(self._last_lr),
        }
        for name in self._constants:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; validates everything first.

        As in torch this does not touch the optimizer: restore the optimizer's
        own state dict (which carries its current ``lr``) alongside.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        required = {"scheduler", "base_lr", "last_epoch", "last_lr", *self._constants}
        missing = required - set(state_dict)
        if missing:
            raise ValueError(f"scheduler state_dict is missing {sorted(missing)}")
        name = as_scalar(state_dict["scheduler"])
        if not isinstance(name, str) or name != type(self).__name__:
            raise ValueError(
                f"state_dict is for scheduler {name!r}, cannot load it into {type(self).__name__}"
            )
        base_lr = check_float("base_lr", state_dict["base_lr"])
        last_epoch = check_count("last_epoch", state_dict["last_epoch"])
        last_lr_in = state_dict["last_lr"]
        if isinstance(last_lr_in, np.ndarray):
            last_lr_in = last_lr_in.tolist()
        if isinstance(last_lr_in, (list, tuple)):
            if len(last_lr_in) != 1:
                raise ValueError(f"last_lr must hold one rate, got {last_lr_in!r}")
            last_lr_in = last_lr_in[0]
        last_lr = check_float("last_lr", last_lr_in)
        constants = self._check_constants({k: state_dict[k] for k in self._constants})
        self.base_lr = base_lr
        self.last_epoch = last_epoch
        self._last_lr = [last_lr]
        for k, v in constants.items():
            setattr(self, k, v)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return constants

    def __repr__(self) -> str:
        consts = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._constants)
        return (
            f"{type(self).__name__}({consts}, base_lr={self.base_lr!r}, "
            f"last_epoch={self.last_epoch})"
        )


class StepLR(LRScheduler):
    r"""Decay the rate by ``gamma`` every ``step_size`` epochs, as torch's ``StepLR``.

    .. math::
        \eta_e = \eta_0\, \gamma^{\lfloor e / s \rfloor}
    """

    _constants = ("step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        constants = self._check_constants({"step_size": step_size, "gamma": gamma})
        self.step_size: int = constants["step_size"]
        self.gamma: float = constants["gamma"]
        super().__init__(optimizer)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "step_size": _check_positive_int("step_size", constants["step_size"]),
            "gamma": _check_gamma(constants["gamma"]),
        }

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    r"""Decay the rate by ``gamma`` every epoch, as torch's ``ExponentialLR``.

    .. math::
        \eta_e = \eta_0\, \gamma^{e}
    """

    _constants = ("gamma",)

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma: float = self._check_constants({"gamma": gamma})["gamma"]
        super().__init__(optimizer)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {"gamma": _check_gamma(constants["gamma"])}

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma**epoch


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs.

    As torch's ``CosineAnnealingLR`` (without restarts):

    .. math::
        \eta_e = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
                 \left(1 + \cos\frac{e\,\pi}{T_{\max}}\right)

    Torch computes this through a recursion in the previous rate; the closed
    form is the same function (also past :math:`T_{\max}`, where the rate
    climbs back along the cosine) and agrees with torch's values to rounding.
    """

    _constants = ("T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        constants = self._check_constants({"T_max": T_max, "eta_min": eta_min})
        self.T_max: int = constants["T_max"]
        self.eta_min: float = constants["eta_min"]
        super().__init__(optimizer)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "T_max": _check_positive_int("T_max", constants["T_max"]),
            "eta_min": check_float("eta_min", constants["eta_min"]),
        }

    def lr_at(self, epoch: int) -> float:
        if epoch == 0:
            return self.base_lr
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(epoch * math.pi / self.T_max)) / 2
        )
