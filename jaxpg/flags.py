"""The command line's flags, declared from the config dataclasses.

Every field of an algorithm's config class is a flag (``--num-envs``): its parser comes from
the field's type, its help text from the field's metadata (``metadata={"help": ...}``, see
:mod:`jaxpg.config`), its default from the field. Nothing is read from source text. A bad
flag or value raises :class:`UsageError`, which ``jaxpg`` turns into a one-line message and
exit status 2.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import difflib
import json
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxpg import registry


class UsageError(Exception):
    """A bad flag or value: exit status 2 with a one-line message."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (status 2) and no prefix matching of flags."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "t", "y"):
        return True
    if value in ("0", "false", "no", "off", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (use true or false)")


def parse_int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}")
    return int(value)  # "5e5" is a fine way to write 500000


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def _parse_optional_int(text: str):
    return None if text.strip().lower() in ("none", "null") else parse_int(text)


def _parse_optional_float(text: str):
    return None if text.strip().lower() in ("none", "null") else _parse_float(text)


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    """``"64,64"`` (or ``"64 64"``, ``"(64, 64)"``) -> ``(64, 64)``; an empty item, as in
    ``"64,,64"`` or ``"64,"``, is an error."""
    body = text.strip().strip("()[]").strip()
    parts = [p.strip() for p in re.split(r"\s*,\s*|\s+", body)] if body else []
    if not parts or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"invalid list {text!r} (e.g. 64,64)")
    return tuple(parse_int(p) for p in parts)


def _parse_optional_int_tuple(text: str):
    return None if text.strip().lower() in ("none", "null") else _parse_int_tuple(text)


def _parse_json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r} ({e.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object like '{{\"key\": 1}}', got {text!r}"
        )
    return value


def flag_name(name: str) -> str:
    """``num_envs`` -> ``--num-envs``."""
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of the config dataclass ``cls``: the parser from the field's type, the
    help from its ``metadata["help"]``, the default from the field."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(
        f"{cls.__name__} fields",
        "Static fields change shapes or program structure (a new value means a new compile); "
        "traced ones can be swept in one program with --sweep.",
    )
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parse, metavar, kind = _field_parser(f.name, hint)
        notes = [kind]
        if f.metadata.get("traced"):
            notes.append("traced, sweepable")
        text = _CLI_HELP.get(f.name, f.metadata.get("help", ""))
        if text:
            notes.append(text)
        default_text = "the environment's defaults" if f.name == "env_params" else _show(default)
        help_text = "; ".join(n for n in notes if n) + f" (default: {default_text})"
        option = flag_name(f.name)
        if parse is _parse_bool:
            help_text += f"; {flag_name('no_' + f.name)} turns it off"
            group.add_argument(
                option,
                dest=f.name,
                nargs="?",
                const=True,
                type=_parse_bool,
                default=argparse.SUPPRESS,
                metavar="BOOL",
                help=help_text,
            )
            group.add_argument(
                flag_name("no_" + f.name),
                dest=f.name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        else:
            group.add_argument(
                option,
                dest=f.name,
                type=parse,
                default=argparse.SUPPRESS,
                metavar=metavar,
                help=help_text.replace("%", "%%"),
            )


# Where the command line differs from the Python field (a name instead of an instance, JSON).
_CLI_HELP = {
    "env": "a gymnax registry name (see `jaxpg envs`), or module:Class for your own gymnax "
    "Environment (built with no arguments)",
    "env_params": "overrides of the default env params, e.g. '{\"max_steps_in_episode\": 200}'",
    "env_kwargs": "keyword arguments for gymnax.make, e.g. '{\"use_minimal_action_set\": true}'",
}


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)


