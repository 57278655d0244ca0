"""The README's code snippets, run as written."""

import json
import re
from pathlib import Path

import numpy as np

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def snippet(name: str) -> str:
    """The ```python block that follows ``<!-- snippet: NAME -->`` in the README."""
    match = re.search(rf"<!-- snippet: {re.escape(name)} -->\s*```python\n(.*?)```", README, re.S)
    assert match, f"README has no snippet {name!r}"
    return match.group(1)


def test_custom_algorithm_and_policy_snippet_runs_and_learns(capsys):
    namespace = {"__name__": "readme_snippet"}
    exec(compile(snippet("custom-algorithm"), "README.md:custom-algorithm", "exec"), namespace)
    result = namespace["result"]
    assert "Dense_0" in result.params.network["params"]  # the snippet's own policy was trained
    returns = np.asarray(result.metrics["episode_return"])
    assert not np.any(np.asarray(result.metrics["nonfinite"]))
    assert np.nanmean(returns[-10:]) > 2 * np.nanmean(returns[:10])  # and it learns
    assert capsys.readouterr().out.strip()


def test_sequence_task_snippet_runs_and_learns(capsys):
    namespace = {"__name__": "readme_snippet"}
    exec(compile(snippet("sequence-task"), "README.md:sequence-task", "exec"), namespace)
    stats = namespace["evaluate_task"](
        namespace["config"], namespace["result"].params, namespace["jax"].random.key(1)
    )
    assert float(stats["exact_match"]) >= 0.8  # chance is 1/16
    assert "exact_match" in capsys.readouterr().out


def test_run_loop_snippet_checkpoints_resumes_and_calls_back(tmp_path, capsys):
    run_dir = tmp_path / "run"
    namespace = {"__name__": "readme_snippet", "RUN_DIR": run_dir}
    exec(compile(snippet("run-loop"), "README.md:run-loop", "exec"), namespace)
    out = capsys.readouterr().out
    assert "stopped 64" in out
    assert sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir()) == [32, 64, 128]
    assert namespace["result"].status == "complete" and namespace["result"].updates_done == 128
    assert "128 [" in out  # the callback printed the last chunk's returns


def _user_module(folder: Path) -> None:
    """The README's ``my_a2c.py``, written to ``folder`` and importable from there."""
    import sys

    (folder / "my_a2c.py").write_text(snippet("user-module"))
    sys.modules.pop("my_a2c", None)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def test_user_module_snippets_run_sweep_resume_and_evaluate(tmp_path, capsys):
    import sys

    _user_module(tmp_path)
    run_dir = tmp_path / "run"
    namespace = {"__name__": "readme_snippet", "RUN_DIR": run_dir}
    try:
        exec(compile(snippet("user-module-run"), "README.md:user-module-run", "exec"), namespace)
    finally:
        sys.path.remove(str(tmp_path))
    result = namespace["result"]
    assert result.status == "complete" and len(result.members) == 4
    recorded = json.loads((run_dir / "config.json").read_text())["config"]
    assert (
        recorded["config_class"] == "my_a2c:MyConfig" and recorded["network"] == "my_a2c:MyPolicy"
    )
    assert [s["prox_coef"] for s in result.summary["settings"]] == [0.0, 0.5]
    out = capsys.readouterr().out
    assert out.count("[") >= 2  # the settings' final returns, the members' evaluation returns


def readme_commands() -> list[str]:
    """Every ``jaxpg ...`` command the README shows: the lines of its bash blocks (with their
    continuations) and the inline ``jaxpg train ...`` examples."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("jaxpg "):
                commands.append(line)
    for inline in re.findall(r"`(jaxpg (?:train|eval|plot|envs)[^`]*)`", README.replace("\n", " ")):
        commands.append(inline)
    return [re.sub(r"\[[^\]]*\]", "", c).split(" && ")[0] for c in commands]


def test_every_cli_example_in_the_readme_parses_and_builds_its_config(tmp_path):
    import shlex
    import sys

    from jaxpg import cli, flags, registry

    commands = readme_commands()
    assert len(commands) >= 15 and "jaxpg train" in commands
    _user_module(tmp_path)  # for `jaxpg train --import my_a2c my-a2c ...`
    imported = [m for c in commands for m in cli.take_imports(shlex.split(c))[1]]
    try:
        assert imported and set(cli.import_user_modules(imported)) == {"my_a2c"}
    finally:
        sys.path.remove(str(tmp_path))
    parser = cli.build_parser()
    for command in commands:
        argv, _ = flags.normalize_argv(cli.take_imports(shlex.split(command)[1:])[0])
        argv = [a if "<" not in a else "runs/x" for a in argv]
        if "--help" in argv or "ALGO" in argv or (argv[0] in ("eval", "plot") and len(argv) < 2):
            continue  # a mention of the command, not an example
        args, unknown = parser.parse_known_args(argv)
        assert not unknown, f"{command}: unknown {unknown}"
        if args.command == "train" and args.resume is None:
            fields = flags.config_fields(args, registry.config_class(args.algo))
            flags.build_config(args.algo, fields, getattr(args, "preset", None))
