"""The one table of algorithms: name -> (config class, builder ``(config, agent) -> Algorithm``).

The CLI's subcommands, the run directory's ``config.json``, checkpoints and the benchmarks all
read it, so adding an algorithm touches this table only (or one :func:`register` call, for an
algorithm of your own)::

    jaxpg.registry.register("my-a2c", MyA2CConfig, make_my_a2c)

The built-in entries are named by import path, so listing the names imports nothing heavy (the
CLI needs them before ``jax.distributed.initialize``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: listing the names must import nothing heavy
    from jaxpg.agents import Agent
    from jaxpg.algorithms import Algorithm
    from jaxpg.config import Config

_BUILTIN = {
    "ppo": ("jaxpg.config:PPOConfig", "jaxpg.algorithms:make_ppo"),
    "a2c": ("jaxpg.config:A2CConfig", "jaxpg.algorithms:make_a2c"),
    "trpo": ("jaxpg.config:TRPOConfig", "jaxpg.algorithms:make_trpo"),
    "reinforce": ("jaxpg.config:ReinforceConfig", "jaxpg.algorithms:make_reinforce"),
    "grpo": ("jaxpg.config:GRPOConfig", "jaxpg.algorithms:make_grpo"),
}
_REGISTERED: dict[str, Entry] = {}


class Entry(NamedTuple):
    config_class: type
    build: Callable[[Any, Any], Any]  # (config, agent) -> Algorithm


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


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
        return Entry(_load(config_path), _load(build_path))
    raise ValueError(f"algorithm={name!r} is invalid: one of {list(names())}")


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
            f"config: a {type(config).__name__} says algorithm={name!r}, whose config class is "
            f"{entry.config_class.__name__}"
        )
    return entry


def make_algorithm(config: Config, agent: Agent) -> Algorithm:
    """The registered :class:`jaxpg.Algorithm` for ``config`` and ``agent``."""
    return for_config(config).build(config, agent)
