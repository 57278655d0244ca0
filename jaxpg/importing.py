"""Objects by import path, ``"package.module:attr"``: how a run directory names what is not
jaxpg's own (a config class, an algorithm's builder, a policy, an environment class).

This module imports nothing heavy, so the CLI can use it before JAX starts.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_path(path: str) -> Any:
    """The object at ``"package.module:attr"`` (``attr`` may be dotted: ``Outer.Inner``).

    Raises:
      ValueError: ``path`` is not of that form.
      ImportError, AttributeError: the module or the attribute is not there.
    """
    module, sep, attr = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not sep or not module or not attr:
        raise ValueError(f"{path!r} is not an import path 'module:attr'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def path_of(obj: Any) -> str | None:
    """``"module:qualname"`` of a module-level class or function that imports back to ``obj``
    itself, or ``None`` (a lambda, a closure, a class defined in a function, ``__main__``)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    try:
        return path if import_path(path) is obj else None
    except (ImportError, AttributeError, ValueError):
        return None
