"""Package attributes imported on first use (PEP 562), so that importing a light module of a
package (`models.config`, to parse a command line) does not import torch with it (~2 s)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[list[str], Callable]:
    """`__all__` and a module `__getattr__` for PACKAGE, whose names EXPORTS lists by module."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home[name]), name)

    return sorted(home), __getattr__
