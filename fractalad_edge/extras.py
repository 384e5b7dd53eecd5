"""Optional dependencies, handled one way: which pip extra brings each third-party module.

The base install (numpy, OpenCV, typer) runs ``Predictor`` on any runtime that is
installed; everything else is an extra (pyproject.toml). Runtimes, exporters, the bench,
the demo and the CLI ask here whether a module is present and, when it is not, raise
:class:`RuntimeNotAvailableError` with the ``pip install`` line that brings it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import Any

from fractalad_edge.errors import RuntimeNotAvailableError

#: The pip extra that brings each third-party module the package can use (pyproject.toml lists them).
MODULE_EXTRAS: Mapping[str, str] = MappingProxyType(
    {
        "torch": "train",
        "safetensors": "train",
        "onnx": "export",
        "onnxscript": "export",
        "onnxruntime": "onnxruntime",
        "openvino": "openvino",
        "nncf": "openvino",
        "tensorrt": "tensorrt",
        "matplotlib": "bench",
        "psutil": "bench",
        "tqdm": "train",
        "ray": "ray",
    }
)


def install_hint(extra: str) -> str:
    """The command that installs an extra (or several, comma-separated)."""
    return f"pip install 'fractalad-edge[{extra}]'"


def missing_modules(modules: Collection[str]) -> list[str]:
    """Modules that cannot be imported here (a module set to None in sys.modules counts as missing)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_modules(modules: Collection[str], *, what: str) -> None:
    """Raise RuntimeNotAvailableError naming the pip extras of the missing modules."""
    missing = missing_modules(modules)
    if missing:
        extras = sorted({MODULE_EXTRAS.get(name, name) for name in missing})
        msg = (
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed; "
            f"install with: {install_hint(','.join(extras))}"
        )
        raise RuntimeNotAvailableError(msg)


#: modules whose import configures OpenVINO's usage telemetry (``import openvino`` sends an
#: event): imported with it declined (fractalad_edge/telemetry.py)
TELEMETRY_MODULES = frozenset({"openvino", "nncf"})


def require(module_name: str, extra: str | None = None) -> Any:
    """Import a third-party module, or raise RuntimeNotAvailableError naming the extra that brings it."""
    try:
        if module_name.split(".")[0] in TELEMETRY_MODULES:
            from fractalad_edge.telemetry import openvino_telemetry_declined

            with openvino_telemetry_declined():
                return importlib.import_module(module_name)
        return importlib.import_module(module_name)
    except ImportError:
        hint = install_hint(extra or MODULE_EXTRAS.get(module_name, module_name))
        msg = f"{module_name} is not installed; install it with: {hint}"
        raise RuntimeNotAvailableError(msg) from None


__all__ = ["MODULE_EXTRAS", "install_hint", "missing_modules", "require", "require_modules"]
