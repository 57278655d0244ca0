"""The README's code snippets, run as written."""

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
