"""The one table of algorithms: name -> (config class, builder ``(config, agent) -> Algorithm``).

The CLI's subcommands, the run directory's ``config.json``, checkpoints and the benchmarks all
read it. A built-in algorithm is one module holding its config and its builder (``jaxpg/ppo.py``,
...) plus one line of ``_BUILTIN`` below; an algorithm of your own is one :func:`register` call
in your module (``jaxpg train --import my_module`` or the ``jaxpg.algorithms`` entry-point group
imports it for the command line)::

    jaxpg.registry.register("my-a2c", MyA2CConfig, make_my_a2c)

The built-in entries are named by import path, so listing the names imports nothing heavy (the
CLI needs them before ``jax.distributed.initialize``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from jaxpg.importing import import_path

if TYPE_CHECKING:  # annotations only: listing the names must import nothing heavy
    from jaxpg.agents import Agent
    from jaxpg.algorithms import Algorithm
    from jaxpg.config import Config

_BUILTIN = {
    "ppo": ("jaxpg.ppo:PPOConfig", "jaxpg.ppo:make_ppo"),
    "a2c": ("jaxpg.a2c:A2CConfig", "jaxpg.a2c:make_a2c"),
    "trpo": ("jaxpg.trpo:TRPOConfig", "jaxpg.trpo:make_trpo"),
    "reinforce": ("jaxpg.reinforce:ReinforceConfig", "jaxpg.reinforce:make_reinforce"),
    "grpo": ("jaxpg.grpo:GRPOConfig", "jaxpg.grpo:make_grpo"),
}
_REGISTERED: dict[str, Entry] = {}


class Entry(NamedTuple):
    config_class: type
    build: Callable[[Any, Any], Any]  # (config, agent) -> Algorithm


def names() -> tuple[str, ...]:
    """Every registered algorithm name, built-in ones first."""
    return tuple(_BUILTIN) + tuple(n for n in _REGISTERED if n not in _BUILTIN)


def register(name: str, config_class: type, build: Callable[[Any, Any], Any]) -> None:
    """Adds (or replaces) algorithm ``name``. ``config_class`` must set the class attribute
    ``algorithm = name``, so a saved ``config.json`` finds its way back here."""
    if getattr(config_class, "algorithm", None) != name:
        raise ValueError(
            f"config_class: {config_class.__name__}.algorithm must be {name!r}, got "
            f"{getattr(config_class, 'algorithm', None)!r}"
        )
    _REGISTERED[name] = Entry(config_class, build)


def lookup(name: str) -> Entry:
    """The entry of algorithm ``name``; a ``ValueError`` lists the known names."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        config_path, build_path = _BUILTIN[name]
        return Entry(import_path(config_path), import_path(build_path))
    raise ValueError(f"algorithm={name!r} is invalid: one of {list(names())}")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def config_class(name: str) -> type:
    return lookup(name).config_class


def for_config(config: Config) -> Entry:
    """The entry whose config class is ``type(config)`` (by its ``algorithm`` name)."""
    name = getattr(type(config), "algorithm", None)
    if name is None or not isinstance(name, str):
        raise ValueError(f"config: {type(config).__name__} names no registered algorithm")
    entry = lookup(name)
    if not isinstance(config, entry.config_class):
        raise ValueError(
            f"config: a {_qualified(type(config))} says algorithm={name!r}, whose registered "
            f"config class is {_qualified(entry.config_class)} (was {name!r} registered twice?)"
        )
    return entry


def make_algorithm(config: Config, agent: Agent) -> Algorithm:
    """The registered :class:`jaxpg.Algorithm` for ``config`` and ``agent``."""
    return for_config(config).build(config, agent)
