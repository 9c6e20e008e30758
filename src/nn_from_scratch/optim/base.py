r"""First-order optimizers with ``torch.optim`` semantics: the base class, its checks and its checkpoints.

Every optimizer updates ``param.value`` *in place* from the gradient that
backward accumulated in ``param.grad``; the gradient itself is never
modified, and everything is computed in the parameter's own dtype (a float32
parameter stays float32 and is never upcast).

Each optimizer writes its update twice over, as the layers do
(docs/architecture.md, "The textbook path and the fast engine"):

* the **textbook update**, its formula as in its paper and torch's
  documentation, written with the functions of the parameter's array
  namespace (``xp``, :func:`~nn_from_scratch.backend.namespace_of`), so it
  runs on NumPy, ``array_api_strict``, CuPy, ...;
* the **fast update** of :mod:`nn_from_scratch.engine.updates`, taken when
  the engine is on (:func:`nn_from_scratch.engine.fast_enabled`) and the
  parameter is a NumPy array: the single-tensor (``foreach=False``) code of
  ``torch.optim`` 2.13 operation by operation, with ``out=`` and reused
  scratch arrays, so float64 trajectories agree with PyTorch to rounding.

:meth:`Optimizer.state_dict` / :meth:`Optimizer.load_state_dict` capture the
hyper-parameters (including the current learning rate, which schedulers
change), the step count and NumPy copies of every per-parameter buffer, so a
run resumed from a checkpoint continues bit-for-bit as if it had never
stopped.  :meth:`Optimizer.to_backend` moves the buffers to another array
library (:func:`nn_from_scratch.backend.set_backend` moves a model and its
optimizer together).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from numpy import ndarray  # read for every parameter of every step: one name, not an attribute lookup

from ..backend import as_backend_array, backend_namespace, namespace_of, numpy_dtype, to_numpy
from ..engine import fast_enabled
from ..engine.updates import StepScratch
from ..parameter import Parameter
from .arguments import as_parameter_list, as_scalar, check_count, check_float

__all__ = ["Optimizer"]


def _is_array_of(a: Any, xp: ModuleType) -> bool:
    """Whether ``a`` is an array of the namespace ``xp`` (a NumPy scalar is not an array)."""
    if xp is np:
        return isinstance(a, np.ndarray)
    if isinstance(a, (np.ndarray, np.generic)) or not hasattr(a, "shape"):
        return False
    try:
        return namespace_of(a) is xp
    except TypeError:
        return False


def _described(a: Any) -> str:
    """``a`` in an error message: its library, shape and dtype for an array, else its type."""
    if hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic):
        library = type(a).__module__.split(".")[0]
        try:
            dtype = numpy_dtype(a)
        except (TypeError, ValueError):
            dtype = a.dtype
        return f"{'an' if library[0] in 'aeiou' else 'a'} {library} array of shape {tuple(a.shape)}, dtype {dtype}"
    return f"{'an' if type(a).__name__[0] in 'aeiouAEIOU' else 'a'} {type(a).__name__}"


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
    a stepped parameter carries) and :meth:`_update` (one parameter's step:
    its formula in the parameter's namespace ``xp``, or, when ``fast``, the
    engine's update of :mod:`nn_from_scratch.engine.updates`).
    ``state[i]`` is the state of ``params[i]``: empty until the first step.
    """

    #: A buffer that every stepped parameter's state holds (None: the optimizer keeps none).  A parameter's
    #: buffers move together (:meth:`to_backend`, :meth:`load_state_dict`), so this one tells where they live.
    _probe: Optional[str] = None

    def __init__(self, params: Iterable[Parameter], **defaults: Any) -> None:
        self.params: List[Parameter] = as_parameter_list(params)
        hyper = self._check_hyperparameters(dict(defaults))
        self._hyperparameter_names: Tuple[str, ...] = tuple(hyper)
        self._apply_hyperparameters(hyper)
        self.state: List[Dict[str, Any]] = [{} for _ in self.params]
        self.step_count: int = 0
        self._scratch = StepScratch()  # the fast updates' scratch arrays (copies and pickles of it are empty)

    # -- hyper-parameters ---------------------------------------------------
    @property
    def lr(self) -> float:
        """The current learning rate (a finite float >= 0; schedulers set it)."""
        return self._lr

    @lr.setter
    def lr(self, value: Any) -> None:
        self._lr = check_float("learning rate", value)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        """Validate ``hyper`` and return it normalised (Python floats/bools)."""
        if "lr" not in hyper:
            raise TypeError(f"{cls.__name__} needs a learning rate 'lr'")
        hyper["lr"] = check_float("learning rate", hyper["lr"])
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

        Every gradient is checked first (an array of its parameter's
        namespace, shape and dtype), and so is the namespace of its buffers,
        so a bad one moves no parameter at all.  A NumPy parameter takes the
        fast update while the engine is on; any other, or every one under
        :func:`nn_from_scratch.engine.textbook`, its textbook formula.
        """
        namespaces, probe = [], self._probe
        for i, (p, state) in enumerate(zip(self.params, self.state)):
            value, grad, buffer = p.value, p.grad, state.get(probe)
            xp = np if isinstance(value, ndarray) else namespace_of(value)
            if not (isinstance(grad, ndarray) if xp is np else _is_array_of(grad, xp)) \
                    or grad.shape != value.shape or (grad.dtype is not value.dtype and grad.dtype != value.dtype):
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has a gradient that is "
                                 f"{_described(grad)}; expected {_described(value)}")
            if buffer is not None and type(buffer) is not type(value) and not _is_array_of(buffer, xp):
                raise TypeError(f"{type(self).__name__}.step: the buffers of parameter {i} live in another array "
                                f"library ({_described(buffer)}) than the parameter ({_described(value)}); move "
                                "the model and its optimizer together: nn_from_scratch.backend.set_backend")
            namespaces.append(xp)
        fast = fast_enabled()
        try:
            for p, state, xp in zip(self.params, self.state, namespaces):
                self._update(p, state, xp, fast and xp is np)
        finally:
            if fast:
                self._scratch.give_back()
        self.step_count += 1

    def _update(self, p: Parameter, state: Dict[str, Any], xp: ModuleType, fast: bool) -> None:  # pragma: no cover
        """Update ``p`` in place: by the formula in ``xp``, or on the engine when ``fast`` (a NumPy parameter)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    @staticmethod
    def _gradient(p: Parameter, weight_decay: float, maximize: bool) -> Any:
        r"""The textbook :math:`g = \pm\nabla + \lambda\theta` (minus when maximizing); ``p.grad`` itself when plain."""
        g = -p.grad if maximize else p.grad
        if weight_decay != 0:
            g = g + weight_decay * p.value
        return g

    def to_backend(self, backend: str) -> "Optimizer":
        """Move every per-parameter buffer to the array library ``backend``; returns the optimizer.

        ``backend`` is a name of :data:`nn_from_scratch.backend.BACKENDS`.
        Values and dtypes are kept exactly, and everything is converted
        before anything is replaced.  The parameters move with their model:
        :func:`nn_from_scratch.backend.set_backend` moves both.
        """
        xp = backend_namespace(backend)
        moved = [{key: as_backend_array(v, xp) for key, v in entries.items() if hasattr(v, "shape")}
                 for entries in self.state]
        for entries, arrays in zip(self.state, moved):
            entries.update(arrays)
        return self

    # -- checkpoints --------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """A snapshot for exact checkpoint/resume.

        Contains the optimizer's class name, its hyper-parameters (with the
        current ``lr``), ``step_count``, the shapes and dtypes of the
        parameters, and ``state``: for every parameter index that has been
        stepped, a dict of NumPy copies of its buffers (whatever namespace
        they live in) and integer step counts.  Nothing in it aliases the
        optimizer.
        """
        state: Dict[int, Dict[str, Any]] = {}
        for i, entries in enumerate(self.state):
            if entries:
                state[i] = {
                    k: (np.array(to_numpy(v), copy=True) if hasattr(v, "shape") else v)
                    for k, v in entries.items()
                }
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": self.hyperparameters,
            "step_count": self.step_count,
            "param_shapes": [tuple(p.value.shape) for p in self.params],
            "param_dtypes": [numpy_dtype(p.value).str for p in self.params],
            "state": state,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (copies its arrays, into the parameters' namespace).

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
        name = as_scalar(state_dict["optimizer"])
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
        step_count = check_count("step_count", state_dict["step_count"])

        n = len(self.params)
        for field, actual in (
            ("param_shapes", [tuple(p.value.shape) for p in self.params]),
            ("param_dtypes", [numpy_dtype(p.value) for p in self.params]),
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
            index = check_count("parameter index", key)
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
            shape, dtype = tuple(p.value.shape), numpy_dtype(p.value)
            restored: Dict[str, Any] = {}
            for k in sorted(expected_keys):
                v = entries[k]
                if k == "step":
                    restored[k] = check_count(f"parameter {index} step", v)
                    continue
                if not isinstance(v, np.ndarray):
                    raise TypeError(
                        f"parameter {index} buffer {k!r} must be a numpy array, got {type(v).__name__}"
                    )
                if v.shape != shape or v.dtype != dtype:
                    raise ValueError(
                        f"parameter {index} buffer {k!r} has shape {v.shape} and dtype {v.dtype}, "
                        f"parameter has shape {shape} and dtype {dtype}"
                    )
                restored[k] = as_backend_array(np.array(v, copy=True, order="C"), namespace_of(p.value))
            new_state[index] = restored

        # everything checked: commit
        self._apply_hyperparameters(hyper)
        self.step_count = step_count
        self.state = new_state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"
