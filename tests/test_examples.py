"""The examples run top to bottom and check their own numbers."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_seed_lab_replays(capsys):
    pytest.importorskip("sympy")
    runpy.run_path(str(EXAMPLES / "seed_lab.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "all of the lab's checks pass" in out
    assert "-0.02721609" in out
