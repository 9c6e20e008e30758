"""Shared fixtures: the PyTorch oracle and seeded random generators."""
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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
