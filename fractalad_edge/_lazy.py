"""Names a package exports but imports on first use (PEP 562), so importing the package stays light.

A package that re-exports from heavy submodules (torch, a runtime, a toolchain) lists them
in a table ``{name: module}`` and installs the pair this returns::

    __getattr__, __dir__ = lazy_exports(__name__, {"run_bench": "fractalad_edge.bench.matrix"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(module_name: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``module_name`` that resolve ``table``'s names on access.

    ``__getattr__`` imports ``table[name]`` and returns its attribute of that name; an unknown
    name raises AttributeError naming the module, as a plain module would. Nothing is
    imported here. ``__dir__`` lists the module's own names and the lazy ones.
    """
    exports = dict(table)

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's name
        target = exports.get(name)
        if target is None:
            msg = f"module {module_name!r} has no attribute {name!r}"
            raise AttributeError(msg)
        return getattr(importlib.import_module(target), name)

    def __dir__() -> list[str]:  # noqa: N807 - the module hook's name
        return sorted(set(vars(sys.modules[module_name])) | set(exports))

    return __getattr__, __dir__
