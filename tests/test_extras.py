"""Optional extras: the hints name the real missing package, never this project under another project's name."""
import re
import sys
from pathlib import Path

import pytest

from nn_from_scratch import extras

ROOT = Path(__file__).resolve().parents[1]
#: A distribution on the package index that is an unrelated project with the same import name.
FOREIGN_DISTRIBUTION = "nn_from_scratch"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_distribution_name_is_ours_and_pyproject_uses_it():
    text = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
    assert declared == extras.DISTRIBUTION
    assert _normalized(declared) != _normalized(FOREIGN_DISTRIBUTION)


@pytest.mark.parametrize("module", sorted(extras.EXTRAS))
def test_each_hint_names_the_package_and_the_local_extra(module):
    package, extra = extras.EXTRAS[module]
    hint = extras.install_hint(module)
    assert hint.startswith(f"pip install {package} ")
    assert f'pip install ".[{extra}]"' in hint


def test_extras_named_in_hints_exist_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    for package, extra in extras.EXTRAS.values():
        assert re.search(rf"^{extra} = \[.*{package}", text, re.M), extra


def test_no_file_tells_users_to_install_a_distribution_by_the_import_name():
    pattern = re.compile(r"pip install\s+['\"]?nn[-_.]from[-_.]scratch(?![-_.]nodes)", re.I)
    offenders = []
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("examples/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_require_names_what_needs_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "sympy", None)
    with pytest.raises(ImportError, match=r"the thing needs sympy, an optional extra: pip install sympy"):
        extras.require("sympy", "the thing")
