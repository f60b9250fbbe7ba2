"""Names a package imports from its modules only when first asked for (a module-level `__getattr__`), so that
importing the package does not pay for heavy libraries that only some callers use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A `__getattr__` for `module`: a name of `homes` is imported from its home module when first asked for
    and kept in `module`; any other name raises AttributeError (so that `from package import submodule`
    falls through to importing the submodule)."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(homes[name]), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
