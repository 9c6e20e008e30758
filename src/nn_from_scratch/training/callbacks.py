"""Callbacks: code that ``fit`` calls at the start and end of the run, of each epoch and of each batch.

A :class:`Callback` overrides the hooks it needs; ``fit(callbacks=[...])``
calls them in the order given (a :class:`ModelCheckpoint` last at the end
of an epoch, so that it saves what every other callback made of it):

* ``set_network(network, params)``: before anything changes; ``params``
  holds ``epochs``, ``steps`` (batches per epoch, None when unknown),
  ``samples`` and ``validation`` (whether there is validation data).  A
  callback refuses a fit it cannot serve here, with ``ValueError``.
* ``check_resume(path)``: before ``fit(resume=path)`` changes anything;
  raise :class:`~nn_from_scratch.training.CheckpointError` to refuse it.
* ``on_train_begin(logs)``: ``logs`` holds ``epoch`` (the epochs already
  done: those of a resumed checkpoint), ``epochs`` and ``history`` (the
  run's history so far).  A callback with a state rebuilds it from that
  history, so that a resumed run goes on as an uninterrupted one.
* ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)``, the
  epoch counted from 1; at the end ``logs`` holds the epoch's values
  (``loss``, ``accuracy``, ``val_loss``...), already in the history.
* ``on_batch_begin(batch, logs)`` and ``on_batch_end(batch, logs)``:
  ``logs`` holds ``size`` and, at the end, ``loss``; a batch whose loss or
  gradient is not finite ends with ``diverged`` (what happened) and its
  step undone, and training stops with ``TrainingDiverged`` unless a
  callback sets ``network.stop_training`` there (:class:`TerminateOnNaN`).
* ``on_train_end(logs)``: however the run ends; ``logs`` holds ``epoch``
  (the epoch running or last run), ``history`` and ``error`` (None, or the
  exception that ends it, raised again after the callbacks).

``callback.network`` is the :class:`~nn_from_scratch.training.NeuralNetwork`;
setting ``network.stop_training = True`` ends the run after the current
epoch (or batch).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Callback", "CallbackList", "LearningRateScheduler", "Monitor", "ReduceLROnPlateau", "TerminateOnNaN",
           "check_count", "is_count"]

Logs = Dict[str, Any]


def is_count(value: Any) -> bool:
    """Whether ``value`` is a positive integer (not a bool, not a float that happens to be whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1


def check_count(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    """``value`` if it is a positive integer (or None when allowed), else ``ValueError`` naming ``name``."""
    if value is None and allow_none:
        return None
    if not is_count(value):
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, low: float = 0.0) -> float:
    """``value`` as a float if it is a finite number of at least ``low``, else ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number of at least {low:g}, got {value!r}")
    return float(value)


class Callback:
    """Base class of callbacks: every hook does nothing; override those you need (see the module docstring)."""

    network: Any = None
    params: Dict[str, Any] = {}

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        self.network, self.params = network, params

    def check_resume(self, path: Any) -> None:
        """Before ``fit(resume=path)`` changes anything: raise ``CheckpointError`` to refuse the resume."""

    def on_train_begin(self, logs: Logs) -> None: ...
    def on_train_end(self, logs: Logs) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs) -> None: ...
    def on_batch_begin(self, batch: int, logs: Logs) -> None: ...
    def on_batch_end(self, batch: int, logs: Logs) -> None: ...


class CallbackList:
    """The callbacks of one fit, called in order; those with ``runs_last`` end each epoch after the others."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(callback).__name__}")
        if len({id(c) for c in callbacks}) != len(callbacks):
            raise ValueError("a callback is listed twice")
        self.callbacks = list(callbacks)
        self.epoch_end = [c for c in callbacks if not getattr(c, "runs_last", False)] + \
                         [c for c in callbacks if getattr(c, "runs_last", False)]

    def __iter__(self):
        return iter(self.callbacks)

    def _each(self, hook: str, *args: Any, callbacks: Optional[List[Callback]] = None) -> None:
        for callback in self.callbacks if callbacks is None else callbacks:
            getattr(callback, hook)(*args)

    def on_train_begin(self, logs: Logs) -> None:
        self._each("on_train_begin", logs)

    def on_train_end(self, logs: Logs) -> None:
        """Every callback's ``on_train_end``, even when one of them fails (the first failure is raised after)."""
        failure = None
        for c in self.callbacks:
            try:
                c.on_train_end(logs)
            except Exception as error:  # noqa: BLE001 - the others still get to end (close a bar, write a file)
                failure = failure or error
        if failure is not None and logs.get("error") is None:
            raise failure

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        self._each("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self._each("on_epoch_end", epoch, logs, callbacks=self.epoch_end)

    def on_batch_begin(self, batch: int, logs: Logs) -> None:
        self._each("on_batch_begin", batch, logs)

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        self._each("on_batch_end", batch, logs)


class Monitor:
    """A watched value of the logs: its name, whether lower or higher is better, and what counts as better.

    ``mode`` is ``"min"``, ``"max"`` or ``"auto"`` (max for a name with
    ``accuracy`` in it, else min); a value is better than the best when it
    is lower (higher) by more than ``min_delta``; a NaN is never better.
    """

    def __init__(self, owner: str, monitor: str, mode: str, min_delta: Any) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{owner}: monitor must be the name of a logged value, got {monitor!r}")
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"{owner}: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.owner, self.name = owner, monitor
        self.mode = ("max" if "accuracy" in monitor else "min") if mode == "auto" else mode
        self.min_delta = check_number(f"{owner}: min_delta", min_delta)
        self.worst = math.inf if self.mode == "min" else -math.inf

    def check(self, params: Mapping[str, Any]) -> None:
        """A validation value needs validation data (``ValueError`` before training)."""
        if self.name.startswith("val_") and not params.get("validation"):
            raise ValueError(f"{self.owner} watches {self.name}, and this fit has no validation data: give "
                             "validation_data or validation_split")

    def better(self, value: float, best: float) -> bool:
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def value(self, logs: Mapping[str, Any]) -> float:
        if self.name not in logs:
            raise ValueError(f"{self.owner} watches {self.name!r}, which this fit does not log; it logs "
                             f"{sorted(k for k in logs if isinstance(logs[k], float))}")
        return float(logs[self.name])

    def best(self, history: Mapping[str, List[float]]) -> Tuple[int, float]:
        """``(epoch, value)`` of the best epoch of a history (the first, on ties; ``(0, worst)`` when none)."""
        best_epoch, best = 0, self.worst
        for epoch, value in enumerate(history.get(self.name, []), 1):
            if self.better(value, best):
                best_epoch, best = epoch, float(value)
        return best_epoch, best


class LearningRateScheduler(Callback):
    """Set the learning rate each epoch: with a scheduler of :mod:`nn_from_scratch.optim`, or a function of the epoch.

    ``LearningRateScheduler(scheduler)`` steps ``scheduler`` (built on the
    network's optimizer) at the end of each epoch, as
    ``NeuralNetwork(..., scheduler=...)`` does (which checkpoints also save);
    a resumed run first steps it up to the epochs already done.
    ``LearningRateScheduler(function)`` sets ``optimizer.lr =
    function(epoch)`` at the start of each epoch (counted from 1): a
    positive finite number, else ``ValueError``.
    """

    def __init__(self, schedule: Any) -> None:
        self.stepped = callable(getattr(schedule, "step", None)) and hasattr(schedule, "optimizer")
        if not self.stepped and not callable(schedule):
            raise TypeError("LearningRateScheduler needs a scheduler of nn_from_scratch.optim or a function of the "
                            f"epoch, got {type(schedule).__name__}")
        self.schedule = schedule
        self.own = False  # True for the one fit makes of the network's own scheduler

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        if self.stepped and self.schedule.optimizer is not network.optimizer:
            raise ValueError("LearningRateScheduler: the scheduler was built on another optimizer than the network's")
        if self.stepped and not self.own and self.schedule is network.scheduler:
            raise ValueError("LearningRateScheduler: the network already steps its own scheduler each epoch")
        super().set_network(network, params)

    def on_train_begin(self, logs: Logs) -> None:
        if self.stepped and not self.own:
            for _ in range(int(logs["epoch"]) - int(getattr(self.schedule, "last_epoch", logs["epoch"]))):
                self.schedule.step()

    def on_epoch_begin(self, epoch: int, logs: Logs) -> None:
        if not self.stepped:
            lr = self.schedule(epoch)
            self.network.optimizer.lr = check_number(f"the learning rate the schedule gave for epoch {epoch}", lr,
                                                     low=0.0)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self.stepped:
            self.schedule.step()


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without a better ``monitor`` value.

    After a reduction the count starts again, and ``cooldown`` epochs pass
    before it counts again; the rate never goes below ``min_lr``.  The
    count is rebuilt from the history when a run is resumed, and the rate
    itself is the optimizer's (which a checkpoint saves).  With a
    ``NeuralNetwork(scheduler=...)`` as well, the scheduler sets the rate
    each epoch and wins.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, *, mode: str = "auto",
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        self.monitor = Monitor("ReduceLROnPlateau", monitor, mode, min_delta)
        self.factor = check_number("ReduceLROnPlateau: factor", factor)
        if not self.factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be below 1, got {factor!r}")
        self.patience = check_count("ReduceLROnPlateau: patience", patience)
        self.cooldown = 0 if cooldown == 0 else check_count("ReduceLROnPlateau: cooldown", cooldown)
        self.min_lr = check_number("ReduceLROnPlateau: min_lr", min_lr)

    def set_network(self, network: Any, params: Dict[str, Any]) -> None:
        self.monitor.check(params)
        if not isinstance(getattr(network.optimizer, "lr", None), float):
            raise ValueError("ReduceLROnPlateau needs an optimizer with a float lr")
        super().set_network(network, params)

    def on_train_begin(self, logs: Logs) -> None:
        self.best, self.wait, self.cooling = self.monitor.worst, 0, 0
        for value in logs["history"].get(self.monitor.name, []):
            self._count(float(value))

    def _count(self, value: float) -> bool:
        """One more epoch's value; True when the rate is to be reduced now."""
        if self.cooling > 0:
            self.cooling -= 1
            self.wait = 0
        if self.monitor.better(value, self.best):
            self.best, self.wait = value, 0
            return False
        if self.cooling > 0:
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        self.wait, self.cooling = 0, self.cooldown
        return True

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if self._count(self.monitor.value(logs)):
            optimizer = self.network.optimizer
            optimizer.lr = max(optimizer.lr * self.factor, self.min_lr)


class TerminateOnNaN(Callback):
    """End the run quietly, with the history of the finished epochs, when the loss stops being finite.

    A batch whose loss or gradient is not finite would stop training with
    ``TrainingDiverged``; with this callback the step is undone as always,
    the epoch is dropped and ``fit`` returns.  An epoch whose logged
    values are not all finite (a validation loss that overflowed) also
    ends the run, after that epoch.
    """

    def on_batch_end(self, batch: int, logs: Logs) -> None:
        if logs.get("diverged") or not math.isfinite(logs.get("loss", 0.0)):
            self.network.stop_training = True

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        if not all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
            self.network.stop_training = True
