"""Every public function and method of jaxpg is annotated: each parameter and the return.

Public means a name without a leading underscore, defined in the module that holds it: a
module-level function, or a method (a ``@property`` getter, setter or deleter, a static or class
method included) of a module-level class, as attribute lookup finds it on that class; a method
it inherits from a class of the same module (a private base's too) counts, one inherited from
another module does not. Dunder methods (a dataclass's generated ``__init__``) and a
NamedTuple's fields are not looked at. ``self`` and ``cls`` need no annotation; ``*args`` and
``**kwargs`` do.

No module is exempt (no xfail, no skip): an unannotated public name anywhere in the package
fails :func:`test_public_names_are_annotated`, whose message lists every offender as
``module.qualname: parameter`` (``return`` for a missing return annotation).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import jaxpg


def _modules() -> list[ModuleType]:
    """The package and every module in it, subpackages' modules included (``jaxpg.suites.*``;
    ``jaxpg.__main__`` too: importing it runs nothing)."""
    return [jaxpg] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(jaxpg.__path__, prefix="jaxpg.")
    ]


def _callables(value: Any) -> Iterator[Any]:
    """The functions behind a class attribute: a method, static/class method or property."""
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        yield from (f for f in (value.fget, value.fset, value.fdel) if f is not None)
    elif inspect.isfunction(value):
        yield value


def _public_functions(module: ModuleType) -> Iterator[Any]:
    """The module's public functions, and the public methods of its public classes."""
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield obj
        elif inspect.isclass(obj):
            for attr in sorted({a for k in obj.__mro__ for a in vars(k)}):
                if attr.startswith("_"):  # private names and dunders
                    continue
                owner = next(k for k in obj.__mro__ if attr in vars(k))  # as lookup finds it
                if owner.__module__ != module.__name__:  # inherited from another module
                    continue
                for fn in _callables(vars(owner)[attr]):
                    if fn.__module__ == module.__name__:
                        yield fn


def _missing(fn: Any) -> list[str]:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if "." in fn.__qualname__ and params and params[0].name in ("self", "cls"):
        params = params[1:]
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _offenders(modules: list[ModuleType]) -> list[str]:
    """``module.qualname: parameter`` for every missing annotation, each function once."""
    functions = {fn: module for module in modules for fn in _public_functions(module)}
    return sorted(
        f"{module.__name__}.{fn.__qualname__}: {param}"
        for fn, module in functions.items()
        for param in _missing(fn)
    )


_SAMPLE = """
from __future__ import annotations

from typing import NamedTuple

from collections.abc import Iterator  # imported from another module: not checked


class _Base:
    def inherited(self, x) -> None: ...
    def overridden(self, x): ...


class Public(_Base):
    def method(self, a: int, *args, **kwargs: int) -> None: ...
    def overridden(self, x: int) -> None: ...
    @property
    def prop(self): ...
    @classmethod
    def make(cls, n) -> Public: ...
    @staticmethod
    def static(cls: int) -> int: ...
    def _private(self, y): ...


class Row(NamedTuple):
    a: int
    def total(self) -> int: ...


class _Hidden:
    def method(self, z): ...


def fn(a, b: int): ...
def annotated(a: int, *, b: str = "") -> str: ...
def _helper(c): ...
"""


def test_the_check_lists_every_missing_annotation():
    module = ModuleType("sample")
    exec(compile(_SAMPLE, "sample.py", "exec"), module.__dict__)
    assert _offenders([module]) == [
        "sample.Public.make: n",
        "sample.Public.method: args",
        "sample.Public.prop: return",
        "sample._Base.inherited: x",
        "sample.fn: a",
        "sample.fn: return",
    ]


def test_every_module_is_imported():
    modules = _modules()
    names = {m.__name__ for m in modules}
    assert {"jaxpg.config", "jaxpg.train", "jaxpg.distributed", "jaxpg.__main__"} <= names
    assert {"jaxpg.suites", "jaxpg.suites.brax", "jaxpg.suites.jumanji"} <= names
    assert len({fn for m in modules for fn in _public_functions(m)}) > 200  # not vacuous


def test_public_names_are_annotated():
    offenders = _offenders(_modules())
    if offenders:
        message = f"{len(offenders)} missing annotation(s) on public names:\n"
        pytest.fail(message + "\n".join(offenders), pytrace=False)
