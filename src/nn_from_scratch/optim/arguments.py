"""The optimizers' argument checks: hyper-parameters, counts, parameters and groups, and each step's gradients,
each refused with its name."""
from __future__ import annotations

import math
import numbers
import operator
from types import ModuleType
from typing import Any, Iterable, List, Mapping, Optional, Tuple

import numpy as np
from numpy import ndarray  # read for every parameter of every step: one name, not an attribute lookup

from ..backend import namespace_of, numpy_dtype
from ..parameter import Parameter

__all__ = ["as_group_list", "as_parameter_list", "as_scalar", "check_betas", "check_bool", "check_count", "check_float",
           "check_group_entry", "checked_namespace"]


def as_scalar(value: Any) -> Any:
    """Unwrap a 0-d array (as a checkpoint loaded from ``.npz`` holds) to a scalar."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_float(
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
    value = as_scalar(value)
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


def check_bool(name: str, value: Any) -> bool:
    value = as_scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return value


def check_betas(betas: Any) -> Tuple[float, float]:
    if isinstance(betas, np.ndarray):
        betas = betas.tolist()
    try:
        items = list(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of floats, got {type(betas).__name__}: {betas!r}") from None
    if len(items) != 2:
        raise ValueError(f"Invalid betas: {betas!r} (must be a pair (beta1, beta2))")
    return tuple(  # type: ignore[return-value]
        check_float(f"beta parameter at index {i}", b, low=0.0, high=1.0, high_inclusive=False)
        for i, b in enumerate(items)
    )


def check_count(name: str, value: Any) -> int:
    value = as_scalar(value)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        result = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}") from None
    if result < 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= 0)")
    return result


def as_parameter_list(params: Iterable[Parameter], *, allow_empty: bool = False) -> List[Parameter]:
    """``params`` as a list of distinct Parameters, refused with the culprit named (an empty list unless allowed)."""
    if isinstance(params, Parameter):
        raise TypeError(
            "params must be an iterable of Parameter objects, got a single Parameter; "
            "wrap it in a list"
        )
    if isinstance(params, (set, frozenset)):
        raise TypeError("optimizer parameters must be given in an ordered collection (a list): the order of a set "
                        "changes between runs, and a state dict names parameters by their place in that order")
    try:
        params = list(params)
    except TypeError:
        raise TypeError(
            f"params must be an iterable of Parameter objects, got {type(params).__name__}"
        ) from None
    if not params and not allow_empty:
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


def as_group_list(params: Any) -> List[Mapping[str, Any]]:
    """The parameter groups ``params`` gives: one ``{"params": [...]}`` for Parameters, or the dicts given.

    As torch's optimizers take them: an iterable of Parameters, or an
    iterable of dicts each with ``"params"`` and its own hyper-parameters.
    """
    if isinstance(params, (Parameter, Mapping)):
        what = "a single Parameter" if isinstance(params, Parameter) else "a single dict"
        raise TypeError(f"params must be an iterable of Parameter objects or of parameter-group dicts, got {what}; "
                        "wrap it in a list")
    if isinstance(params, (set, frozenset)):
        as_parameter_list(params)  # refused, with the reason
    try:
        items = list(params)
    except TypeError:
        raise TypeError(
            f"params must be an iterable of Parameter objects, got {type(params).__name__}"
        ) from None
    if not items:
        raise ValueError("optimizer got an empty parameter list")
    groups = [item for item in items if isinstance(item, Mapping)]
    if not groups:
        return [{"params": as_parameter_list(items)}]
    if len(groups) != len(items):
        raise TypeError("params mixes Parameters and parameter-group dicts: give one or the other")
    return groups


def check_group_entry(key: Any, value: Any) -> Any:
    """A parameter group's entry that is no hyper-parameter (a scheduler's ``initial_lr``...), as a checkpoint holds it.

    Such entries are free, as in torch, as long as a checkpoint can store
    them: a string key, and a number, string, bool, None or a tuple of
    those (a NumPy scalar becomes a Python one).
    """
    if not isinstance(key, str) or key.startswith("__"):
        raise TypeError(f"a parameter group's keys are names (strings), got {key!r:.80}")
    value = as_scalar(value)
    if isinstance(value, (list, tuple)):
        return tuple(check_group_entry(key, v) for v in value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"parameter group entry {key!r} must be a number, string, bool, None or a tuple of them (what a "
                    f"checkpoint stores), got {type(value).__name__}")


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


def checked_namespace(owner: str, i: int, p: Parameter, buffer: Any = None) -> ModuleType:
    """The namespace of parameter ``i``, once its gradient (and a buffer of its state) is checked to fit it.

    ``ValueError`` for a gradient that is not an array of the parameter's
    namespace, shape and dtype; ``TypeError`` for a buffer of another
    array library.  ``owner`` names the caller in the message.
    """
    value, grad = p.value, p.grad
    xp = np if isinstance(value, ndarray) else namespace_of(value)
    if not (isinstance(grad, ndarray) if xp is np else _is_array_of(grad, xp)) \
            or grad.shape != value.shape or (grad.dtype is not value.dtype and grad.dtype != value.dtype):
        raise ValueError(f"{owner}: parameter {i} has a gradient that is {_described(grad)}; expected "
                         f"{_described(value)}")
    if buffer is not None and type(buffer) is not type(value) and not _is_array_of(buffer, xp):
        raise TypeError(f"{owner}: the buffers of parameter {i} live in another array library ({_described(buffer)}) "
                        f"than the parameter ({_described(value)}); move the model and its optimizer together: "
                        "nn_from_scratch.backend.set_backend")
    return xp
