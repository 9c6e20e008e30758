r"""Schedulers that scale each group's initial rate by a factor of the epoch, as torch's: a linear ramp (a warm-up),
a decay at each milestone, or any function."""
from __future__ import annotations

import bisect
import numbers
import types
from typing import Any, Callable, Dict, List, Mapping, Sequence, Union

import numpy as np

from .arguments import as_scalar, check_count, check_float
from .base import Optimizer
from .schedulers import LRScheduler, check_gamma, check_positive_int

__all__ = ["LambdaLR", "LinearLR", "MultiStepLR"]


class MultiStepLR(LRScheduler):
    r"""Decay each group's rate by ``gamma`` at every milestone epoch, as torch's ``MultiStepLR``.

    .. math::
        \eta_e = \eta_0\, \gamma^{\#\{m \in \text{milestones} : m \le e\}}

    A milestone listed twice decays twice.  ``milestones`` is kept sorted
    (torch keeps a ``Counter``).
    """

    _constants = ("milestones", "gamma")
    _closed_form = True

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        constants = self._check_constants({"milestones": milestones, "gamma": gamma})
        self.milestones: List[int] = constants["milestones"]
        self.gamma: float = constants["gamma"]
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        milestones = constants["milestones"]
        if isinstance(milestones, np.ndarray):
            milestones = milestones.tolist()
        if isinstance(milestones, (str, bytes, Mapping)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones must be a list of epochs, got {type(milestones).__name__}")
        return {"milestones": sorted(check_count("milestone", m) for m in milestones),
                "gamma": check_gamma(constants["gamma"])}

    def get_lr(self) -> List[float]:
        count = self.milestones.count(self.last_epoch)
        if count == 0:
            return self._current_rates()
        return [lr * self.gamma**count for lr in self._current_rates()]

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:
        base_lr = self.base_lr if base_lr is None else base_lr
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class LinearLR(LRScheduler):
    r"""Scale each group's rate by a factor that moves linearly from ``start_factor`` to ``end_factor``.

    As torch's ``LinearLR`` (a warm-up when ``start_factor < end_factor``):

    .. math::
        \eta_e = \eta_0 \left(f_s + (f_e - f_s)\,\frac{\min(e, T)}{T}\right)

    over ``total_iters`` :math:`= T` epochs, then constant.
    ``0 < start_factor <= 1`` and ``0 <= end_factor <= 1``, as torch requires.
    """

    _constants = ("start_factor", "end_factor", "total_iters")
    _closed_form = True

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        constants = self._check_constants({"start_factor": start_factor, "end_factor": end_factor,
                                           "total_iters": total_iters})
        self.start_factor: float = constants["start_factor"]
        self.end_factor: float = constants["end_factor"]
        self.total_iters: int = constants["total_iters"]
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        start = check_float("start_factor", constants["start_factor"], high=1.0)
        if start == 0:
            raise ValueError("Invalid start_factor: 0.0 (the starting factor must be greater than 0 and at most 1)")
        return {"start_factor": start, "end_factor": check_float("end_factor", constants["end_factor"], high=1.0),
                "total_iters": check_positive_int("total_iters", constants["total_iters"])}

    def get_lr(self) -> List[float]:
        start, end, total = self.start_factor, self.end_factor, self.total_iters
        if self.last_epoch == 0:
            return [lr * start for lr in self._current_rates()]
        if self._is_initial or self.last_epoch > total:
            return self._current_rates()
        factor = 1.0 + (end - start) / (total * start + (self.last_epoch - 1) * (end - start))
        return [lr * factor for lr in self._current_rates()]

    def lr_at(self, epoch: int, base_lr: Any = None) -> float:
        base_lr = self.base_lr if base_lr is None else base_lr
        start, end, total = self.start_factor, self.end_factor, self.total_iters
        return base_lr * (start + (end - start) * min(total, epoch) / total)


LambdaFunction = Callable[[int], float]


class LambdaLR(LRScheduler):
    r"""Each group's initial rate times a function of the epoch, as torch's ``LambdaLR``.

    .. math::
        \eta_e = \eta_0\, \lambda(e)

    ``lr_lambda`` is one function for every group or a list of one per
    group.  As in torch, :meth:`state_dict` saves a callable *object*'s
    attributes (``vars(f)``) and nothing of a plain function or lambda.
    """

    def __init__(self, optimizer: Optimizer, lr_lambda: Union[LambdaFunction, Sequence[LambdaFunction]],
                 last_epoch: int = -1) -> None:
        groups = getattr(optimizer, "param_groups", None)
        count = len(groups) if isinstance(groups, list) else 1
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != count:
                raise ValueError(f"Expected {count} lr_lambdas, but got {len(lr_lambda)}")
            lambdas = list(lr_lambda)
        else:
            lambdas = [lr_lambda] * count
        for function in lambdas:
            if not callable(function):
                raise TypeError(f"lr_lambda should be a function, but got {type(function).__name__}")
        self.lr_lambdas: List[LambdaFunction] = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        rates = []
        for function, base in zip(self.lr_lambdas, self.base_lrs):
            factor = as_scalar(function(self.last_epoch))
            if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
                raise TypeError(f"lr_lambda must return a real number, got {type(factor).__name__} for epoch "
                                f"{self.last_epoch}")
            rates.append(base * float(factor))
        return rates

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else dict(vars(f))
                               for f in self.lr_lambdas]
        return state

    def _checked_extra(self, state_dict: Mapping[str, Any]) -> Callable[[], None]:
        saved = state_dict.get("lr_lambdas", [None] * len(self.lr_lambdas))
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.lr_lambdas) \
                or not all(entry is None or isinstance(entry, Mapping) for entry in saved):
            raise ValueError(f"lr_lambdas must list, per group, None or the attributes of a callable object; got "
                             f"{saved!r:.80}")

        def commit() -> None:
            for function, entry in zip(self.lr_lambdas, saved):
                if entry is not None:
                    vars(function).update(entry)

        return commit
