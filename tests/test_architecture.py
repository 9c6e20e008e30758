"""The import rules of docs/architecture.md, checked on the source: each folder imports only what lies below it.

The rules are read from the code's own import statements (``ast``), so a new
import that breaks the layering fails here with the file and the import named.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nn_from_scratch"
CORE = {"backend", "context", "parameter", "random", "extras"}
CONTRACT = CORE | {"function", "node", "node_tree", "node_shortcuts", "criterion"}

#: room -> the rooms it may import (besides itself). A room is a top-level module or folder of the package.
ALLOWED: Dict[str, Set[str]] = {
    "engine": set(),
    "backend": set(), "random": set(), "extras": set(),
    "context": {"backend"}, "parameter": {"backend"},
    "node_tree": {"backend", "parameter"},
    "function": {"backend", "context", "engine"},
    "node": {"backend", "context", "function", "node_tree", "parameter"},
    "node_shortcuts": {"context", "node"},
    "criterion": {"context", "function"},
    "nodes": CONTRACT | {"engine"},
    "containers": CONTRACT | {"nodes"},  # the Add and Concat of a wiring description
    "losses": CONTRACT | {"nodes", "engine"},
    "optim": {"parameter", "engine", "backend"},
    "files": {"extras"},
    "datasets": {"random", "files"},
    "metrics": CONTRACT,
    "gradcheck": CONTRACT,
    "symbolic": CONTRACT | {"nodes"},
    "viz": CONTRACT,
    "models": CONTRACT | {"nodes", "containers", "files"},
    # a model that describes itself: the registry of node classes, the architecture record, files that carry it
    "registry": CONTRACT | {"nodes", "containers", "files"},
    "interop": CONTRACT | {"nodes", "containers", "registry"},
    "export": CONTRACT | {"nodes", "containers", "registry", "files"},
    "training": CONTRACT | {"losses", "metrics", "files", "datasets", "engine", "viz"},
    # the course's API: its abstract classes, layers, optimizer and example network, over the library's nodes
    "interfaces": CONTRACT | {"nodes"},
    "neurons": CONTRACT | {"interfaces", "nodes", "containers"},
    "optimizers": CONTRACT | {"interfaces"},
    "examples": CONTRACT | {"interfaces"},
    "distributed": CONTRACT | {"nodes", "training", "datasets"},
}
# optimizers: the initialisers (nn_from_scratch.init), and the trainer's gradient clipping (fit's clip_grad_norm)
ALLOWED["init"] = {"backend", "parameter", "random"}
ALLOWED["training"] = ALLOWED["training"] | {"optim"}
#: The command line and the package's front door may import anything.
FREE = {"cli", "__main__", "__init__"}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported module) for every import of the package's own modules in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("nn_from_scratch"):
                continue
            if node.module is None or target == "nn_from_scratch":  # from . import engine, extras
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nn_from_scratch"):
                    yield node.lineno, alias.name


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_rule():
    rooms = {_room(_module_name(path)) for path in SOURCES}
    unruled = sorted(rooms - set(ALLOWED) - FREE)
    assert unruled == [], f"add an import rule for {unruled} to ALLOWED and to docs/architecture.md"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layering(path):
    room = _room(_module_name(path))
    if room in FREE:
        return
    allowed = {room} | ALLOWED[room]
    broken = [f"line {line}: imports {target}" for line, target in _imports(path)
              if target != "nn_from_scratch" and _room(target) not in allowed]
    assert broken == [], f"{path.relative_to(PACKAGE)} ({room}) may import only {sorted(allowed)}: {broken}"


def test_the_rules_catch_a_forbidden_import(tmp_path, monkeypatch):
    """The checker itself: an engine module that imports a layer is reported."""
    fake = tmp_path / "nn_from_scratch" / "engine"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from ..nodes import Linear\nfrom . import workspace\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "nn_from_scratch")
    found = list(_imports(fake / "bad.py"))
    assert [target for _, target in found] == ["nn_from_scratch.nodes", "nn_from_scratch.engine.workspace"]
    assert [_room(target) for _, target in found] == ["nodes", "engine"]
