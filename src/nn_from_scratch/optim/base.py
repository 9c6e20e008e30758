r"""First-order optimizers with ``torch.optim`` semantics.

Every optimizer updates ``param.value`` *in place* from the gradient that
backward accumulated in ``param.grad``; the gradient itself is never modified.
The arithmetic follows the single-tensor (``foreach=False``) code path of
``torch.optim`` 2.13 operation by operation, so float64 trajectories agree
with PyTorch to rounding, and everything is computed in the parameter's own
dtype (a float32 parameter stays float32 and is never upcast).

Each step runs on every mini-batch, so the updates use in-place ufuncs with
``out=`` and two scratch buffers per dtype instead of allocating
temporaries.  The scratch buffers come from the engine's scratch memory (a
:class:`~nn_from_scratch.engine.workspace.Workspace`, the pool the
convolution uses); one step's parameters share them, and they go back when the step is over.

:meth:`Optimizer.state_dict` / :meth:`Optimizer.load_state_dict` capture the
hyper-parameters (including the current learning rate, which schedulers
change), the step count and copies of every per-parameter buffer, so a run
resumed from a checkpoint continues bit-for-bit as if it had never stopped.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from ..engine.workspace import Workspace
from ..parameter import Parameter

__all__ = ["Optimizer"]


# --------------------------------------------------------------------------- #
# argument checking
# --------------------------------------------------------------------------- #
def _as_scalar(value: Any) -> Any:
    """Unwrap a 0-d array (as a checkpoint loaded from ``.npz`` holds) to a scalar."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_float(
    name: str,
    value: Any,
    *,
    low: Optional[float] = 0.0,
    high: Optional[float] = None,
    high_inclusive: bool = True,
    what: str = "",
) -> float:
    """Return ``value`` as a finite Python float in the allowed range.

    ``TypeError`` for something that is not a real number, ``ValueError``
    (naming the value) for a non-finite or out-of-range one.
    """
    value = _as_scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite)")
    if low is not None and result < low:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= {low}{what})")
    if high is not None and (result > high or (not high_inclusive and result == high)):
        bound = "<=" if high_inclusive else "<"
        raise ValueError(f"Invalid {name}: {value!r} (must be {bound} {high}{what})")
    return result


def _check_bool(name: str, value: Any) -> bool:
    value = _as_scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return value


def _check_betas(betas: Any) -> Tuple[float, float]:
    if isinstance(betas, np.ndarray):
        betas = betas.tolist()
    try:
        items = list(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of floats, got {type(betas).__name__}: {betas!r}") from None
    if len(items) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
    return tuple(  # type: ignore[return-value]
        _check_float(f"beta parameter at index {i}", b, low=0.0, high=1.0, high_inclusive=False)
        for i, b in enumerate(items)
    )


def _check_count(name: str, value: Any) -> int:
    value = _as_scalar(value)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}") from None
    if result < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")
    return result


def _as_parameter_list(params: Iterable[Parameter]) -> List[Parameter]:
    if isinstance(params, Parameter):
        raise TypeError(
            "params must be an iterable of Parameter objects, got a single Parameter; "
            "wrap it in a list"
        )
    try:
        params = list(params)
    except TypeError:
        raise TypeError(
            f"params must be an iterable of Parameter objects, got {type(params).__name__}"
        ) from None
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    seen = set()
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(
                f"optimizer params must be Parameter objects, got {type(p).__name__} at index {i}"
            )
        if id(p) in seen:
            raise ValueError(
                f"parameter at index {i} ({p!r}) appears more than once in params; model.parameters() lists a "
                "shared or tied Parameter once (torch only warns here, then updates it twice per step)"
            )
        seen.add(id(p))
    return params


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float, scratch: np.ndarray) -> None:
    """``start <- start + weight * (end - start)`` in place, exactly as ``torch.lerp_``.

    Torch picks the formula by the size of the weight to keep the result
    accurate at both ends; ``scratch`` must not alias ``start`` or ``end``.
    """
    np.subtract(end, start, out=scratch)
    if abs(weight) < 0.5:
        scratch *= weight
        start += scratch
    else:
        scratch *= 1.0 - weight
        np.subtract(end, scratch, out=start)


