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
