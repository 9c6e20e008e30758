r"""Schedulers that cycle the learning rate: the 1cycle policy and cosine annealing with warm restarts, as torch's."""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .arguments import as_scalar, check_bool, check_float
from .base import Optimizer
from .schedulers import LRScheduler, check_last_epoch, check_positive_int

__all__ = ["CosineAnnealingWarmRestarts", "OneCycleLR"]


def per_group(name: str, value: Any, optimizer: Optimizer, **bounds: Any) -> List[float]:
    """One float per parameter group: ``value`` for each, or a list of one per group (torch's ``_format_param``)."""
    count = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. {name} has {len(value)} "
                             f"values, param_groups has {count}.")
        return [check_float(name, v, **bounds) for v in value]
    return [check_float(name, value, **bounds)] * count


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy (Smith and Topin, 2018), as torch's ``OneCycleLR``: one rise and fall over the whole run.

    From ``initial_lr`` :math:`= \eta_{\max}/d` (``div_factor`` :math:`d`)
    the rate anneals up to ``max_lr`` :math:`\eta_{\max}` over the first
    ``pct_start`` of ``total_steps``, then down to ``min_lr``
    :math:`= \eta_{\max}/(d\,f)` (``final_div_factor`` :math:`f`) at the
    last step; with ``three_phase`` it comes back to ``initial_lr`` first
    and then falls to ``min_lr``.  Each phase anneals from :math:`a` to
    :math:`b` over its steps, :math:`p \in [0, 1]` the fraction done:

    .. math::
        \text{cos}: \; b + \frac{a - b}{2}\,(1 + \cos \pi p), \qquad
        \text{linear}: \; a + (b - a)\,p

    With ``cycle_momentum`` the momentum (or Adam's :math:`\beta_1`) goes
    the other way, from ``max_momentum`` to ``base_momentum`` and back.
    ``initial_lr``, ``max_lr``, ``min_lr``, ``max_momentum`` and
    ``base_momentum`` are written into each parameter group, as torch does,
    so the optimizer's state dict carries them; the scheduler's own state
    dict holds its step and constants.

    **Stepping.**  The schedule counts *optimizer steps*: ``total_steps``
    (or ``epochs * steps_per_epoch``) calls of :meth:`step`, one after
    each batch; one more raises ``ValueError``.  ``NeuralNetwork(...,
    scheduler=s).fit`` steps its scheduler once per *epoch*, so there build
    it with ``total_steps=epochs`` (the cycle over epochs; it is then saved
    in checkpoints with the rest).  For the cycle over batches, step it
    from a callback instead, after each batch that took a step::

        class StepEachBatch(Callback):
            def on_batch_end(self, batch, logs):
                if "diverged" not in logs:
                    schedule.step()

    (such a scheduler is not the network's, so a checkpoint does not hold
    it: save ``schedule.state_dict()`` beside it).  ``get_lr`` returns the
    rates; the momenta are set with them by :meth:`step`.
    """

    _constants = ("total_steps", "pct_start", "anneal_strategy", "cycle_momentum", "three_phase")

    def __init__(self, optimizer: Optimizer, max_lr: Union[float, Sequence[float]], total_steps: Optional[int] = None,
                 epochs: Optional[int] = None, steps_per_epoch: Optional[int] = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: Union[float, Sequence[float]] = 0.85,
                 max_momentum: Union[float, Sequence[float]] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} needs an Optimizer, got {type(optimizer).__name__}")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
            total_steps = check_positive_int("epochs", epochs) * check_positive_int("steps_per_epoch", steps_per_epoch)
        constants = self._check_constants({"total_steps": total_steps, "pct_start": pct_start,
                                           "anneal_strategy": anneal_strategy, "cycle_momentum": cycle_momentum,
                                           "three_phase": three_phase})
        for name, value in constants.items():
            setattr(self, name, value)
        self.use_beta1 = "betas" in optimizer.defaults
        if self.cycle_momentum and "momentum" not in optimizer.defaults and not self.use_beta1:
            raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
        max_lrs = per_group("max_lr", max_lr, optimizer)
        div = check_float("div_factor", div_factor, low=None)
        final_div = check_float("final_div_factor", final_div_factor, low=None)
        if div <= 0 or final_div <= 0:
            raise ValueError(f"div_factor and final_div_factor must be > 0, got {div_factor!r} and "
                             f"{final_div_factor!r}")
        entries: List[Dict[str, Any]] = [{} for _ in optimizer.param_groups]
        if check_last_epoch(last_epoch) == -1:
            for group_entries, top in zip(entries, max_lrs):
                group_entries.update(initial_lr=top / div, max_lr=top, min_lr=top / div / final_div)
            if self.cycle_momentum:
                highs = per_group("max_momentum", max_momentum, optimizer)
                lows = per_group("base_momentum", base_momentum, optimizer)
                for group_entries, group, high, low in zip(entries, optimizer.param_groups, highs, lows):
                    key, value = ("betas", (high, *group["betas"][1:])) if self.use_beta1 else ("momentum", high)
                    group_entries.update({key: value, "max_momentum": high, "base_momentum": low})
        saved = [dict(group) for group in optimizer.param_groups]
        try:
            for group, group_entries in zip(optimizer.param_groups, entries):
                group.update(group_entries)
            super().__init__(optimizer, last_epoch)
        except BaseException:
            for group, before in zip(optimizer.param_groups, saved):
                dict.clear(group)
                dict.update(group, before)
            raise

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        total = check_positive_int("total_steps", constants["total_steps"])
        pct = check_float("pct_start", constants["pct_start"], high=1.0)
        strategy = as_scalar(constants["anneal_strategy"])
        if strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {strategy!r}")
        three = check_bool("three_phase", constants["three_phase"])
        ends = [pct * total - 1, 2 * pct * total - 2, total - 1] if three else [pct * total - 1, total - 1]
        if any(b == a for a, b in zip([0.0] + ends, ends)):  # a phase of no length: torch divides by zero there
            raise ValueError(f"pct_start={pct!r} gives a phase of {total} steps no length (the phases end at steps "
                             f"{ends}); give more total_steps or another pct_start")
        return {"total_steps": total, "pct_start": pct, "anneal_strategy": strategy,
                "cycle_momentum": check_bool("cycle_momentum", constants["cycle_momentum"]), "three_phase": three}

    @property
    def _schedule_phases(self) -> List[Dict[str, Any]]:
        """Torch's phases: where each ends (in steps) and the group entries it anneals between."""
        pct, total = self.pct_start, self.total_steps
        if self.three_phase:
            return [dict(end_step=float(pct * total) - 1, start_lr="initial_lr", end_lr="max_lr",
                         start_momentum="max_momentum", end_momentum="base_momentum"),
                    dict(end_step=float(2 * pct * total) - 2, start_lr="max_lr", end_lr="initial_lr",
                         start_momentum="base_momentum", end_momentum="max_momentum"),
                    dict(end_step=total - 1, start_lr="initial_lr", end_lr="min_lr",
                         start_momentum="max_momentum", end_momentum="max_momentum")]
        return [dict(end_step=float(pct * total) - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=total - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum")]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _rates_and_momenta(self) -> List[Dict[str, Any]]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total steps is {self.total_steps}")
        phases, updates = self._schedule_phases, []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, phase in enumerate(phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    entries: Dict[str, Any] = {"lr": lr}
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                        if self.use_beta1:
                            entries["betas"] = (momentum, *group["betas"][1:])
                        else:
                            entries["momentum"] = momentum
                    updates.append(entries)
                    break
                start_step = phase["end_step"]
        return updates

    def get_lr(self) -> List[float]:
        return [entries["lr"] for entries in self._rates_and_momenta()]

    def _updates(self, recursive: bool) -> List[Dict[str, Any]]:
        return self._rates_and_momenta()


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov and Hutter, 2017), as torch's.

    .. math::
        \eta = \eta_{\min} + \frac{\eta_0 - \eta_{\min}}{2}
               \left(1 + \cos\frac{\pi\, T_{cur}}{T_i}\right)

    :math:`T_{cur}` counts the epochs since the last restart; a restart
    comes after :math:`T_i` epochs, the first after ``T_0`` and each next
    one ``T_mult`` times later.  ``step(epoch)`` may be given a fractional
    epoch (``epoch + batch / batches`` after each batch), as in torch; its
    state holds :math:`T_i` and :math:`T_{cur}`.
    """

    _constants = ("T_0", "T_mult", "eta_min")

    def __init__(self, optimizer: Optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        constants = self._check_constants({"T_0": T_0, "T_mult": T_mult, "eta_min": eta_min})
        self.T_0, self.T_mult, self.eta_min = constants["T_0"], constants["T_mult"], constants["eta_min"]
        self.T_i: int = self.T_0
        self.T_cur: float = last_epoch if isinstance(last_epoch, numbers.Integral) else 0
        super().__init__(optimizer, last_epoch)

    def _check_constants(self, constants: Dict[str, Any]) -> Dict[str, Any]:
        return {"T_0": check_positive_int("T_0", constants["T_0"]),
                "T_mult": check_positive_int("T_mult", constants["T_mult"]),
                "eta_min": check_float("eta_min", constants["eta_min"])}

    def get_lr(self) -> List[float]:
        cosine = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base - self.eta_min) * cosine / 2 for base in self.base_lrs]

    def step(self, epoch: Optional[float] = None) -> None:
        """Advance one epoch, or go to ``epoch`` (a float: part of an epoch), and set the rates."""
        before = (self.T_cur, self.T_i, self.last_epoch, self._step_count)
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            epoch = check_float("epoch", epoch)
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
        self.last_epoch = math.floor(epoch)
        self._step_count += 1
        try:
            self._apply([{"lr": lr} for lr in self.get_lr()])
        except BaseException:
            self.T_cur, self.T_i, self.last_epoch, self._step_count = before
            raise

    def _chained_step(self) -> None:
        self.step()

    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "T_i": self.T_i, "T_cur": self.T_cur}

    def _checked_extra(self, state_dict: Mapping[str, Any]) -> Callable[[], None]:
        if "T_i" not in state_dict or "T_cur" not in state_dict:
            raise ValueError("scheduler state_dict is missing ['T_cur', 'T_i']")
        t_i = check_positive_int("T_i", state_dict["T_i"])
        t_cur = check_float("T_cur", state_dict["T_cur"])
        if t_cur >= t_i:
            raise ValueError(f"Invalid T_cur: {t_cur!r} (must be below T_i={t_i})")

        def commit() -> None:
            self.T_i, self.T_cur = t_i, t_cur

        return commit