def _field_parser(name: str, hint) -> tuple[Callable[[str], Any], str, str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return _parse_bool, "BOOL", "bool"
    if hint is int:
        return parse_int, "INT", "int"
    if hint is float:
        return _parse_float, "FLOAT", "float"
    if hint is str:
        return str, "STR", "str"
    if origin is tuple and args and args[0] is int:
        return _parse_int_tuple, "INTS", "ints, comma-separated"
    if args and type(None) in args and any(typing.get_origin(a) is tuple for a in args):
        return _parse_optional_int_tuple, "INTS|none", "ints, comma-separated, or none"
    if args and type(None) in args and int in args:
        return _parse_optional_int, "INT|none", "int or none"
    if args and type(None) in args and float in args:
        return _parse_optional_float, "FLOAT|none", "float or none"
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return _parse_json_object, "JSON", "JSON object"
    if name == "env_params":
        return _parse_json_object, "JSON", "JSON object"
    return str, "STR", "str"


RUN_FLAGS = ("seed", "seeds", "sweep", "run_dir", "runs_root")


def add_preset_flag(parser: argparse.ArgumentParser, algo: str) -> None:
    from jaxpg.presets import PRESETS

    names = [n for n in PRESETS if n.split("-")[0] == algo]
    if names:
        parser.add_argument(
            "--preset",
            choices=names,
            default=None,
            metavar="NAME",
            help="start from a named config of jaxpg/presets.py (the flags given override its "
            f"fields): {', '.join(names)}",
        )


# The run-control flags of ``jaxpg train``: (flag, metavar or action, default, help). A
# SUPPRESS default leaves the flag out of the namespace when not given (RUN_FLAGS: a resumed run
# refuses them).
_RUN_FLAGS = (
    ("--seed", "INT", argparse.SUPPRESS, "first seed; seed s trains with jax.random.key(s) (default: 0)"),
    ("--seeds", "N", argparse.SUPPRESS, "train N seeds (seed, seed+1, ...) in one vmapped program (default: 1)"),
    ("--sweep", "append", argparse.SUPPRESS, "sweep a traced hyperparameter (repeatable: the grid of all); every setting x seed trains in one program"),
    ("--run-dir", "DIR", argparse.SUPPRESS, "where to write the run (default: RUNS_ROOT/<env>-<algo>-<timestamp>)"),
    ("--runs-root", "DIR", argparse.SUPPRESS, "parent of the default run directory (default: runs)"),
    ("--resume", "RUN_DIR", None, "continue RUN_DIR from its last checkpoint (its config; --total-timesteps may extend it)"),
    ("--resume-step", "UPDATE", None, "with --resume: the checkpoint to continue from (default: the latest)"),
    ("--stop-after", "UPDATES", None, "stop (with a checkpoint) once this many updates are done; --resume continues the run later"),
    ("--checkpoint-every", "K", 0, "checkpoint every K updates, at the first chunk end at or after each multiple of K (default: 0, only at the end)"),
    ("--keep-checkpoints", "N", 3, "keep the newest N checkpoints (default: 3)"),
    ("--chunk-updates", "N", None, "updates per compiled chunk, between progress updates and checkpoints (default: a divisor of the run's updates that takes about 1 s)"),
    ("--no-progress", "store_true", False, "no progress bar"),
    ("--no-plot", "store_true", False, "do not write the PNG plots"),
    ("--wandb-project", "NAME", None, "W&B project (default: jaxpg)"),
    ("--coordinator", "HOST:PORT", None, "with --distributed, off a TPU pod, Slurm or Open MPI: process 0's address (every process gives the same)"),
    ("--num-processes", "N", None, "with --distributed: the number of processes (with --coordinator)"),
    ("--process-id", "INT", None, "with --distributed: this process's index, 0 .. N-1 (with --coordinator)"),
    ("--distributed", "store_true", False, "spread the seeds and sweep members over the processes of a multi-process job (jax.distributed.initialize() first; every device trains whole members, their number must divide by the device count); process 0 writes the files"),
)  # fmt: skip
_INT_METAVARS = {"INT", "N", "UPDATE", "UPDATES", "K"}


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The run-control flags of ``jaxpg train`` (seeds, sweep, run directory, checkpoints)."""
    g = parser.add_argument_group("run")
    _add_table(g, _RUN_FLAGS)
    add_compile_cache_flag(g)
    g.add_argument(
        "--log",
        action="append",
        choices=("wandb", "tensorboard"),
        default=[],
        help="also log to Weights & Biases or TensorBoard (optional extras; repeatable)",
    )


def _add_table(g: Any, table: Sequence[tuple]) -> None:
    for option, kind, default, text in table:
        if kind == "store_true":
            g.add_argument(option, action=kind, default=default, help=text)
        elif kind == "append":
            g.add_argument(option, action=kind, default=default, metavar="NAME=V1,V2", help=text)
        else:
            parse = parse_int if kind in _INT_METAVARS else str
            g.add_argument(option, type=parse, default=default, metavar=kind, help=text)


_EVAL_FLAGS = (
    ("--episodes", "N", 100, "episodes per policy (default: 100)"),
    ("--deterministic", "store_true", False, "act with the mode, not a sample"),
    ("--seed", "INT", 0, "evaluation seed (default: 0)"),
    ("--step", "UPDATE", None, "the checkpoint to evaluate (default: the latest)"),
    ("--max-steps", "N", None, "step bound per episode (default: the environment's time limit)"),
    ("--render", "OUT.gif", None, "also write one episode as an animated GIF (first member)"),
)


def add_eval_flags(parser: argparse.ArgumentParser) -> None:
    """``jaxpg eval RUN_DIR``'s arguments."""
    parser.add_argument("run_dir", metavar="RUN_DIR")
    _add_table(parser, _EVAL_FLAGS)
    add_compile_cache_flag(parser)


def distributed_options(argv: Sequence[str]) -> dict[str, Any]:
    """``initialize_distributed``'s arguments from ``--coordinator``, ``--num-processes`` and
    ``--process-id`` in ``argv``, read before the full parser exists (it imports gymnax, which
    starts JAX)."""
    pre = _Parser(prog="jaxpg train", add_help=False)
    pre.add_argument("--coordinator", dest="coordinator_address", default=None)
    pre.add_argument("--num-processes", type=parse_int, default=None)
    pre.add_argument("--process-id", type=parse_int, default=None)
    options, _ = pre.parse_known_args(list(argv))
    return {k: v for k, v in vars(options).items() if v is not None}


def normalize_argv(argv: list[str]) -> tuple[list[str], bool]:
    """``--total_timesteps`` -> ``--total-timesteps``; ``train`` without an algorithm -> ``ppo``.

    Returns the argv and whether the algorithm was given explicitly.
    """
    out = []
    for token in argv:
        if token.startswith("--") and token != "--":
            name, eq, value = token.partition("=")
            token = name.replace("_", "-") + eq + value
        out.append(token)
    explicit = True
    if out and out[0] == "train":
        if len(out) == 1 or out[1] not in (*registry.names(), "-h", "--help"):
            out.insert(1, "ppo")
            explicit = False
    return out, explicit


def suggest(parser_flags: Sequence[str], unknown: str) -> str:
    name = unknown.split("=")[0]
    close = difflib.get_close_matches(name, parser_flags, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def add_compile_cache_flag(parser: argparse.ArgumentParser | Any) -> None:
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use the persistent XLA compilation cache (default: on, in "
        "$JAX_COMPILATION_CACHE_DIR or else $XDG_CACHE_HOME/jaxpg/xla, ~/.cache/jaxpg/xla)",
    )


def all_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    flags = []
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            flags.extend(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return sorted(set(flags))


# -- flag values -> config ----------------------------------------------------------------


def config_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def build_config(algo: str, fields: Mapping[str, Any], preset: str | None = None) -> Any:
    """The config from CLI values (over a named preset's, if given); a bad value raises
    :class:`UsageError` naming the field."""
    from jaxpg.runs import env_params_with, resolve_env

    cls = registry.config_class(algo)
    fields = dict(fields)
    if preset is not None:
        from jaxpg.presets import PRESETS

        base = PRESETS[preset]()
        derived = {"env_params"}  # fields the preset's config worked out, to work out again
        if hasattr(base, "num_groups"):
            derived.add("num_envs")  # num_groups * group_size
        whole = getattr(base, "mode", None) == "trajectory" or hasattr(base, "num_groups")
        if whole and base.num_steps == base.env_spec.max_steps_in_episode:
            derived.add("num_steps")  # None: the episode limit of the env given now
        fields = {
            f.name: None if f.name in derived else getattr(base, f.name)
            for f in dataclasses.fields(cls)
        } | fields
    try:
        env_spec = fields.get("env", "CartPole-v1")
        fields["env"] = resolve_env(env_spec)
        overrides = fields.pop("env_params", None)
        if overrides:
            fields["env_params"] = env_params_with(
                fields["env"], overrides, fields.get("env_kwargs") or {}
            )
        return cls(**fields)
    except (ValueError, TypeError) as e:
        raise UsageError(f"jaxpg train {algo}: error: {e}") from None
