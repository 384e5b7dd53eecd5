"""Lazy package exports (fractalad_edge/_lazy.py): names resolve on use, imports stay light, unknown names fail plainly."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from fractalad_edge._lazy import lazy_exports

REPO_ROOT = Path(__file__).resolve().parents[1]

#: every package that exports names lazily, and a name of each
PACKAGES = {
    "fractalad_edge": "Predictor",
    "fractalad_edge.bench": "run_bench",
    "fractalad_edge.calibration": "CalibrationConfig",
    "fractalad_edge.export": "export_model",
    "fractalad_edge.quantize": "accuracy_gate",
}

#: what importing one of those packages must not pull in (an edge install may lack them all)
HEAVY = ("torch", "openvino", "onnxruntime", "nncf", "tensorrt", "onnx")


def test_lazy_exports_resolve_on_access_and_refuse_unknown_names() -> None:
    module = types.ModuleType("widget_pkg")
    module.own = 1  # type: ignore[attr-defined]
    sys.modules["widget_pkg"] = module
    try:
        module.__getattr__, module.__dir__ = lazy_exports("widget_pkg", {"dumps": "json", "sqrt": "math"})  # type: ignore[attr-defined]
        import json
        import math

        assert module.dumps is json.dumps and module.sqrt is math.sqrt  # type: ignore[attr-defined]
        assert {"own", "dumps", "sqrt"} <= set(dir(module))
        with pytest.raises(AttributeError, match=r"^module 'widget_pkg' has no attribute 'loads'$"):
            module.loads  # type: ignore[attr-defined]  # noqa: B018 - in json, but not exported
    finally:
        del sys.modules["widget_pkg"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_packages_resolve_their_lazy_names_and_list_them(package: str) -> None:
    module = importlib.import_module(package)
    name = PACKAGES[package]
    assert name in dir(module) and name in module.__all__
    with pytest.raises(AttributeError, match=rf"^module '{package}' has no attribute 'no_such_name'$"):
        module.no_such_name  # noqa: B018
    # every exported name resolves to the object its module defines (toolchain modules import their toolchain on use only)
    for lazy_name, target in getattr(module, "_LAZY", {"Predictor": "fractalad_edge.predictor"}).items():
        assert getattr(module, lazy_name) is getattr(importlib.import_module(target), lazy_name)


def test_importing_the_packages_imports_no_heavy_package() -> None:
    code = (
        "import sys\n"
        f"for name in {sorted(PACKAGES)!r}:\n"
        "    __import__(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
