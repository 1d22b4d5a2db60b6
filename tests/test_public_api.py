"""The packages' public surfaces stay small and importable; dependency direction holds."""

import ast
from pathlib import Path

import app
import datasets
import fields
import renderer

ROOT = Path(__file__).resolve().parents[1]


def test_all_names_resolve():
    for mod in (fields, renderer, datasets, app):
        assert len(mod.__all__) <= 12
        for name in mod.__all__:
            assert getattr(mod, name) is not None, (mod.__name__, name)


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_dependency_direction():
    ours = {"fields", "renderer", "datasets", "app"}
    assert _imports("fields") & ours == {"fields"}
    assert _imports("renderer") & ours <= {"renderer", "fields"}
    assert "app" not in _imports("datasets")
    for package in ("fields", "renderer", "datasets"):
        assert "dearpygui" not in _imports(package)
