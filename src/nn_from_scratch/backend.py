"""Array libraries: the namespace a computation runs in, and moving a model or an optimizer to another one.

The textbook path of every layer is written against the Python array API
standard: its functions come from the *namespace* of the input
(:func:`namespace_of`), ``xp.matmul``, ``xp.sum``, ``xp.exp`` and so on, so the
same lines run on NumPy, on ``array_api_strict`` (the standard and nothing
more, which the tests use to catch a NumPy-only call) and on libraries such
as CuPy.  NumPy is the default and the only required dependency: NumPy 2 and
``array_api_strict`` arrays name their namespace themselves
(``x.__array_namespace__()``); other libraries are reached through
``array-api-compat`` (``pip install array-api-compat``), imported only when
such an array arrives.  The fast engine (:mod:`nn_from_scratch.engine`) runs
only on NumPy arrays.

A model's parameters and buffers, and an optimizer's state, live in one
namespace.  :func:`set_backend` moves them (``set_backend("array_api_strict", model,
optimizer)``), and :func:`on_backend` does so for a block and moves them back
after it.  Inputs must then come in that namespace (a mismatch is a
``TypeError`` naming both).  :func:`as_backend_array` converts an array to a
namespace by name.
"""
from __future__ import annotations

import contextlib
import importlib
from types import ModuleType
from typing import Any, Dict, Iterator

import numpy as np

__all__ = ["BACKENDS", "as_backend_array", "backend_namespace", "is_array", "is_numpy", "namespace_of", "numpy_dtype",
           "on_backend", "set_backend", "to_numpy"]

BACKENDS: Dict[str, str] = {
    "numpy": "numpy",
    "array_api_strict": "array_api_strict",
    "cupy": "cupy",
    "torch": "array_api_compat.torch",
}
"""The backends by name, and the module each is (torch through array-api-compat's wrapper)."""

_INSTALL = {"array_api_strict": "array-api-strict", "cupy": "cupy", "torch": "torch array-api-compat"}


def backend_namespace(name: str) -> ModuleType:
    """The namespace of the backend ``name`` (one of :data:`BACKENDS`); a missing library names what to install."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    try:
        return importlib.import_module(BACKENDS[name])
    except ImportError as error:
        raise ImportError(f"the {name} backend needs {error.name}: pip install {_INSTALL[name]}") from None


def is_numpy(xp: ModuleType) -> bool:
    """Whether ``xp`` is NumPy itself (the namespace the fast engine serves)."""
    return xp is np


def is_array(value: Any) -> bool:
    """Whether ``value`` is an array: NumPy's, or one of a library with an array namespace (array_api_strict,
    CuPy, torch).  Numbers, lists and NumPy scalars are not."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, (np.generic, list, tuple, int, float, complex, str, bytes)) or value is None:
        return False
    return hasattr(value, "__array_namespace__") or type(value).__module__.split(".")[0] in ("cupy", "torch")


def namespace_of(*arrays: Any) -> ModuleType:
    """The array namespace of ``arrays``: NumPy for NumPy arrays, numbers and lists, else the arrays' own.

    Arrays of two libraries are a ``TypeError`` naming both.
    """
    found = None
    for a in arrays:
        if isinstance(a, np.ndarray) or not is_array(a):
            continue  # NumPy's, or not an array at all (numbers, lists, None): NumPy takes it
        xp = _own_namespace(a)
        if found is not None and xp is not found:
            raise TypeError(f"arrays of two array libraries met: {found.__name__} and {xp.__name__}; "
                            "move the model and its inputs to one (nn_from_scratch.backend.set_backend)")
        found = xp
    return np if found is None else found


def _own_namespace(a: Any) -> ModuleType:
    method = getattr(a, "__array_namespace__", None)
    if method is not None:
        return method()
    try:
        from array_api_compat import array_namespace
    except ImportError:
        raise TypeError(f"{type(a).__module__}.{type(a).__name__} arrays need array-api-compat: "
                        "pip install array-api-compat") from None
    try:
        return array_namespace(a)
    except TypeError:
        raise TypeError(f"expected an array, got {type(a).__name__}") from None


def to_numpy(a: Any) -> np.ndarray:
    """``a`` as a NumPy array (a copy from a device where the library has one; NumPy arrays as they are)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def numpy_dtype(a: Any) -> np.dtype:
    """The NumPy dtype that ``a``'s dtype is (float32 for an ``array_api_strict`` float32 array)."""
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype
    return to_numpy(namespace_of(a).empty((0,), dtype=a.dtype)).dtype


def as_backend_array(a: Any, xp: ModuleType) -> Any:
    """``a`` (an array of any namespace) as an array of ``xp``, with the same dtype and values."""
    if namespace_of(a) is xp:
        return a
    host = to_numpy(a)
    if xp is np:
        return np.array(host, copy=True)
    return xp.asarray(np.ascontiguousarray(host))


def set_backend(backend: str, *objects: Any) -> None:
    """Move models (their parameters with their gradients, and buffers) and optimizers (their state) to ``backend``.

    ``backend`` is a name of :data:`BACKENDS`; each object's ``to_backend``
    does the move (:meth:`~nn_from_scratch.node_tree.NodeTree.to_backend`,
    :meth:`~nn_from_scratch.optim.Optimizer.to_backend`).  Values and dtypes
    are kept exactly.
    """
    backend_namespace(backend)  # a missing library is refused before anything moves
    for obj in objects:
        if not hasattr(obj, "to_backend"):
            raise TypeError(f"set_backend moves models (Nodes) and optimizers, got {type(obj).__name__}")
    for obj in objects:
        obj.to_backend(backend)


@contextlib.contextmanager
def on_backend(backend: str, *objects: Any) -> Iterator[ModuleType]:
    """Move ``objects`` to ``backend`` for the block (yielding its namespace), and back to NumPy after it."""
    set_backend(backend, *objects)
    try:
        yield backend_namespace(backend)
    finally:
        set_backend("numpy", *objects)
