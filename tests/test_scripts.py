"""The scripts users run (scripts/) and the experiment scripts (docs/experiments/scripts/) use
only the package's public names, import names that exist, and patch no library at run time."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("docs/experiments/scripts/*.py")])


def package_imports(tree: ast.AST) -> list[tuple[str, str]]:
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fractalad_edge")
        for alias in node.names
    ]


def test_there_are_scripts_to_check() -> None:
    assert {"eval_snapshots.py", "compare_latency.py"} <= {path.name for path in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_uses_public_names_that_exist_and_patches_nothing(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for module, name in package_imports(tree):
        assert not name.startswith("_") and "._" not in module, f"{path.name} imports private {module}.{name}"
        try:
            imported = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if (exc.name or "").startswith("fractalad_edge"):
                raise
            continue  # an optional package of that module is not installed here
        assert hasattr(imported, name), f"{path.name}: {module} has no {name}"
    imported_modules = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported_modules |= {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                assert target.value.id not in imported_modules, f"{path.name} patches {target.value.id}.{target.attr}"