# --------------------------------------------------------------------------- #
# base class
# --------------------------------------------------------------------------- #
class Optimizer:
    r"""Base class: holds the parameters, hyper-parameters and per-parameter state.

    ``params`` is any iterable (a list, a generator, ``model.parameters()``)
    of distinct :class:`~nn_from_scratch.parameter.Parameter` objects; the
    keyword ``defaults`` are the hyper-parameters, which become attributes
    (``optimizer.lr``, ``optimizer.momentum``, ...).  ``lr`` is validated
    whenever it is set, since learning-rate schedulers assign it every epoch.

    Subclasses implement :meth:`_check_hyperparameters` (validate and
    normalise a full hyper-parameter dict), :meth:`_state_keys` (the buffers
    a stepped parameter carries) and :meth:`_update` (one parameter's step).
    ``state[i]`` is the state of ``params[i]``: empty until the first step.
    """

    def __init__(self, params: Iterable[Parameter], **defaults: Any) -> None:
        self.params: List[Parameter] = _as_parameter_list(params)
        hyper = self._check_hyperparameters(dict(defaults))
        self._hyperparameter_names: Tuple[str, ...] = tuple(hyper)
        self._apply_hyperparameters(hyper)
        self.state: List[Dict[str, Any]] = [{} for _ in self.params]
        self.step_count: int = 0
        self._workspace = Workspace(keep=4)  # scratch for the updates (copies and pickles of it are empty)
        self._scratch_sizes: Dict[np.dtype, int] = {}  # per dtype: the size of its largest parameter
        self._scratch_taken: Dict[np.dtype, List[np.ndarray]] = {}  # per dtype: taken for the step under way

    # -- hyper-parameters ---------------------------------------------------
    @property
    def lr(self) -> float:
        """The current learning rate (a finite float >= 0; schedulers set it)."""
        return self._lr

    @lr.setter
    def lr(self, value: Any) -> None:
        self._lr = _check_float("learning rate", value)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        """Validate ``hyper`` and return it normalised (Python floats/bools)."""
        if "lr" not in hyper:
            raise TypeError(f"{cls.__name__} needs a learning rate 'lr'")
        hyper["lr"] = _check_float("learning rate", hyper["lr"])
        return hyper

    def _apply_hyperparameters(self, hyper: Mapping[str, Any]) -> None:
        for name, value in hyper.items():
            setattr(self, name, value)

    @property
    def hyperparameters(self) -> Dict[str, Any]:
        """The current hyper-parameters as a new dict (``lr`` included)."""
        return {name: getattr(self, name) for name in self._hyperparameter_names}

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        """Names of the entries a parameter's state holds once it has been stepped."""
        return frozenset()

    # -- the step -----------------------------------------------------------
    def zero_grad(self) -> None:
        """Zero every parameter's gradient in place."""
        for p in self.params:
            p.zero_grad()

    def step(self) -> None:
        """Update every parameter in place from its accumulated gradient.

        Every gradient is checked first (an array of its parameter's shape and
        dtype), so a bad one moves no parameter at all.
        """
        for i, p in enumerate(self.params):
            grad = p.grad
            if not isinstance(grad, np.ndarray) or grad.shape != p.value.shape or grad.dtype != p.value.dtype:
                described = (f"shape {grad.shape}, dtype {grad.dtype}" if isinstance(grad, np.ndarray)
                             else type(grad).__name__)
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {i} has a gradient of {described}; expected an array "
                    f"of shape {p.value.shape}, dtype {p.value.dtype}"
                )
        try:
            for p, state in zip(self.params, self.state):
                self._update(p, state)
        finally:
            self._give_back_scratch()
        self.step_count += 1

    def _update(self, p: Parameter, state: Dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    def _scratch(self, like: np.ndarray, count: int = 2) -> List[np.ndarray]:
        """``count`` scratch arrays shaped and typed like ``like``, with arbitrary contents, for one update.

        Views of flat arrays from the engine workspace, as large as the
        largest parameter of that dtype (so every parameter of a dtype shares
        the same few arrays, and no step after the first allocates any).
        The parameters of one step share them (each update is done before the
        next begins); :meth:`step` gives them back when the step is over.
        """
        dtype, n = like.dtype, like.size
        size = self._scratch_sizes.get(dtype, -1)
        if size < n:
            size = max([n] + [p.value.size for p in self.params if p.value.dtype == dtype])
            self._scratch_sizes[dtype] = size
        taken = self._scratch_taken.setdefault(dtype, [])
        if taken and taken[0].size < size:  # a larger parameter of this dtype appeared: take larger arrays
            self._give_back_scratch()
            taken = self._scratch_taken.setdefault(dtype, [])
        while len(taken) < count:
            taken.append(self._workspace.take((size,), dtype))
        return [a[:n].reshape(like.shape) for a in taken[:count]]

    def _give_back_scratch(self) -> None:
        """Return the scratch arrays of the step just done to the workspace."""
        for taken in self._scratch_taken.values():
            while taken:
                self._workspace.give(taken.pop())
        self._scratch_taken.clear()

    def _effective_grad(
        self, p: Parameter, weight_decay: float, maximize: bool, out: np.ndarray
    ) -> np.ndarray:
        r"""``g = \pm \nabla + \lambda\theta`` as torch forms it, without touching ``p.grad``.

        Returns ``p.grad`` itself when no change is needed, else ``out``.
        """
        grad = p.grad
        if weight_decay != 0:
            np.multiply(p.value, weight_decay, out=out)
            if maximize:
                np.subtract(out, grad, out=out)
            else:
                np.add(grad, out, out=out)
            return out
        if maximize:
            np.negative(grad, out=out)
            return out
        return grad

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """A snapshot for exact checkpoint/resume.

        Contains the optimizer's class name, its hyper-parameters (with the
        current ``lr``), ``step_count``, the shapes and dtypes of the
        parameters, and ``state``: for every parameter index that has been
        stepped, a dict of copied numpy buffers (and integer step counts).
        Nothing in it aliases the optimizer.
        """
        state: Dict[int, Dict[str, Any]] = {}
        for i, entries in enumerate(self.state):
            if entries:
                state[i] = {
                    k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                    for k, v in entries.items()
                }
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "param_shapes": [tuple(p.value.shape) for p in self.params],
            "param_dtypes": [p.value.dtype.str for p in self.params],
            "state": state,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (copies its arrays).

        Checks that it comes from the same optimizer class, that the
        hyper-parameters are complete and valid, and that the number, shapes
        and dtypes of the parameters and of every buffer match; raises
        ``ValueError`` (or ``TypeError``) and changes nothing otherwise.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        missing = {"optimizer", "hyperparameters", "step_count", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"optimizer state_dict is missing {sorted(missing)}")
        name = _as_scalar(state_dict["optimizer"])
        if not isinstance(name, str) or name != type(self).__name__:
            raise ValueError(
                f"state_dict is for optimizer {name!r}, cannot load it into {type(self).__name__}"
            )

        hyper_in = state_dict["hyperparameters"]
        if not isinstance(hyper_in, Mapping):
            raise TypeError("state_dict['hyperparameters'] must be a mapping")
        if set(hyper_in) != set(self._hyperparameter_names):
            raise ValueError(
                f"hyper-parameters {sorted(hyper_in)} do not match "
                f"{type(self).__name__}'s {sorted(self._hyperparameter_names)}"
            )
        hyper = self._check_hyperparameters(
            {k: hyper_in[k] for k in self._hyperparameter_names}
        )
        step_count = _check_count("step_count", state_dict["step_count"])

        n = len(self.params)
        for field, actual in (
            ("param_shapes", [tuple(p.value.shape) for p in self.params]),
            ("param_dtypes", [p.value.dtype for p in self.params]),
        ):
            if field not in state_dict:
                continue
            try:
                saved = list(state_dict[field])
                saved = [tuple(int(d) for d in entry) if field == "param_shapes" else np.dtype(entry)
                         for entry in saved]
            except (TypeError, ValueError):
                raise ValueError(
                    f"state_dict[{field!r}] must list one {'shape' if field == 'param_shapes' else 'dtype'} "
                    f"per parameter, got {state_dict[field]!r}"
                ) from None
            if len(saved) != n:
                raise ValueError(
                    f"state_dict was saved for {len(saved)} parameters, this optimizer has {n}"
                )
            for i, (s, a) in enumerate(zip(saved, actual)):
                same = tuple(s) == a if field == "param_shapes" else np.dtype(s) == a
                if not same:
                    raise ValueError(
                        f"parameter {i}: state_dict has {field[6:-1]} {s!r}, parameter has {a!r}"
                    )

        per_param = state_dict["state"]
        if not isinstance(per_param, Mapping):
            raise TypeError("state_dict['state'] must be a mapping from parameter index")
        expected_keys = self._state_keys(hyper)
        new_state: List[Dict[str, Any]] = [{} for _ in self.params]
        for key, entries in per_param.items():
            index = _check_count("parameter index", key)
            if index >= n:
                raise ValueError(
                    f"state_dict has state for parameter {index}, this optimizer has {n} parameters"
                )
            if not isinstance(entries, Mapping):
                raise TypeError(f"state of parameter {index} must be a mapping")
            if not entries:
                continue
            if set(entries) != expected_keys:
                raise ValueError(
                    f"state of parameter {index} has entries {sorted(entries)}, "
                    f"expected {sorted(expected_keys)}"
                )
            p = self.params[index]
            restored: Dict[str, Any] = {}
            for k in sorted(expected_keys):
                v = entries[k]
                if k == "step":
                    restored[k] = _check_count(f"parameter {index} step", v)
                    continue
                if not isinstance(v, np.ndarray):
                    raise TypeError(
                        f"parameter {index} buffer {k!r} must be a numpy array, got {type(v).__name__}"
                    )
                if v.shape != p.value.shape or v.dtype != p.value.dtype:
                    raise ValueError(
                        f"parameter {index} buffer {k!r} has shape {v.shape} and dtype {v.dtype}, "
                        f"parameter has shape {p.value.shape} and dtype {p.value.dtype}"
                    )
                restored[k] = np.array(v, copy=True, order="C")
            new_state[index] = restored

        # everything checked: commit
        self._apply_hyperparameters(hyper)
        self.step_count = step_count
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"
