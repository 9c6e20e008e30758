"""Shared fixtures: the PyTorch oracle, seeded random generators, both model-file formats, both engine paths."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

REQUIRE_ORACLE = os.environ.get("NN_FROM_SCRATCH_REQUIRE_ORACLE") == "1"


def required(module: str, message: str):
    """Import ``module`` for a test; without it the test skips, or fails where CI sets NN_FROM_SCRATCH_REQUIRE_ORACLE=1."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the machine
        if REQUIRE_ORACLE:
            pytest.fail(message + " (NN_FROM_SCRATCH_REQUIRE_ORACLE=1 is set)")
        pytest.skip(message)


@pytest.fixture(scope="session")
def torch():
    """The torch module for oracle tests.

    Skips the test when torch is not installed, unless the environment sets
    NN_FROM_SCRATCH_REQUIRE_ORACLE=1 (CI does), in which case it fails.
    """
    torch_module = required("torch", "torch is not installed; the PyTorch oracle tests need torch==2.13.0")
    torch_module.set_num_threads(1)
    return torch_module


#: The model-file formats, by suffix.
SUFFIXES = [".npz", ".safetensors"]


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    """Each model-file format; ``.safetensors`` needs the safetensors extra (required in CI, as the oracle is)."""
    if request.param == ".safetensors":
        required("safetensors", "the safetensors extra is not installed (pip install safetensors)")
    return request.param


@pytest.fixture(params=["fast", "textbook"])
def engine_path(request):
    """Run the test with the fast engine on, and again on the textbook paths (see nn_from_scratch.engine)."""
    from nn_from_scratch import engine

    previous = engine.fast_enabled()
    engine.set_fast(request.param == "fast")
    yield request.param
    engine.set_fast(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


#: What each optional package's absence skips, and how to install it (the one line of the summary below).
OPTIONAL = {
    "torch": "pip install torch==2.13.0",
    "array-api-strict": "pip install array-api-strict",
    "array-api-compat": "pip install array-api-compat",
    "safetensors": "pip install safetensors",
    "sympy": "pip install sympy",
    "matplotlib": "pip install matplotlib",
    "tqdm": "pip install tqdm",
    "Fashion-MNIST": "apt-get install dataset-fashion-mnist",
    "mpi4py": "pip install mpi4py mpich",
    "onnx": "pip install onnx onnxruntime",
    "onnxruntime": "pip install onnx onnxruntime",
}


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line that says what was skipped for want of an optional package, and how to install each."""
    counts = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr).lower()
        for name in OPTIONAL:
            if name.lower() in reason and ("not installed" in reason or "no module named" in reason
                                           or "could not import" in reason):
                counts[name] = counts.get(name, 0) + 1
                break
    if counts:
        parts = ", ".join(f"{count} without {name} ({OPTIONAL[name]})" for name, count in sorted(counts.items()))
        terminalreporter.write_line(f"optional packages missing: tests skipped: {parts}")
