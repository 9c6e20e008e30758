"""The examples run top to bottom and check their own numbers.

Every ``examples/*.py`` is run as a script in a fresh interpreter, headless
(``MPLBACKEND=Agg``), with ``src`` on ``PYTHONPATH``, figures written to a
temporary folder (``NN_FROM_SCRATCH_FIGURES``). A script passes when it
exits with status 0 and prints a line containing "checks pass" (its last
statement), so a script that stops early cannot pass. There is no time
limit on a script's speed: a slow or busy machine must not fail the test.
:data:`HANG_GUARD_S` only stops a script that hangs, far beyond any
honest run (the slowest takes seconds alone and a few minutes on a loaded
two-core machine). A line ``# Requires: sympy, ...`` in a script names optional packages
without which it is skipped.
"""
from __future__ import annotations

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
#: Not a speed limit: only a guard against a script that hangs forever.
HANG_GUARD_S = 30 * 60
REQUIRES = re.compile(r"^# Requires:(.*)$", re.MULTILINE)


def required_modules(script: Path) -> list:
    """The packages named on the script's ``# Requires:`` lines."""
    names = []
    for line in REQUIRES.findall(script.read_text(encoding="utf-8")):
        names += [name.strip() for name in line.split(",") if name.strip()]
    return names


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def test_every_example_is_found():
    names = {script.name for script in SCRIPTS}
    assert {"seed_lab.py", "relu_linear_gradients.py", "mlp_digits.py", "convolution_cnn.py",
            "localization.py", "sequences.py"} <= names


def test_required_modules_are_parsed(tmp_path):
    script = tmp_path / "example.py"
    script.write_text("# %%\n# Requires: sympy, matplotlib\nimport numpy\n", encoding="utf-8")
    assert required_modules(script) == ["sympy", "matplotlib"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.stem for script in SCRIPTS])
def test_example_runs(script, tmp_path):
    for module in required_modules(script):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{script.name} needs {module}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    env["NN_FROM_SCRATCH_FIGURES"] = str(tmp_path)
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired as error:
        output = error.stdout or ""
        if isinstance(output, bytes):  # TimeoutExpired may hold bytes even with text=True
            output = output.decode("utf-8", "replace")
        pytest.fail(f"{script.name} still ran after {HANG_GUARD_S} s, so it hangs; its last output:\n{tail(output)}")
    if result.returncode != 0:
        pytest.fail(f"{script.name} exited with status {result.returncode}; stderr:\n{tail(result.stderr)}"
                    f"\n--- last lines of stdout:\n{tail(result.stdout, 15)}")
    assert "checks pass" in result.stdout, f"{script.name} did not reach its end:\n{tail(result.stdout)}"


def test_seed_lab_replays(capsys):
    pytest.importorskip("sympy")
    runpy.run_path(str(EXAMPLES / "seed_lab.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "all of the lab's checks pass" in out
    assert "-0.02721609" in out
