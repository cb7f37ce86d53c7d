"""Which modules run compiled, and the switch to run them all interpreted.

A module is compiled by Cython, from the same source that runs interpreted, when
its first lines carry a `# cython:` directive (setup.py finds them so); the
generic C modules (decoding, the id table) are listed here. Where they were not
built (no C compiler at install), the same code runs interpreted. Setting
OPSCOCKPIT_PURE_PYTHON=1 runs everything interpreted even where it was built:
the tests use it to run both builds.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).parent
C_MODULES = ("flows._fastdecode", "flows._idtable")
PURE_ENV = "OPSCOCKPIT_PURE_PYTHON"


def cython_sources(root: Path = PACKAGE) -> list[Path]:
    """The .py files compiled by Cython: a `# cython:` directive in their first lines."""
    return sorted(
        path
        for path in root.rglob("*.py")
        if any(line.startswith("# cython:") for line in path.read_text().splitlines()[:3])
    )


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """flows/kpis/orders.py -> flows.kpis.orders"""
    return ".".join((root.name, *path.relative_to(root).with_suffix("").parts))


def compiled_modules() -> tuple[str, ...]:
    """Every module that has a compiled build."""
    return (*C_MODULES, *(module_name(path) for path in cython_sources()))


def is_compiled(module: ModuleType) -> bool:
    """Whether a module was loaded from its compiled build."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


class _Interpreted:
    """A meta path finder that loads every compiled module from its source."""

    def __init__(self) -> None:
        self.sources = {module_name(path): path for path in cython_sources()}

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name in C_MODULES:
            raise ModuleNotFoundError(f"{name} is not used with {PURE_ENV}=1", name=name)
        source = self.sources.get(name)
        return None if source is None else importlib.util.spec_from_file_location(name, source)


def interpret_everything() -> None:
    """From now on, import every compiled module from its source (or not at all)."""
    if not any(isinstance(finder, _Interpreted) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Interpreted())
