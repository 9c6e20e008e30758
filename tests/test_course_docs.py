"""docs/course.md: every python block runs as written, and the page names what it must."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "course.md"
TEXT = PAGE.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_a_block_runs(index, capsys):
    state = np.random.get_state()
    try:
        exec(compile(BLOCKS[index], f"docs/course.md block {index + 1}", "exec"), {"__name__": "__course_page__"})
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("name", ["interfaces", "neurons", "optimizers", "examples.simple_nn", "nodes.SoftMaxLoss",
                                  "nodes.MSELoss", "optim.GradientDescent", "wrt=", "use_jacobian", "W_jacobian",
                                  "limit_reached", "padding", "NormalizedSoftMax"])
def test_the_page_names(name):
    assert name in TEXT
