"""The ``jaxpg`` command line (also ``python -m jaxpg``): a thin layer over the library.

    jaxpg train [ppo|a2c|trpo|reinforce|grpo] [--env CartPole-v1] [--seeds 8] [--<field> VALUE]
    jaxpg train --sweep lr=1e-4,3e-4 --sweep gamma=0.98,0.99 --seeds 4
    jaxpg train --resume RUN_DIR
    jaxpg eval RUN_DIR [--episodes 100] [--deterministic] [--render out.gif]
    jaxpg envs
    jaxpg plot RUN_DIR

The algorithms are the registry's (:mod:`jaxpg.registry`); every config field is a flag
(:mod:`jaxpg.flags`). ``train`` is :func:`jaxpg.runner.run` / :func:`jaxpg.runner.resume`,
``eval`` is :func:`jaxpg.evaluate.evaluate_run`. A bad flag or value exits with status 2 and a
one-line message that names it.

Exit status: 0 done; 1 stopped on a non-finite update or a checkpoint error; 2 usage error;
130 interrupted (Ctrl-C; a checkpoint of the last finished chunk is written).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpg import registry
from jaxpg.compile_cache import compile_cache_dir, use_compile_cache  # noqa: F401 - jaxpg.cli's API
from jaxpg.flags import (
    RUN_FLAGS,
    UsageError,
    _Parser,
    add_config_flags,
    add_eval_flags,
    add_preset_flag,
    add_run_flags,
    all_flags,
    build_config,
    config_fields,
    flag_name,
    normalize_argv,
    one_line,
    suggest,
)
from jaxpg.metrics import FINAL_FRACTION

EXIT_STATUS = {"complete": 0, "stopped": 0, "nonfinite": 1, "checkpoint_failed": 1, "interrupted": 130}  # fmt: skip


def build_parser() -> _Parser:
    """The ``jaxpg`` parser: one ``train`` subcommand per registered algorithm."""
    parser = _Parser(
        prog="jaxpg",
        description="Vectorized policy-gradient RL on gymnax environments, in JAX.",
        epilog="Start with: jaxpg train   (PPO on CartPole-v1, then jaxpg eval RUN_DIR)",
    )
    parser.add_argument(
        "--import",
        dest="import_modules",
        action="append",
        metavar="MODULE",
        default=[],
        help="import MODULE first (a module name or a .py file; it may stand anywhere on the "
        "command line): your own algorithms (jaxpg.register_algorithm), policies "
        "(--network MODULE:ATTR) and environment families become names; installed packages "
        f"can register theirs as '{ENTRY_POINT_GROUP}' entry points",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = registry.names()
    train = sub.add_parser(
        "train",
        help=f"train an agent: {', '.join(names)} (default: ppo, on CartPole-v1)",
        description="Train an agent. `jaxpg train ALGO --help` lists ALGO's fields.",
    )
    algos = train.add_subparsers(dest="algo", metavar="ALGO", required=True)
    for name in names:
        cls = registry.config_class(name)
        doc = (cls.__doc__ or name).strip()
        p = algos.add_parser(name, help=" ".join(doc.split()).split(": ")[0], description=doc)
        add_config_flags(p, cls)
        add_preset_flag(p, name)
        add_run_flags(p)

    ev = sub.add_parser("eval", help="evaluate a run's policy on fresh episodes")
    add_eval_flags(ev)
    sub.add_parser("envs", help="list the environments with their observation and action spaces")
    pl = sub.add_parser("plot", help="(re)draw a run's plots from its metrics.csv")
    pl.add_argument("run_dir", metavar="RUN_DIR")
    return parser


# -- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxpg`` console script; returns the exit status."""
    original = list(sys.argv[1:] if argv is None else argv)
    try:
        rest, modules = take_imports(original)
        argv, explicit_algo = normalize_argv(rest)
        # jax.distributed.initialize() must come before anything initialises a JAX backend,
        # and building the parser imports gymnax, which does.
        if argv[:1] == ["train"] and "--distributed" in argv:
            setup_distributed(argv)
        modules = import_user_modules(modules)
        argv, explicit_algo = normalize_argv(rest)  # the imported algorithms are names now
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        args.command_line = "jaxpg " + " ".join(original)
        args.imports = modules
        if unknown:
            first = unknown[0]
            hint = suggest(all_flags(parser, args), first) if first.startswith("-") else ""
            raise UsageError(f"jaxpg {args.command}: error: unrecognized argument {first!r}{hint}")
        if args.command in ("train", "eval"):
            use_compile_cache(not args.no_compile_cache)
        if args.command == "train":
            return cmd_train(args, explicit_algo)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "envs":
            return cmd_envs()
        return cmd_plot(args)
    except UsageError as e:
        print(one_line(e), file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


ENTRY_POINT_GROUP = "jaxpg.algorithms"  # installed packages' algorithms (module entry points)


def take_imports(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(argv without them, modules)``: every ``--import MODULE`` (or ``--import=MODULE``),
    wherever it stands. ``MODULE`` is a module name (``my_algo``, ``pkg.algo``) or a ``.py``
    file."""
    rest, modules = [], []
    tokens = iter(argv)
    for token in tokens:
        if token == "--import":
            module = next(tokens, None)
            if module is None or module.startswith("-"):
                raise UsageError(
                    "jaxpg: error: --import needs a MODULE (a module name or a .py file)"
                )
            modules.append(module)
        elif token.startswith("--import="):
            modules.append(token.partition("=")[2])
        else:
            rest.append(token)
    return rest, modules


def import_user_modules(modules: Sequence[str]) -> list[str]:
    """Imports the ``--import`` modules (a module of your own registers its algorithms, env
    families or policies when imported) and every installed ``jaxpg.algorithms`` entry point;
    returns the modules' names, which the run directory records so that ``--resume`` and
    ``jaxpg eval`` import them again. The working directory is importable, as with ``python
    -m``; a ``.py`` file's folder is added to the path."""
    import importlib
    import importlib.metadata
    import os

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    names = []
    for module in modules:
        name = module
        if module.endswith(".py"):
            folder, _, file = os.path.abspath(module).rpartition(os.sep)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            name = file[: -len(".py")]
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - whatever the user's module raises, in one line
            raise UsageError(
                f"jaxpg: error: --import {module}: {type(e).__name__}: {' '.join(str(e).split())}"
            ) from None
        names.append(name)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as e:  # noqa: BLE001 - a broken plugin must not break the CLI
            _say(f"jaxpg: warning: entry point {entry.name} ({entry.value}) failed: {e}",
                 file=sys.stderr)  # fmt: skip
    return names


def setup_distributed(argv: Sequence[str]) -> None:
    """The ``--distributed`` hook: joins the multi-process job, with ``--coordinator``,
    ``--num-processes`` and ``--process-id`` from ``argv`` if given (on a TPU pod, Slurm or
    Open MPI, JAX finds them itself). It must come before any JAX computation, so :func:`main`
    calls it before building the parser (which imports gymnax)."""
    from jaxpg.flags import distributed_options
    from jaxpg.processes import initialize_distributed

    try:
        initialize_distributed(**distributed_options(argv))
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - no cluster, no coordinator, ...
        raise UsageError(f"jaxpg train: error: --distributed: {e}") from None


def _say(*parts: Any, file: Any = None) -> None:
    print(*parts, file=file or sys.stdout, flush=True)


def _error(message: str) -> UsageError:
    return UsageError(f"jaxpg train: error: {message}")


def cmd_train(args: Any, explicit_algo: bool) -> int:
    """``jaxpg train``: the flags to a config and run settings, then :mod:`jaxpg.runner`."""
    from jaxpg import runner, runs
    from jaxpg.checkpoint import CheckpointError

    given = config_fields(args, registry.config_class(args.algo))
    run_given = {k: getattr(args, k) for k in RUN_FLAGS if hasattr(args, k)}
    for name in ("chunk_updates", "stop_after", "resume_step"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise _error(f"{flag_name(name)}={value} is invalid: a positive integer")
    options: dict[str, Any] = {
        "progress": not args.no_progress,
        "plot": not args.no_plot,
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "chunk_updates": args.chunk_updates,
        "stop_after": args.stop_after,
        "spread": args.distributed,
    }
    try:
        runner.Checkpoints(args.checkpoint_every, args.keep_checkpoints)  # check the flags now
    except ValueError as e:
        raise _error("--" + str(e).replace("_", "-", 1)) from None
    loggers = _loggers(args)
    if args.resume is not None:
        run_dir = _local_dir(args.resume, "--resume")
        try:
            config, _ = runs.read_config(run_dir)
        except (FileNotFoundError, ValueError, TypeError) as e:
            raise _error(f"--resume {run_dir}: {e}") from None
        if explicit_algo and config.algorithm != args.algo:
            raise _error(f"--resume {run_dir} is a {config.algorithm} run, not {args.algo}")
        changed = sorted(set(given) - {"total_timesteps"}) + sorted(run_given)
        if getattr(args, "preset", None) is not None:
            changed.insert(0, "preset")
        if changed:
            raise _error(
                f"{flag_name(changed[0])} cannot be changed when resuming (the run's settings "
                f"are in {run_dir / runs.CONFIG_FILE}); only --total-timesteps and the "
                "run-control flags can"
            )
        if "total_timesteps" in given:
            try:
                extended = config.replace(total_timesteps=given["total_timesteps"])
            except ValueError as e:
                raise _error(str(e)) from None
            import jax

            if config.anneal_lr and jax.process_index() == 0:  # once, not once per process
                _say(
                    "note: anneal_lr is on, so the learning-rate schedule now spans "
                    f"{extended.num_updates} updates; the run will not match one trained to "
                    "this length in one go"
                )
        try:
            result = runner.resume(
                run_dir,
                total_timesteps=given.get("total_timesteps"),
                step=args.resume_step,
                callbacks=loggers,
                **options,
            )
        except CheckpointError as e:
            _say(f"jaxpg train: cannot resume: {e}", file=sys.stderr)
            return 1
        except runner.RunArgumentError as e:
            raise _error(f"--resume {run_dir}: {e}") from None
    else:
        config = build_config(args.algo, given, getattr(args, "preset", None))
        seed, num_seeds = run_given.get("seed", 0), run_given.get("seeds", 1)
        if num_seeds < 1:
            raise _error(f"--seeds={num_seeds} is invalid: a positive integer")
        if seed < 0:
            raise _error(f"--seed={seed} is invalid: a non-negative integer")
        sweep = None
        if run_given.get("sweep"):
            from jaxpg.sweep import parse_sweep_spec

            try:
                sweep = parse_sweep_spec(run_given["sweep"])
                runner.sweep_settings(config, sweep)
            except ValueError as e:
                raise _error(str(e)) from None
        if "run_dir" in run_given:
            run_dir = _local_dir(run_given["run_dir"], "--run-dir")
        else:
            root = _local_dir(run_given.get("runs_root", "runs"), "--runs-root")
            run_dir = runs.default_run_dir(config, root)
        info = {
            "env": given.get("env", config.env if isinstance(config.env, str) else "CartPole-v1"),
            "sweep": run_given.get("sweep") or None,
            "command": args.command_line,
            "imports": args.imports,
        }
        try:
            result = runner.run(
                config,
                seeds=list(range(seed, seed + num_seeds)),
                sweep=sweep,
                run_dir=run_dir,
                callbacks=loggers,
                run_info=info,
                **options,
            )
        except runner.RunArgumentError as e:
            raise _error(
                str(e).replace(f"run_dir={str(run_dir)!r}", f"--run-dir {run_dir}")
            ) from None
    return _report(result)


def _loggers(args: Any) -> list:
    """The ``--log`` loggers: their libraries checked now (a missing one fails before the
    compile), each built by the run once its directory exists (process 0 only)."""
    from jaxpg.callbacks import LoggerCallback
    from jaxpg.logging_backends import LoggerUnavailable, check_available, make_logger

    out = []
    for kind in args.log:
        try:
            check_available(kind)
        except LoggerUnavailable as e:
            raise UsageError(f"jaxpg train: {e}") from None
        options = {"project": args.wandb_project} if kind == "wandb" else {}

        def build(run: Any, kind: str = kind, options: dict = options) -> Any:
            return make_logger(kind, run.run_dir, run.config.to_dict(), **options)

        out.append(LoggerCallback(build))
    return out


def _report(result: Any) -> int:
    """Prints the final return and what to do next; returns the exit status. In a
    multi-process run (``--distributed``) process 0 alone prints them; an error goes to every
    process's stderr."""
    import jax

    summary, settings, run_dir = result.summary, result.members.settings, result.run_dir
    say = _say if jax.process_index() == 0 else (lambda *parts: None)  # stdout
    if "seeds" in summary:
        seeds = len(summary["seeds"])
        window = (
            f"mean over the last {FINAL_FRACTION:.0%} of updates; ± std over {seeds} "
            f"seed{'s' if seeds > 1 else ''}"
        )
        if settings:
            say(f"final return per setting ({window}):")
            for row in summary["settings"]:
                values = ", ".join(f"{k}={row[k]:g}" for k in settings[0])
                say(f"  {values}: {_fmt_return(row)}")
            say("best: " + ", ".join(f"{k}={summary['best_setting'][k]:g}" for k in settings[0]))
        else:
            say(f"final return ({window}): {_fmt_return(summary)}")
    if result.status in ("nonfinite", "checkpoint_failed"):
        _say(f"jaxpg train: {result.message}", file=sys.stderr)
    elif result.status == "interrupted":
        say(f"{result.message}; checkpoint saved. Continue with: jaxpg train --resume {run_dir}")
    elif result.status == "stopped":
        why = result.message or "--stop-after"
        say(
            f"stopped after update {result.updates_done} of {summary['num_updates']} "
            f"({why}). Continue with: jaxpg train --resume {run_dir}"
        )
    if result.status in ("complete", "stopped"):
        say(f"run directory: {run_dir}")
    if result.status == "complete":
        say(f"next: jaxpg eval {run_dir}")
    return EXIT_STATUS[result.status]


def _fmt_return(row: Mapping[str, Any]) -> str:
    if row.get("final_return_mean") is None:
        return "n/a (no episode finished)"
    return f"{row['final_return_mean']:.1f} ± {row['final_return_std']:.1f}"


# -- jaxpg eval / envs / plot --------------------------------------------------------------


def cmd_eval(args: Any) -> int:
    """``jaxpg eval``: :func:`jaxpg.evaluate.evaluate_run`, printed per member."""
    from jaxpg.checkpoint import CheckpointError
    from jaxpg.evaluate import RenderError, evaluate_run

    if args.episodes < 1:
        raise UsageError(
            f"jaxpg eval: error: --episodes={args.episodes} is invalid: a positive integer"
        )
    if args.render is not None and not args.render.lower().endswith(".gif"):
        raise UsageError(f"jaxpg eval: error: --render {args.render!r}: give a .gif file name")
    try:
        out = evaluate_run(
            args.run_dir,
            episodes=args.episodes,
            deterministic=args.deterministic,
            seed=args.seed,
            step=args.step,
            max_steps=args.max_steps,
            render=args.render,
        )
    except (CheckpointError, RenderError) as e:
        _say(f"jaxpg eval: {one_line(e)}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(f"jaxpg eval: error: {e}") from None
    config, step, returns = out.config, out.step, out.returns
    policy = "deterministic" if args.deterministic else "stochastic"
    n = returns.shape[0]
    _say(
        f"{config.env_spec.name} {config.algorithm}, checkpoint at update {step} "
        f"({step * config.batch_size:,} env steps per seed), {args.episodes} episodes x "
        f"{n} polic{'ies' if n > 1 else 'y'}, {policy} actions"
    )
    if n > 1:
        for m in range(n):
            _say(f"  {out.members.describe(m)}: {_stats(returns[m])}")
    _say(f"return: {_stats(returns.reshape(-1))}  ({returns.size} episodes)")
    if not out.finished.all():
        _say(
            f"note: {int((~out.finished).sum())} episodes did not end within the step bound; "
            "their returns are partial"
        )
    if args.render is not None:
        _say(f"wrote {args.render} ({out.frames} frames)")
    return 0


def _stats(r: np.ndarray) -> str:
    return f"mean {r.mean():.2f}  std {r.std():.2f}  min {r.min():.2f}  max {r.max():.2f}"


def cmd_envs() -> int:
    """``jaxpg envs``: :func:`jaxpg.envs.env_table` as text."""
    from jaxpg.envs import env_table

    rows = env_table()
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    header = ("environment", "observation", "action")
    _say("  ".join(h.ljust(w) for h, w in zip(header, width)).rstrip())
    for row in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(row[:3], width))
        _say((line + (f"  ({row[3]})" if row[3] else "")).rstrip())
    return 0


def cmd_plot(args: Any) -> int:
    """``jaxpg plot``: :func:`jaxpg.plotting.plot_run`."""
    from jaxpg.plotting import plot_run

    try:
        written = plot_run(args.run_dir)
    except (FileNotFoundError, ValueError, TypeError) as e:
        raise UsageError(f"jaxpg plot: error: {e}") from None
    _say("wrote " + " and ".join(str(p) for p in written))
    return 0


def _local_dir(path: str | Path, flag: str) -> Path:
    """``path`` as given, if local; an object-store URL is a usage error naming ``flag``."""
    from jaxpg.checkpoint import local_path

    try:
        local_path(path, flag)
    except ValueError as e:
        raise _error(str(e)) from None
    return Path(path)
