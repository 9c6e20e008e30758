"""Shared fixtures: the PyTorch oracle, seeded random generators, both model-file formats, both engine paths."""
from __future__ import annotations

import os

import numpy as np
import pytest

REQUIRE_ORACLE = os.environ.get("NN_FROM_SCRATCH_REQUIRE_ORACLE") == "1"


@pytest.fixture(scope="session")
def torch():
    """The torch module for oracle tests.

    Skips the test when torch is not installed, unless the environment sets
    NN_FROM_SCRATCH_REQUIRE_ORACLE=1 (CI does), in which case it fails.
    """
    try:
        import torch as torch_module
    except ImportError:  # pragma: no cover - depends on the machine
        message = "torch is not installed; the PyTorch oracle tests need torch==2.13.0"
        if REQUIRE_ORACLE:
            pytest.fail(message + " (NN_FROM_SCRATCH_REQUIRE_ORACLE=1 is set)")
        pytest.skip(message)
    torch_module.set_num_threads(1)
    return torch_module


#: The model-file formats, by suffix.
SUFFIXES = [".npz", ".safetensors"]


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    """Each model-file format; ``.safetensors`` needs the safetensors extra (required in CI, as the oracle is)."""
    if request.param == ".safetensors":
        try:
            import safetensors  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the machine
            message = "the safetensors extra is not installed (pip install safetensors)"
            if REQUIRE_ORACLE:
                pytest.fail(message + " (NN_FROM_SCRATCH_REQUIRE_ORACLE=1 is set)")
            pytest.skip(message)
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
