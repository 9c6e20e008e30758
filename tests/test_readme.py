"""Every Python example in the README runs as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import required

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    # an example that uses an optional package skips without it (in CI, where all are installed, it must run)
    for module, install, mark in (("onnx", "pip install onnx onnxruntime", "to_onnx("),
                                  ("onnxruntime", "pip install onnx onnxruntime", "to_onnx("),
                                  ("torch", "pip install torch==2.13.0", "to_torch(")):
        if mark in BLOCKS[index]:
            required(module, f"{module} is not installed: {install}")
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md example {index + 1}", "exec"), {"__name__": "__readme__"})
