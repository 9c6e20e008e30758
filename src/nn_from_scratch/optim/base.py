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
parameter groups and their hyper-parameters in torch's layout (the current
learning rates, which schedulers change, among them), the step count and
NumPy copies of every per-parameter buffer, so a run resumed from a
checkpoint continues bit-for-bit as if it had never stopped.
:meth:`Optimizer.to_backend` moves the buffers to another array library
(:func:`nn_from_scratch.backend.set_backend` moves a model and its optimizer
together).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from numpy import ndarray  # read for every parameter of every step: one name, not an attribute lookup

from ..backend import as_backend_array, backend_namespace, namespace_of, numpy_dtype, to_numpy
from ..engine import fast_enabled
from ..engine.updates import StepScratch
from ..parameter import Parameter
from .arguments import (as_group_list, as_parameter_list, as_scalar, check_count, check_float, check_group_entry,
                        checked_namespace)
from .groups import ParamGroup, check_parameter_lists, pack_groups, unpack_groups

__all__ = ["Optimizer"]


# --------------------------------------------------------------------------- #
# base class
# --------------------------------------------------------------------------- #
class Optimizer:
    r"""Base class: holds the parameter groups, their hyper-parameters and the per-parameter state.

    ``params`` is an iterable (a list, a generator, ``model.parameters()``)
    of distinct :class:`~nn_from_scratch.parameter.Parameter` objects, or,
    as in torch, of dicts, each a **parameter group** with ``"params"`` and
    the hyper-parameters it sets for its own parameters
    (``[{"params": body, "lr": 1e-3}, {"params": head}]``); the keyword
    ``defaults`` are the hyper-parameters of every group that does not set
    its own (torch's ``defaults``).  :meth:`add_param_group` adds a group
    later (a layer unfrozen mid-run).

    ``param_groups[i]`` is a dict (:class:`~nn_from_scratch.optim.groups.ParamGroup`)
    that checks a hyper-parameter when it is set, as schedulers set
    ``"lr"``.  ``optimizer.lr`` (and ``optimizer.momentum``, ...) read the
    value every group shares (``AttributeError`` where they differ: read
    ``param_groups`` then) and set it in every group.  ``params`` lists
    every group's parameters in order, and ``state[i]`` is the state of
    ``params[i]``: empty until its first step.

    Subclasses implement :meth:`_check_hyperparameters` (validate and
    normalise a full hyper-parameter dict), :meth:`_state_keys` (the buffers
    a stepped parameter of a group carries) and :meth:`_update` (one
    parameter's step with its group's hyper-parameters: its formula in the
    parameter's namespace ``xp``, or, when ``fast``, the engine's update of
    :mod:`nn_from_scratch.engine.updates`).
    """

    #: A buffer that every stepped parameter's state holds (None: the optimizer keeps none).  A parameter's
    #: buffers move together (:meth:`to_backend`, :meth:`load_state_dict`), so this one tells where they live.
    _probe: Optional[str] = None
    #: Hyper-parameters added after state dicts were first written, with the value an older state dict meant;
    #: ``state_dict()["hyperparameters"]`` leaves them out at that value, so it reads as it did.
    _later_hyperparameters: Dict[str, Any] = {}
    #: The state entries that are numbers rather than arrays, with the check of each.
    _scalar_state: Dict[str, Any] = {"step": check_count}
    #: Whether the optimizer takes several parameter groups (L-BFGS does not, as in torch).
    _several_groups = True

    def __init__(self, params: Iterable[Any], **defaults: Any) -> None:
        hyper = self._check_hyperparameters(dict(defaults))
        self._hyperparameter_names: Tuple[str, ...] = tuple(hyper)
        self.defaults: Dict[str, Any] = hyper
        self.param_groups: List[ParamGroup] = []
        self.params: List[Parameter] = []
        self.state: List[Dict[str, Any]] = []
        self._owners: List[ParamGroup] = []  # the group of each of self.params
        self.step_count: int = 0
        self._scratch = StepScratch()  # the fast updates' scratch arrays (copies and pickles of it are empty)
        groups = as_group_list(params)
        if len(groups) > 1 and not self._several_groups:
            raise ValueError(f"{type(self).__name__} doesn't support per-parameter options (parameter groups)")
        for group in groups:
            self.add_param_group(group)

    # -- parameter groups ---------------------------------------------------
    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group: ``{"params": [...], **hyper-parameters}``, the others taken from :attr:`defaults`.

        As torch's: its parameters must be new to the optimizer, its
        hyper-parameters are checked as the constructor's, and any other
        entry is kept (if a checkpoint can hold it).  Nothing changes when
        it is refused.
        """
        if self.param_groups and not self._several_groups:
            raise ValueError(f"{type(self).__name__} doesn't support per-parameter options (parameter groups)")
        if not isinstance(param_group, Mapping):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs its 'params'")
        given = param_group["params"]
        params = as_parameter_list([given] if isinstance(given, Parameter) else given, allow_empty=True)
        known = {id(p) for p in self.params}
        if any(id(p) in known for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        names = self._hyperparameter_names
        hyper = self._check_hyperparameters({**self.defaults, **{k: param_group[k] for k in names
                                                                 if k in param_group}})
        extras = {key: check_group_entry(key, value) for key, value in param_group.items()
                  if key not in names and key != "params"}
        group = ParamGroup({"params": params, **hyper, **extras}, type(self), names)
        self.param_groups.append(group)
        self.params.extend(params)
        self.state.extend({} for _ in params)
        self._owners.extend([group] * len(params))

    # -- hyper-parameters ---------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate every group shares (a finite float >= 0, which schedulers set); setting it sets all."""
        return self._shared("lr")

    @lr.setter
    def lr(self, value: Any) -> None:
        self._set_everywhere("lr", value)

    def _shared(self, name: str) -> Any:
        values = [group[name] for group in self.param_groups]
        if any(value != values[0] for value in values[1:]):
            raise AttributeError(f"the parameter groups of this {type(self).__name__} have different {name} values "
                                 f"{values}: read optimizer.param_groups[i][{name!r}]")
        return values[0]

    def _set_everywhere(self, name: str, value: Any) -> None:
        """``group[name] = value`` in every group, each checked before any is changed."""
        checked = [group.checked(name, value) for group in self.param_groups]
        for group, entry in zip(self.param_groups, checked):
            dict.__setitem__(group, name, entry)

    def __getattr__(self, name: str) -> Any:
        if name in self.__dict__.get("_hyperparameter_names", ()):  # only after __init__ has set the names
            return self._shared(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "lr" and name in self.__dict__.get("_hyperparameter_names", ()):
            self._set_everywhere(name, value)
        else:
            object.__setattr__(self, name, value)

    @classmethod
    def _check_hyperparameters(cls, hyper: Dict[str, Any]) -> Dict[str, Any]:
        """Validate ``hyper`` and return it normalised (Python floats/bools)."""
        if "lr" not in hyper:
            raise TypeError(f"{cls.__name__} needs a learning rate 'lr'")
        hyper["lr"] = check_float("learning rate", hyper["lr"])
        return hyper

    @property
    def hyperparameters(self) -> Dict[str, Any]:
        """The optimizer-wide hyper-parameters (torch's ``defaults``), a new dict; the groups' own: ``param_groups``."""
        return dict(self.defaults)

    def _state_keys(self, hyper: Mapping[str, Any]) -> frozenset:
        """Names of the entries a parameter's state holds once it has been stepped with the group ``hyper``."""
        return frozenset()

    # -- the step -----------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every parameter's gradient: in place, or (``set_to_none=True``) as a fresh array of zeros.

        Torch's ``set_to_none=True`` (its default since 2.0) drops the
        gradient tensor, which frees its memory until the next backward
        pass.  A :class:`~nn_from_scratch.parameter.Parameter` always holds
        a gradient array, so the nearest this library comes is to give it a
        new array of zeros and leave the old one to whoever still holds it,
        unchanged, as torch leaves the old tensor.  That saves nothing here,
        and zeroing in place keeps every array read from ``.grad`` current,
        so the default stays ``False``.
        """
        if set_to_none:
            for p in self.params:
                value = p.value
                p.grad = np.zeros_like(value) if isinstance(value, ndarray) else namespace_of(value).zeros_like(value)
                p.fresh_zero = True  # a new array of zeros: the engine may write a first gradient into it
        else:
            for p in self.params:
                p.zero_grad()

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """Update every parameter in place from its accumulated gradient; returns what ``closure()`` returned.

        ``closure``, as torch's, re-evaluates the model: it zeroes the
        gradients, runs forward and backward, and returns the loss; it is
        called once, before the update.  Every gradient is checked first
        (an array of its parameter's namespace, shape and dtype), and so is
        the namespace of its buffers, so a bad one moves no parameter at
        all.  A NumPy parameter takes the fast update while the engine is
        on; any other, or every one under
        :func:`nn_from_scratch.engine.textbook`, its textbook formula.
        """
        loss = None
        if closure is not None:
            if not callable(closure):
                raise TypeError(f"closure must be callable (re-evaluate the model and return the loss), got "
                                f"{type(closure).__name__}")
            loss = closure()
        namespaces = self._checked_namespaces()
        fast = fast_enabled()
        try:
            for p, state, group, xp in zip(self.params, self.state, self._owners, namespaces):
                self._update(p, state, group, xp, fast and xp is np)
        finally:
            if fast:
                self._scratch.give_back()
        self.step_count += 1
        return loss

    def _checked_namespaces(self) -> List[ModuleType]:
        """The namespace of each parameter, once every gradient and buffer has been checked to fit it."""
        owner, probe = f"{type(self).__name__}.step", self._probe
        return [checked_namespace(owner, i, p, state.get(probe)) for i, (p, state) in enumerate(zip(self.params,
                                                                                                    self.state))]

    def _update(self, p: Parameter, state: Dict[str, Any], group: Mapping[str, Any], xp: ModuleType,
                fast: bool) -> None:  # pragma: no cover
        """Update ``p`` in place with ``group``'s hyper-parameters: by the formula in ``xp``, or on the engine when
        ``fast`` (a NumPy parameter)."""
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

        Contains the optimizer's class name, ``hyperparameters`` (its
        :attr:`defaults`; a hyper-parameter added to the class later is
        left out at the value older snapshots meant), ``param_groups`` in
        torch's layout (each group's hyper-parameters, the current ``lr``
        among them, its other entries, and ``params``: the indices of its
        parameters), ``step_count``, the shapes and dtypes of the
        parameters, and ``state``: for every parameter index that has been
        stepped, a dict of NumPy copies of its buffers (whatever namespace
        they live in) and its numbers (step counts).  Nothing in it aliases
        the optimizer.
        """
        state: Dict[int, Dict[str, Any]] = {}
        for i, entries in enumerate(self.state):
            if entries:
                state[i] = {
                    k: (np.array(to_numpy(v), copy=True) if hasattr(v, "shape") else v)
                    for k, v in entries.items()
                }
        later = self._later_hyperparameters
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": {k: v for k, v in self.defaults.items() if k not in later or v != later[k]},
            "param_groups": pack_groups(self.param_groups),
            "step_count": self.step_count,
            "param_shapes": [tuple(p.value.shape) for p in self.params],
            "param_dtypes": [numpy_dtype(p.value).str for p in self.params],
            "state": state,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (copies its arrays, into the parameters' namespace).

        Checks that it comes from the same optimizer class, that the
        hyper-parameters are complete and valid, and that the groups, the
        number, shapes and dtypes of the parameters and of every buffer
        match; raises ``ValueError`` (or ``TypeError``) and changes nothing
        otherwise.  A snapshot written before parameter groups (no
        ``param_groups``; its ``hyperparameters`` were the one group's
        current values) loads into an optimizer of one group.
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
        names, later = self._hyperparameter_names, self._later_hyperparameters
        hyper_in = state_dict["hyperparameters"]
        if not isinstance(hyper_in, Mapping):
            raise TypeError("state_dict['hyperparameters'] must be a mapping")
        if not set(names) - set(later) <= set(hyper_in) <= set(names):
            raise ValueError(
                f"hyper-parameters {sorted(hyper_in)} do not match "
                f"{type(self).__name__}'s {sorted(names)}"
            )
        defaults = self._check_hyperparameters({k: hyper_in[k] if k in hyper_in else later[k] for k in names})
        step_count = check_count("step_count", state_dict["step_count"])
        check_parameter_lists(state_dict, self.params)
        if "param_groups" in state_dict:
            entries, index_map = unpack_groups(state_dict["param_groups"], self.param_groups, type(self), names, later)
        else:  # written before parameter groups: one group, whose values "hyperparameters" held
            if len(self.param_groups) != 1:
                raise ValueError(f"state_dict has no 'param_groups' (it was written for an optimizer of one group); "
                                 f"this optimizer has {len(self.param_groups)} groups")
            group = self.param_groups[0]
            entries = [{**{k: v for k, v in group.items() if k not in names}, **defaults}]
            index_map = {i: i for i in range(len(self.params))}
        new_state = self._checked_state(state_dict["state"], index_map, entries)

        # everything checked: commit
        self.defaults = defaults
        for group, new in zip(self.param_groups, entries):
            dict.clear(group)
            dict.update(group, new)
        self.step_count = step_count
        self.state = new_state

    def _checked_state(self, per_param: Any, index_map: Mapping[int, int],
                       groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The snapshot's per-parameter state, checked and copied into each parameter's namespace, by flat index."""
        if not isinstance(per_param, Mapping):
            raise TypeError("state_dict['state'] must be a mapping from parameter index")
        owner = [group for group in groups for _ in group["params"]]
        new_state: List[Dict[str, Any]] = [{} for _ in self.params]
        for key, entries in per_param.items():
            saved_index = check_count("parameter index", key)
            if saved_index not in index_map:
                raise ValueError(
                    f"state_dict has state for parameter {saved_index}, which none of its parameter groups lists "
                    f"(this optimizer has {len(self.params)} parameters)"
                )
            index = index_map[saved_index]
            if not isinstance(entries, Mapping):
                raise TypeError(f"state of parameter {index} must be a mapping")
            if entries:
                new_state[index] = self._restored_entries(index, entries, owner[index])
        return new_state

    def _restored_entries(self, index: int, entries: Mapping[str, Any], hyper: Mapping[str, Any]) -> Dict[str, Any]:
        """One parameter's saved state, checked against its group ``hyper`` and copied (arrays into its namespace)."""
        expected_keys = self._state_keys(hyper)
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
            if k in self._scalar_state:
                restored[k] = self._scalar_state[k](f"parameter {index} {k}", v)
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
        return restored

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        groups = f", {len(self.param_groups)} groups" if len(self.param_groups) != 1 else ""
        return f"{type(self).__name__}({len(self.params)} parameters{groups}, {hyper})"
