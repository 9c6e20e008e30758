"""Optional extras: import a package on first use, or say exactly what to install.

The core needs NumPy alone.  Plots (matplotlib), symbolic Jacobians (SymPy),
``.safetensors`` files (safetensors) and tqdm's progress bars are optional;
each is imported only where it is used, through :func:`require`, whose error
names the real package on the package index and the extra of a checkout of
this project.  The project's own distribution name is
:data:`DISTRIBUTION`; the hints never name it, since a user outside a
checkout should install the missing package itself, not this project again.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["DISTRIBUTION", "EXTRAS", "available", "install_hint", "require"]

#: The name this project is installed under (``pip install .`` from a checkout).
DISTRIBUTION = "nn-from-scratch-nodes"

#: import name -> (package on the package index, extra of this project that brings it)
EXTRAS = {
    "matplotlib": ("matplotlib", "plot"),
    "sympy": ("sympy", "symbolic"),
    "safetensors": ("safetensors", "safetensors"),
    "tqdm": ("tqdm", "progress"),
    "torch": ("torch", "torch"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
}


def install_hint(module: str) -> str:
    """How to install the package behind ``module``: ``pip install matplotlib (or pip install ".[plot]" ...)``."""
    package, extra = EXTRAS[module]
    return f'pip install {package} (or pip install ".[{extra}]" from a checkout of this project)'


def available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (for example ``"matplotlib.figure"``) or raise ImportError saying ``what`` needs it."""
    top = module.split(".")[0]
    try:
        importlib.import_module(top)  # first, so that a blocked top-level package is noticed
        return importlib.import_module(module)
    except ImportError:
        package, _ = EXTRAS[top]
        raise ImportError(f"{what} needs {package}, an optional extra: {install_hint(top)}") from None
