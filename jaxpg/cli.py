"""The ``jaxpg`` command line (also ``python -m jaxpg``).

    jaxpg train [ppo|reinforce] [--env CartPole-v1] [--seeds 8] [--<config-field> VALUE ...]
    jaxpg train --sweep lr=1e-4,3e-4 --sweep gamma=0.98,0.99 --seeds 4
    jaxpg train --resume RUN_DIR
    jaxpg eval RUN_DIR [--episodes 100] [--deterministic] [--render out.gif]
    jaxpg envs
    jaxpg plot RUN_DIR

Every config field is a flag, generated from the config dataclass (its type, default and the
comment beside the field); a bad flag or value exits with status 2 and a one-line message that
names it.

Training runs ``make_train_chunk(config, n)``, vmapped over seeds and sweep settings, compiled
once, in a host loop: between chunks the loop updates the progress bar, appends metrics, writes
checkpoints and stops on non-finite updates. The next chunk is dispatched before the host reads
the previous chunk's metrics, so the device never waits for the bookkeeping. ``n`` is a divisor
of the run's number of updates (so no second program is compiled), chosen so that a chunk takes
about a second (:func:`choose_chunk`: on CPU, chunks of ~0.05 s cost ~8% speed, chunks of
0.25 s and more cost nothing measurable); ``--chunk-updates`` overrides it. When ``n`` does not
divide the run (a prime number of updates, or a ``--chunk-updates`` that is not a divisor), the
last, shorter chunk compiles a second program, and the console says so.

Exit status: 0 done; 1 stopped on a non-finite update or a checkpoint error; 2 usage error;
130 interrupted (Ctrl-C; a checkpoint of the last finished chunk is written).
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import difflib
import functools
import inspect
import json
import math
import re
import sys
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpg import registry

TARGET_CHUNK_S = 1.0  # aim for a progress update about every second (see the module docstring)
METRICS_WRITE_INTERVAL_S = 30.0


# -- argument parsing ----------------------------------------------------------------------


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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "t", "y"):
        return True
    if value in ("0", "false", "no", "off", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (use true or false)")


def _parse_int(text: str) -> int:
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
    return None if text.strip().lower() in ("none", "null") else _parse_int(text)


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    """``"64,64"`` (or ``"64 64"``, ``"(64, 64)"``) -> ``(64, 64)``; an empty item, as in
    ``"64,,64"`` or ``"64,"``, is an error."""
    body = text.strip().strip("()[]").strip()
    parts = [p.strip() for p in re.split(r"\s*,\s*|\s+", body)] if body else []
    if not parts or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"invalid list {text!r} (e.g. 64,64)")
    return tuple(_parse_int(p) for p in parts)


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


def _field_comments(cls) -> dict[str, str]:
    """Help texts from the comments in the dataclass source: the one beside a field, or else
    the section comment above it (its text before any parenthesis)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        section = ""
        for line in source.splitlines():
            stripped = line.strip()
            if not stripped:
                section = ""
                continue
            match = re.match(r"^#\s*(.+)$", stripped)
            if match and line.startswith("    #"):
                section = match.group(1).split("(")[0].strip().rstrip(".")
                continue
            match = re.match(r"^(\w+)\s*:[^=]*=.*?(?:#\s*(.+))?$", stripped)
            if match and line.startswith("    ") and not line.startswith("     "):
                name, comment = match.group(1), match.group(2)
                if comment:
                    comments[name] = comment.strip()
                elif section:
                    comments.setdefault(name, section)
    return comments


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of the config dataclass ``cls``, generated from its fields."""
    from jaxpg.config import HParams

    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
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
        if f.name in HParams._fields:
            notes.append("traced, sweepable")
        text = _CLI_HELP.get(f.name, comments.get(f.name, ""))
        if text:
            notes.append(text)
        default_text = "the environment's defaults" if f.name == "env_params" else _show(default)
        help_text = "; ".join(n for n in notes if n) + f" (default: {default_text})"
        flag = _flag(f.name)
        if parse is _parse_bool:
            help_text += f"; {_flag('no_' + f.name)} turns it off"
            group.add_argument(
                flag,
                dest=f.name,
                nargs="?",
                const=True,
                type=_parse_bool,
                default=argparse.SUPPRESS,
                metavar="BOOL",
                help=help_text,
            )
            group.add_argument(
                _flag("no_" + f.name),
                dest=f.name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        else:
            group.add_argument(
                flag,
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
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _field_parser(name: str, hint) -> tuple[Callable[[str], Any], str, str]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return _parse_bool, "BOOL", "bool"
    if hint is int:
        return _parse_int, "INT", "int"
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
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return _parse_json_object, "JSON", "JSON object"
    if name == "env_params":
        return _parse_json_object, "JSON", "JSON object"
    return str, "STR", "str"


RUN_FLAGS = ("seed", "seeds", "sweep", "run_dir", "runs_root")


def _add_preset_flag(parser: argparse.ArgumentParser, algo: str) -> None:
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


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument(
        "--seed",
        type=_parse_int,
        default=argparse.SUPPRESS,
        metavar="INT",
        help="first seed; seed s trains with jax.random.key(s) (default: 0)",
    )
    g.add_argument(
        "--seeds",
        type=_parse_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="train N seeds (seed, seed+1, ...) in one vmapped program (default: 1)",
    )
    g.add_argument(
        "--sweep",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAME=V1,V2",
        help="sweep a traced hyperparameter (repeatable: the grid of all); every "
        "setting x seed trains in one program",
    )
    g.add_argument(
        "--run-dir",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="where to write the run (default: RUNS_ROOT/<env>-<algo>-<timestamp>)",
    )
    g.add_argument(
        "--runs-root",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="parent of the default run directory (default: runs)",
    )
    g.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR from its last checkpoint (its config; --total-timesteps "
        "may extend it)",
    )
    g.add_argument(
        "--resume-step",
        type=_parse_int,
        default=None,
        metavar="UPDATE",
        help="with --resume: the checkpoint to continue from (default: the latest)",
    )
    g.add_argument(
        "--stop-after",
        type=_parse_int,
        default=None,
        metavar="UPDATES",
        help="stop (with a checkpoint) once this many updates are done; "
        "--resume continues the run later",
    )
    g.add_argument(
        "--checkpoint-every",
        type=_parse_int,
        default=0,
        metavar="K",
        help="checkpoint every K updates, at the first chunk end at or after each "
        "multiple of K (default: 0, only at the end)",
    )
    g.add_argument(
        "--keep-checkpoints",
        type=_parse_int,
        default=3,
        metavar="N",
        help="keep the newest N checkpoints (default: 3)",
    )
    g.add_argument(
        "--chunk-updates",
        type=_parse_int,
        default=None,
        metavar="N",
        help="updates per compiled chunk, between progress updates and checkpoints "
        "(default: a divisor of the run's updates that takes about 1 s)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-plot", action="store_true", help="do not write the PNG plots")
    _add_compile_cache_flag(g)
    g.add_argument(
        "--log",
        action="append",
        choices=("wandb", "tensorboard"),
        default=[],
        help="also log to Weights & Biases or TensorBoard (optional extras; repeatable)",
    )
    g.add_argument(
        "--wandb-project", default=None, metavar="NAME", help="W&B project (default: jaxpg)"
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first; only process 0 writes files",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxpg",
        description="Vectorized policy-gradient RL on gymnax environments, in JAX.",
        epilog="Start with: jaxpg train   (PPO on CartPole-v1, then jaxpg eval RUN_DIR)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train an agent (default: PPO on CartPole-v1)",
        description="Train an agent. `jaxpg train reinforce --help` lists REINFORCE's fields.",
    )
    algos = train.add_subparsers(dest="algo", metavar="ALGO", required=True)
    for name in registry.names():
        cls = registry.config_class(name)
        p = algos.add_parser(
            name, help=" ".join(cls.__doc__.split()).split(": ")[0], description=cls.__doc__.strip()
        )
        add_config_flags(p, cls)
        _add_preset_flag(p, name)
        _add_run_flags(p)

    ev = sub.add_parser("eval", help="evaluate a run's policy on fresh episodes")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument(
        "--episodes", type=_parse_int, default=100, help="episodes per seed (default: 100)"
    )
    ev.add_argument("--deterministic", action="store_true", help="act with the mode, not a sample")
    ev.add_argument("--seed", type=_parse_int, default=0, help="evaluation seed (default: 0)")
    ev.add_argument(
        "--step",
        type=_parse_int,
        default=None,
        metavar="UPDATE",
        help="the checkpoint to evaluate (default: the latest)",
    )
    ev.add_argument(
        "--max-steps",
        type=_parse_int,
        default=None,
        help="step bound per episode (default: the environment's time limit)",
    )
    ev.add_argument(
        "--render",
        default=None,
        metavar="OUT.gif",
        help="also write one episode as an animated GIF (first seed)",
    )

    _add_compile_cache_flag(ev)

    sub.add_parser("envs", help="list the environments with their observation and action spaces")

    pl = sub.add_parser("plot", help="(re)draw a run's plots from its metrics.csv")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    return parser


def _normalize_argv(argv: list[str]) -> tuple[list[str], bool]:
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


def _suggest(parser_flags: Sequence[str], unknown: str) -> str:
    name = unknown.split("=")[0]
    close = difflib.get_close_matches(name, parser_flags, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# -- the persistent compilation cache --------------------------------------------------------


def _add_compile_cache_flag(parser) -> None:
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use the persistent XLA compilation cache (default: on, in "
        "$JAX_COMPILATION_CACHE_DIR or else $XDG_CACHE_HOME/jaxpg/xla, ~/.cache/jaxpg/xla)",
    )


def compile_cache_dir() -> Path:
    """Where the CLI keeps compiled programs: ``$JAX_COMPILATION_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/jaxpg/xla`` (``~/.cache/jaxpg/xla``)."""
    import os

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxpg" / "xla"


def use_compile_cache(enabled: bool) -> None:
    """Turns jax's persistent compilation cache on (in :func:`compile_cache_dir`) or off.

    A repeated run then loads its programs instead of compiling them (for the default CartPole
    job, compiling takes longer than training). jax caches only programs that took at least
    ``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile.
    """
    import jax

    jax.config.update("jax_enable_compilation_cache", enabled)
    if enabled and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(compile_cache_dir()))


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxpg`` console script; returns the exit status."""
    original = list(sys.argv[1:] if argv is None else argv)
    argv, explicit_algo = _normalize_argv(original)
    try:
        # jax.distributed.initialize() must come before anything initialises a JAX backend,
        # and building the parser imports gymnax, which does.
        is_main = setup_distributed(argv[:1] == ["train"] and "--distributed" in argv)
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        args.is_main = is_main
        args.command_line = "jaxpg " + " ".join(original)
        if unknown:
            flags = _all_flags(parser, args)
            first = unknown[0]
            hint = _suggest(flags, first) if first.startswith("-") else ""
            raise UsageError(f"jaxpg {args.command}: error: unrecognized argument {first!r}{hint}")
        if args.command in ("train", "eval"):
            use_compile_cache(not args.no_compile_cache)
        if args.command == "train":
            return cmd_train(args, explicit_algo)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "envs":
            return cmd_envs()
        if args.command == "plot":
            return cmd_plot(args)
        raise UsageError(f"jaxpg: error: unknown command {args.command!r}")
    except UsageError as e:
        print(_one_line(e), file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def _all_flags(parser: argparse.ArgumentParser, args) -> list[str]:
    flags = []
    stack = [parser]
    while stack:
        p = stack.pop()
        for action in p._actions:
            flags.extend(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return sorted(set(flags))


def _config_class(algo: str):
    return registry.config_class(algo)


def _config_fields(args, cls) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names}


def build_config(algo: str, fields: Mapping[str, Any], preset: str | None = None):
    """The config from CLI values (over a named preset's, if given); a bad value raises
    :class:`UsageError` naming the field."""
    from jaxpg.runs import env_params_with, resolve_env

    cls = _config_class(algo)
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


# -- jaxpg train ---------------------------------------------------------------------------


def setup_distributed(enabled: bool) -> bool:
    """The ``--distributed`` hook: initialise multi-process JAX; returns whether this process
    writes files (process 0 only).

    It must run before any JAX computation: :func:`main` calls it first. (Importing gymnax
    creates arrays, so this needs ``import jaxpg`` not to import gymnax eagerly.)

    This is deliberately small. Each process currently trains the whole seed batch on its own
    devices; sharding seeds or sweep members over processes (``jax.sharding``) and gathering
    their metrics before writing is the natural next step.
    """
    import jax

    if enabled:
        try:
            try:
                from jaxpg.distributed import initialize_distributed
            except ImportError:  # the scaling module is optional here
                initialize_distributed = jax.distributed.initialize
            initialize_distributed()
        except Exception as e:  # noqa: BLE001 - no cluster, no coordinator, ...
            raise UsageError(
                f"jaxpg train: error: --distributed: jax.distributed.initialize() failed: {e}"
            ) from None
    return jax.process_index() == 0


def _say(*parts, file=None) -> None:
    print(*parts, file=file or sys.stdout, flush=True)


def cmd_train(args, explicit_algo: bool) -> int:
    from jaxpg import runs, sweep

    is_main = args.is_main
    cls = _config_class(args.algo)
    given = _config_fields(args, cls)
    run_given = {k: getattr(args, k) for k in RUN_FLAGS if hasattr(args, k)}
    if args.keep_checkpoints < 1:
        raise UsageError(
            f"jaxpg train: error: --keep-checkpoints={args.keep_checkpoints} is "
            "invalid: a positive integer"
        )
    if args.checkpoint_every < 0:
        raise UsageError(
            f"jaxpg train: error: --checkpoint-every={args.checkpoint_every} is "
            "invalid: 0 (only at the end) or a positive integer"
        )
    for name in ("chunk_updates", "stop_after", "resume_step"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(
                f"jaxpg train: error: {_flag(name)}={value} is invalid: a positive integer"
            )

    if args.resume is not None:
        run_dir = Path(args.resume)
        try:
            config, run = runs.read_config(run_dir)
        except (FileNotFoundError, ValueError, TypeError) as e:
            raise UsageError(f"jaxpg train: error: --resume {run_dir}: {e}") from None
        if explicit_algo and config.algorithm != args.algo:
            raise UsageError(
                f"jaxpg train: error: --resume {run_dir} is a {config.algorithm} run, "
                f"not {args.algo}"
            )
        changed = sorted(set(given) - {"total_timesteps"}) + sorted(run_given)
        if getattr(args, "preset", None) is not None:
            changed.insert(0, "preset")
        if changed:
            raise UsageError(
                f"jaxpg train: error: {_flag(changed[0])} cannot be changed when resuming "
                f"(the run's settings are in {run_dir / runs.CONFIG_FILE}); only "
                "--total-timesteps and the run-control flags can"
            )
        if "total_timesteps" in given:
            try:
                config = config.replace(total_timesteps=given["total_timesteps"])
            except ValueError as e:
                raise UsageError(f"jaxpg train: error: {e}") from None
            if config.anneal_lr:
                _say(
                    "note: anneal_lr is on, so the learning-rate schedule now spans "
                    f"{config.num_updates} updates; the run will not match one trained to "
                    "this length in one go"
                )
        seeds = list(run.get("seeds") or [0])
        settings = run.get("sweep_settings") or None
        run_info = dict(run)
    else:
        config = build_config(args.algo, given, getattr(args, "preset", None))
        seed = run_given.get("seed", 0)
        num_seeds = run_given.get("seeds", 1)
        if num_seeds < 1:
            raise UsageError(
                f"jaxpg train: error: --seeds={num_seeds} is invalid: a positive integer"
            )
        if seed < 0:
            raise UsageError(
                f"jaxpg train: error: --seed={seed} is invalid: a non-negative integer"
            )
        seeds = list(range(seed, seed + num_seeds))
        settings = None
        if run_given.get("sweep"):
            try:
                values = sweep.parse_sweep_spec(run_given["sweep"])
                _, settings = sweep.grid(config, **values)
                names = {f.name for f in dataclasses.fields(config)}
                for setting in settings:  # each value must be one the config would accept
                    config.replace(**{k: v for k, v in setting.items() if k in names})
            except ValueError as e:
                raise UsageError(f"jaxpg train: error: {e}") from None
        if "run_dir" in run_given:
            run_dir = Path(run_given["run_dir"])
            if (run_dir / runs.CONFIG_FILE).exists():
                raise UsageError(
                    f"jaxpg train: error: --run-dir {run_dir} already holds a run; use "
                    f"--resume {run_dir} to continue it, or another --run-dir"
                )
        else:
            run_dir = runs.default_run_dir(config, run_given.get("runs_root", "runs"))
        run_info = {
            "env": given.get("env", config.env if isinstance(config.env, str) else "CartPole-v1"),
            "env_params_overrides": given.get("env_params") or None,
            "seeds": seeds,
            "sweep": run_given.get("sweep") or None,
            "sweep_settings": settings,
            "command": getattr(args, "command_line", ""),
        }
    return run_training(
        config,
        run_dir=run_dir,
        seeds=seeds,
        settings=settings,
        run_info=run_info,
        resume=args.resume is not None,
        resume_step=args.resume_step,
        stop_after=args.stop_after,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        chunk_updates=args.chunk_updates,
        progress=not args.no_progress,
        plot=not args.no_plot,
        log=args.log,
        wandb_project=args.wandb_project,
        is_main=is_main,
        distributed=args.distributed,
    )


def estimate_update_seconds(config, members: int, backend: str) -> float:
    """A rough guess of one update's time, to size the chunks before anything has run.

    Calibrated on a 2-core CPU (PPO CartPole defaults: about 3.6 ms per update); on an
    accelerator an update of a small batch is mostly launch latency. Only the progress bar's
    cadence depends on it; ``--chunk-updates`` overrides it.
    """
    passes = 1 + getattr(config, "num_epochs", 1)  # the rollout, then the gradient epochs
    work = members * config.batch_size * passes
    if backend == "cpu":
        return 1.4e-6 * work
    return 2e-4 + 2e-10 * work


def choose_chunk(num_updates: int, target: int) -> int:
    """The chunk length: the divisor of ``num_updates`` closest (in ratio) to ``target``, so all
    chunks are one compiled program. When no divisor is within 4x of the target (a prime
    number of updates, say), ``target`` itself, and the shorter last chunk compiles a second
    program rather than leaving the progress bar still for a long run."""
    target = max(1, min(int(target), num_updates))
    divisors = set()
    for d in range(1, math.isqrt(num_updates) + 1):
        if num_updates % d == 0:
            divisors.update((d, num_updates // d))
    best = min(divisors, key=lambda d: (abs(math.log(d / target)), -d))
    if max(best / target, target / best) > 4 and num_updates > 4 * target:
        return target
    return best


def member_inputs(config, seeds: Sequence[int], settings: Sequence[Mapping[str, float]] | None):
    """Keys ``[M]`` and hyperparameters ``[M]`` for ``M = len(settings or [1]) * len(seeds)``
    members, setting-major: member ``m`` is setting ``m // S`` with seed ``seeds[m % S]``."""
    import jax
    import jax.numpy as jnp

    from jaxpg.sweep import stack_hparams

    num_settings = len(settings) if settings else 1
    keys = jnp.stack([jax.random.key(int(s)) for s in seeds] * num_settings)
    if settings:
        hp = stack_hparams(config, settings)
        hp = jax.tree.map(lambda x: jnp.repeat(x, len(seeds), axis=0), hp)
    else:
        hp = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(seeds),)), config.hparams())
    return keys, hp


def _chunk_program(config, n: int):
    """``state[M] -> (state, metrics[M, n], params_finite[M])``: ``n`` updates of every member."""
    import jax
    import jax.numpy as jnp

    from jaxpg.train import make_train_chunk

    chunk = make_train_chunk(config, n)

    def one(state):
        state, metrics = chunk(state)
        leaves = jax.tree.leaves(state.params)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        return state, metrics, finite

    return jax.jit(jax.vmap(one))


class _Progress:
    """A tqdm bar over env steps (per member), with recent return and run steps/s."""

    def __init__(self, enabled: bool, total: int, initial: int, members: int):
        self.bar = None
        self.members = members
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                mininterval=1.0,
                desc="train",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                "env steps [{elapsed}<{remaining}{postfix}]",
            )

    def update(self, steps: int, recent_return: float, sps: float) -> None:
        if self.bar is None:
            return
        ret = f"{recent_return:.1f}" if math.isfinite(recent_return) else "n/a"
        self.bar.set_postfix_str(f"return={ret}, {sps:,.0f} steps/s", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_training(
    config,
    *,
    run_dir: Path,
    seeds: Sequence[int],
    settings: Sequence[Mapping[str, float]] | None,
    run_info: Mapping[str, Any],
    resume: bool = False,
    resume_step: int | None = None,
    stop_after: int | None = None,
    checkpoint_every: int = 0,
    keep_checkpoints: int = 3,
    chunk_updates: int | None = None,
    progress: bool = True,
    plot: bool = True,
    log: Sequence[str] = (),
    wandb_project: str | None = None,
    is_main: bool = True,
    distributed: bool = False,
) -> int:
    """Trains every (setting, seed) member of a run in one compiled chunk program, writing the
    run directory. Returns the exit status (see the module docstring)."""
    import jax

    from jaxpg import files as files_lib
    from jaxpg import metrics as metrics_lib
    from jaxpg import runs
    from jaxpg.checkpoint import (
        CheckpointError,
        checkpoint_steps,
        restore_checkpoint,
        save_checkpoint,
    )
    from jaxpg.train import init_state

    run_dir = Path(run_dir)
    ckpt_dir = run_dir / runs.CHECKPOINT_DIR
    num_members = len(seeds) * (len(settings) if settings else 1)
    num_updates = config.num_updates
    batch = config.batch_size
    label = f"{config.env_spec.name} {config.algorithm}"
    checkpoint_meta = {"seeds": list(seeds), "sweep_settings": list(settings) if settings else None}
    mp_options = None
    if distributed and jax.process_count() > 1:
        from orbax.checkpoint.options import MultiprocessingOptions

        mp_options = MultiprocessingOptions(primary_host=0, active_processes={0})

    # -- the starting state ---------------------------------------------------------------
    compile_time = 0.0
    keys, hparams = member_inputs(config, seeds, settings)
    tables: list[dict] = []
    if resume:
        try:
            state, meta = restore_checkpoint(ckpt_dir, config, step=resume_step)
        except CheckpointError as e:
            _say(f"jaxpg train: cannot resume: {e}", file=sys.stderr)
            return 1
        if tuple(meta.get("batch_shape", ())) != (num_members,):
            _say(
                f"jaxpg train: cannot resume: the checkpoint holds {meta.get('batch_shape')} "
                f"members, the run's config.json {num_members}",
                file=sys.stderr,
            )
            return 1
        start = int(meta["step"])
        later = [s for s in checkpoint_steps(ckpt_dir) if s > start]
        if later:
            _say(
                f"jaxpg train: error: --resume-step {start}: {run_dir} has later checkpoints "
                f"{later} that resuming would overwrite; move them away first",
                file=sys.stderr,
            )
            return 2
        metrics_path = run_dir / runs.METRICS_FILE
        if metrics_path.exists():
            previous = metrics_lib.read_metrics_csv(metrics_path)
            if metrics_lib.table_len(previous):
                tables.append(metrics_lib.select_rows(previous, previous["update"] <= start))
        _say(
            f"resuming {run_dir} from update {start} of {num_updates} ({start * batch:,} env steps)"
        )
    else:
        start = 0
        t0 = time.perf_counter()
        init = jax.jit(jax.vmap(functools.partial(init_state, config)))
        state = init.lower(keys, hparams).compile()(keys, hparams)
        compile_time += time.perf_counter() - t0

    end = num_updates if stop_after is None else min(num_updates, stop_after)
    remaining = max(0, end - start)
    if remaining == 0:
        _say(
            f"nothing to train: the run is at update {start} of {num_updates}"
            + (" (--stop-after)" if stop_after is not None and start < num_updates else "")
        )
        return 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        info = dict(run_info)
        if resume:
            info["resumes"] = [
                *info.get("resumes", []),
                {"from_update": start, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
            ]
        runs.write_config(run_dir, config, info)

    if chunk_updates is None:
        per_update = estimate_update_seconds(config, num_members, jax.default_backend())
        n = choose_chunk(remaining, round(TARGET_CHUNK_S / per_update))
    else:
        n = chunk_updates
    num_full, rest = divmod(remaining, n)
    members_text = (
        f"{len(settings)} settings x {len(seeds)} seeds"
        if settings
        else f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    )
    _say(
        f"{label}: {remaining} updates x {batch} env steps, {members_text}, "
        f"chunks of {n} updates -> {run_dir}"
    )

    # Loggers first: a missing library should fail before the compile, not after.
    loggers = []
    if is_main:
        from jaxpg.logging_backends import LoggerUnavailable, make_logger

        for kind in log:
            try:
                options = {"project": wandb_project} if kind == "wandb" else {}
                loggers.append(make_logger(kind, run_dir, config.to_dict(), **options))
            except LoggerUnavailable as e:
                _say(f"jaxpg train: {e}", file=sys.stderr)
                return 2

    # -- compile ----------------------------------------------------------------------------
    plan = [n] * num_full + ([rest] if rest else [])
    t0 = time.perf_counter()
    programs = {
        length: _chunk_program(config, length).lower(state).compile() for length in set(plan)
    }
    compile_time += time.perf_counter() - t0
    if rest and num_full:
        _say(
            f"note: chunks of {n} do not divide {remaining} updates; the last chunk of {rest} "
            "updates needed a second program (--chunk-updates with a divisor avoids it)"
        )
    _say(f"compiled in {compile_time:.1f} s")

    bar = _Progress(
        progress and is_main, total=end * batch, initial=start * batch, members=num_members
    )
    last_saved = _latest_step(ckpt_dir)
    status, message = "complete", None
    done = start
    t_start = time.perf_counter()
    t_prev = last_metrics_write = t_start

    def save(state_to_save, step):
        nonlocal last_saved
        if is_main and step != last_saved:
            save_checkpoint(
                ckpt_dir,
                state_to_save,
                config,
                step=step,
                keep=keep_checkpoints,
                metadata=checkpoint_meta,
                multiprocessing_options=mp_options,
            )
            last_saved = step

    def write_metrics():
        if is_main:
            metrics_lib.write_metrics_csv(
                run_dir / runs.METRICS_FILE, metrics_lib.concat_tables(tables)
            )

    try:
        pending = programs[plan[0]](state)
        for i, length in enumerate(plan):
            state_next, metrics, finite = pending
            # Queue the next chunk before reading this one's metrics: the device keeps busy
            # while the host does the bookkeeping below.
            pending = programs[plan[i + 1]](state_next) if i + 1 < len(plan) else None
            metrics = jax.device_get(metrics)
            finite = np.asarray(jax.device_get(finite))
            now = time.perf_counter()
            chunk_time, t_prev = now - t_prev, now
            sps = num_members * length * batch / max(chunk_time, 1e-9)
            tables.append(
                metrics_lib.metrics_rows(
                    metrics,
                    first_update=done,
                    seeds=seeds,
                    settings=settings,
                    sps=sps,
                    time=now - t_start,
                )
            )
            recent = _nanmean(np.asarray(metrics["episode_return"])[:, -max(1, length // 4) :])
            bar.update(length * batch, recent, sps)
            for logger in loggers:
                _log_chunk(logger, metrics, done, batch, settings, len(seeds))
            bad = np.asarray(metrics["nonfinite"], bool)
            if bad.any() or not finite.all():
                status = "nonfinite"
                message = _nonfinite_message(
                    bad, finite, done, seeds, settings, ckpt_dir, last_saved
                )
                break
            state, done = state_next, done + length
            if checkpoint_every and done // checkpoint_every > (done - length) // checkpoint_every:
                save(state, done)
                write_metrics()
                last_metrics_write = time.perf_counter()
            elif is_main and time.perf_counter() - last_metrics_write > METRICS_WRITE_INTERVAL_S:
                write_metrics()
                last_metrics_write = time.perf_counter()
    except KeyboardInterrupt:
        status = "interrupted"
        message = f"interrupted at update {done}"
    finally:
        bar.close()
    train_time = time.perf_counter() - t_start

    # -- results ----------------------------------------------------------------------------
    if status in ("complete", "interrupted"):
        if status == "complete" and done < num_updates:
            status = "stopped"
        try:
            save(state, done)
        except Exception as e:  # noqa: BLE001 - report, keep the metrics
            _say(f"jaxpg train: checkpoint failed: {e}", file=sys.stderr)
            status = "checkpoint_failed"
    table = metrics_lib.concat_tables(tables)
    trained_steps = (done - start) * batch * num_members
    extra = {
        "status": status,
        "algorithm": config.algorithm,
        "env": config.env_spec.name,
        "num_updates": num_updates,
        "updates_done": done,
        "env_steps_per_member": done * batch,
        "members": num_members,
        "wall_time_s": round(train_time + compile_time, 3),
        "train_time_s": round(train_time, 3),
        "compile_time_s": round(compile_time, 3),
        "env_steps_per_s": round(trained_steps / max(train_time, 1e-9), 1),
        "chunk_updates": n,
        "last_checkpoint": str(ckpt_dir.absolute() / str(last_saved))
        if last_saved is not None
        else None,
        **runs.environment_info(),
    }
    summary = metrics_lib.summarize(table, settings=settings, extra=extra)
    if is_main:
        write_metrics()
        files_lib.atomic_write_json(run_dir / runs.SUMMARY_FILE, summary)
        if plot and metrics_lib.table_len(table):
            _write_plots(run_dir, table, config, settings, len(seeds))
    for logger in loggers:
        logger.close()

    _say(
        f"trained {trained_steps:,} env steps in {train_time:.1f} s "
        f"({extra['env_steps_per_s']:,.0f} steps/s); compiled in {compile_time:.1f} s"
    )
    _print_final(summary, settings)
    if status == "nonfinite":
        _say(f"jaxpg train: {message}", file=sys.stderr)
        return 1
    if status == "interrupted":
        _say(f"{message}; checkpoint saved. Continue with: jaxpg train --resume {run_dir}")
        return 130
    if status == "checkpoint_failed":
        return 1
    if status == "stopped":
        _say(
            f"stopped after update {done} of {num_updates} (--stop-after). "
            f"Continue with: jaxpg train --resume {run_dir}"
        )
    _say(f"run directory: {run_dir}")
    if status == "complete":
        _say(f"next: jaxpg eval {run_dir}")
    return 0


def _latest_step(ckpt_dir: Path) -> int | None:
    from jaxpg.checkpoint import checkpoint_steps

    steps = checkpoint_steps(ckpt_dir)
    return steps[-1] if steps else None


def _nanmean(x) -> float:
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x)
    return float(x[finite].mean()) if finite.any() else float("nan")


def _nonfinite_message(bad, finite, done, seeds, settings, ckpt_dir, last_saved) -> str:
    """Names the first non-finite update and member, and the last good checkpoint."""
    num_seeds = len(seeds)
    if bad.any():
        members, offsets = np.nonzero(bad)
        first = int(np.argmin(offsets))
        member, update = int(members[first]), done + int(offsets[first]) + 1
        what = f"update {update} had a non-finite loss or gradient (the step was skipped)"
    else:
        member = int(np.argmin(finite))
        update = done + 1
        what = f"the parameters became non-finite in updates {done + 1}..{done + bad.shape[1]}"
    who = f"seed {seeds[member % num_seeds]}"
    if settings:
        who += f", setting {member // num_seeds} {dict(settings[member // num_seeds])}"
    where = (
        f"last good checkpoint: {ckpt_dir.absolute() / str(last_saved)} (update {last_saved})"
        if last_saved is not None
        else "no checkpoint was saved before it"
    )
    return f"stopped: {what} ({who}); not training on NaNs. {where}"


def _log_chunk(logger, metrics, done, batch, settings, num_seeds) -> None:
    names = [k for k in metrics if k != "env_steps"]
    num_members, n = np.asarray(metrics["episode_return"]).shape
    groups = (
        [(f"setting_{k}/", slice(k * num_seeds, (k + 1) * num_seeds)) for k in range(len(settings))]
        if settings
        else [("", slice(None))]
    )
    for j in range(n):
        row = {}
        for prefix, members in groups:
            for name in names:
                row[prefix + name] = _nanmean(np.asarray(metrics[name], np.float64)[members, j])
        logger.log(row, step=(done + j + 1) * batch)


def _write_plots(run_dir: Path, table, config, settings, num_seeds) -> None:
    from jaxpg import plotting, runs

    title = (
        f"{config.env_spec.name} {config.algorithm}: {num_seeds} seed{'s' if num_seeds > 1 else ''}"
    )
    plotting.plot_learning_curve(table, run_dir / runs.CURVE_FILE, title=title)
    if settings:
        plotting.plot_sweep(
            table, run_dir / runs.SWEEP_FILE, title=f"{title}, {len(settings)} settings"
        )


def _fmt_return(mean, std) -> str:
    if mean is None:
        return "n/a (no episode finished)"
    return f"{mean:.1f} ± {std:.1f}"


def _print_final(summary: Mapping[str, Any], settings) -> None:
    if "seeds" not in summary:
        return
    seeds = summary["seeds"]
    if settings:
        _say(
            f"final return per setting (mean over the last 10% of updates; ± std over "
            f"{len(seeds)} seeds):"
        )
        for row in summary["settings"]:
            values = ", ".join(f"{k}={row[k]:g}" for k in settings[0])
            _say(f"  {values}: {_fmt_return(row['final_return_mean'], row['final_return_std'])}")
        best = summary["best_setting"]
        _say("best: " + ", ".join(f"{k}={best[k]:g}" for k in settings[0]))
    else:
        _say(
            f"final return (mean over the last 10% of updates; ± std over {len(seeds)} "
            f"seed{'s' if len(seeds) > 1 else ''}): "
            f"{_fmt_return(summary['final_return_mean'], summary['final_return_std'])}"
        )


# -- jaxpg eval ----------------------------------------------------------------------------


def cmd_eval(args) -> int:
    import jax

    from jaxpg import runs
    from jaxpg.checkpoint import CheckpointError, restore_checkpoint
    from jaxpg.evaluate import RenderError, make_evaluate, render_gif, render_problem
    from jaxpg.train import policy_params

    run_dir = Path(args.run_dir)
    if args.episodes < 1:
        raise UsageError(
            f"jaxpg eval: error: --episodes={args.episodes} is invalid: a positive integer"
        )
    try:
        config, run = runs.read_config(run_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(f"jaxpg eval: error: {e}") from None
    if args.render is not None:
        problem = render_problem(config.env_spec.name)
        if problem:
            raise UsageError(f"jaxpg eval: error: --render: {problem}")
        if not args.render.lower().endswith(".gif"):
            raise UsageError(f"jaxpg eval: error: --render {args.render!r}: give a .gif file name")
    try:
        state, meta = restore_checkpoint(run_dir / runs.CHECKPOINT_DIR, config, step=args.step)
    except CheckpointError as e:
        _say(f"jaxpg eval: {e}", file=sys.stderr)
        return 1
    try:
        evaluate = make_evaluate(
            config, args.episodes, deterministic=args.deterministic, max_steps=args.max_steps
        )
    except ValueError as e:
        raise UsageError(f"jaxpg eval: error: {e}") from None
    params = policy_params(config, state)
    batch_shape = tuple(meta.get("batch_shape", ()))
    key = jax.random.key(args.seed)
    if batch_shape:
        result = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))(params, key)
    else:
        result = jax.jit(evaluate)(params, key)
    returns = np.asarray(result.episode_return, np.float64).reshape(-1, args.episodes)
    finished = np.asarray(result.finished).reshape(-1, args.episodes)
    seeds = meta.get("seeds") or run.get("seeds") or [0]
    settings = meta.get("sweep_settings")
    policy = "deterministic" if args.deterministic else "stochastic"
    _say(
        f"{config.env_spec.name} {config.algorithm}, checkpoint at update {meta['step']} "
        f"({meta['step'] * config.batch_size:,} env steps per seed), {args.episodes} episodes x "
        f"{returns.shape[0]} polic{'ies' if returns.shape[0] > 1 else 'y'}, {policy} actions"
    )
    if returns.shape[0] > 1:
        for m in range(returns.shape[0]):
            who = f"seed {seeds[m % len(seeds)]}"
            if settings:
                who = (
                    f"setting {m // len(seeds)} "
                    + ", ".join(f"{k}={v:g}" for k, v in settings[m // len(seeds)].items())
                    + f", {who}"
                )
            _say(f"  {who}: {_stats(returns[m])}")
    _say(f"return: {_stats(returns.reshape(-1))}  ({returns.size} episodes)")
    if not finished.all():
        _say(
            f"note: {int((~finished).sum())} episodes did not end within the step bound; "
            "their returns are partial"
        )
    if args.render is not None:
        first = (
            jax.tree.map(lambda x: x.reshape(-1, *x.shape[len(batch_shape) :])[0], params)
            if batch_shape
            else params
        )
        try:
            frames = render_gif(
                config,
                first,
                jax.random.fold_in(key, 1),
                args.render,
                deterministic=args.deterministic,
                max_steps=args.max_steps,
            )
        except RenderError as e:
            _say(f"jaxpg eval: {_one_line(e)}", file=sys.stderr)
            return 1
        _say(f"wrote {args.render} ({frames} frames)")
    return 0


def _stats(r: np.ndarray) -> str:
    return f"mean {r.mean():.2f}  std {r.std():.2f}  min {r.min():.2f}  max {r.max():.2f}"


# -- jaxpg envs / plot -----------------------------------------------------------------------

# Built on first use by downloading data; listing should not download anything.
_DOWNLOADS = {"MNISTBandit-bsuite": "downloads MNIST when built"}


def cmd_envs() -> int:
    import gymnax

    from jaxpg.envs import make_env, registered_envs

    rows = []
    for name in registered_envs():
        if name in _DOWNLOADS:
            rows.append((name, "-", "-", _DOWNLOADS[name]))
            continue
        try:
            env = make_env(name)
        except Exception as e:  # noqa: BLE001 - list every env, whatever it fails with
            try:
                instance, params = gymnax.make(name)
                obs = _space(instance.observation_space(params))
                act = _space(instance.action_space(params))
            except Exception:  # noqa: BLE001
                obs = act = "-"
            rows.append((name, obs, act, f"not supported: {_one_line(e)[:70]}"))
            continue
        text = env.describe()
        _, _, rest = text.partition(": obs ")
        obs, _, act = rest.partition(", actions ")
        rows.append((name, f"Box{obs}", act, ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("environment", "observation", "action")
    _say("  ".join(h.ljust(w) for h, w in zip(header, width)).rstrip())
    for row in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:3], width))
        _say((line + (f"  ({row[3]})" if row[3] else "")).rstrip())
    return 0


def _space(space) -> str:
    kind = type(space).__name__
    if hasattr(space, "n"):
        return f"{kind}({int(space.n)})"
    if hasattr(space, "shape"):
        return f"{kind}{tuple(space.shape)}"
    return kind


def cmd_plot(args) -> int:
    from jaxpg import metrics as metrics_lib
    from jaxpg import runs

    run_dir = Path(args.run_dir)
    path = run_dir / runs.METRICS_FILE
    if not path.is_file():
        raise UsageError(f"jaxpg plot: error: {path} does not exist")
    try:
        config, run = runs.read_config(run_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(f"jaxpg plot: error: {e}") from None
    table = metrics_lib.read_metrics_csv(path)
    if not metrics_lib.table_len(table):
        raise UsageError(f"jaxpg plot: error: {path} has no rows")
    settings = run.get("sweep_settings") or None
    _write_plots(run_dir, table, config, settings, len(run.get("seeds") or [0]))
    _say(
        f"wrote {run_dir / runs.CURVE_FILE}"
        + (f" and {run_dir / runs.SWEEP_FILE}" if settings else "")
    )
    return 0
