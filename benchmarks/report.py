"""What a run writes: its JSON record, the markdown table, the plot, and the progress log.

Every file goes through :mod:`jaxpg.files` (written atomically, so an interrupted run never
leaves a half-written JSON, table or plot; NaN and infinities written as JSON ``null``).
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machine import loadavg, machine_line
from paths import BENCH_DIR, QUICK_RESULTS_DIR, REPO_DIR, RESULTS_DIR

from jaxpg.files import atomic_write_bytes, atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1


def log(*args) -> None:
    """Progress goes to stderr; the table alone goes to stdout."""
    print(*args, file=sys.stderr, flush=True)


# -- numbers and tables -----------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (NaN where none)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    if len(vals) == 1:
        return vals[0], 0.0
    return statistics.fmean(vals), statistics.stdev(vals)


def median_iqm(values: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile mean of the finite values (NaN where none).

    IQM (Agarwal et al., 2021, rliable): the mean of the middle half after dropping
    ``floor(n / 4)`` values from each end of the sorted values, as ``scipy.stats.trim_mean(x,
    0.25)`` does; 8 seeds -> the mean of the 3rd to 6th."""
    vals = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not vals:
        return math.nan, math.nan
    cut = len(vals) // 4
    return statistics.median(vals), statistics.fmean(vals[cut : len(vals) - cut])


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ``1.23e+06`` style only when it must be."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, bool):
        return "yes" if x else "no"
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_mean_std(mean: float, std: float) -> str:
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{fmt(mean)} ± {fmt(std)}"


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """``columns`` are ``(key, header)`` pairs; values are formatted with :func:`fmt`."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(fmt(r.get(k)) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


# -- the record and its files -----------------------------------------------------------------


def command_line(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that reruns this figure: ``python benchmarks/NAME.py ARGS``."""
    args = sys.argv[1:] if argv is None else list(argv)
    script = (BENCH_DIR / f"{name}.py").relative_to(REPO_DIR)
    return " ".join(["python", shlex.quote(str(script)), *map(shlex.quote, args)])


def payload(
    name: str,
    mode: str,
    settings: dict,
    results: list,
    machine: dict,
    argv: Sequence[str] | None = None,
    **extra,
) -> dict:
    """The JSON record of a run. ``argv`` is what ``main`` was given (None: ``sys.argv``)."""
    return {
        "benchmark": name,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command_line(name, argv),
        "mode": mode,
        "machine": machine,
        "settings": settings,
        "results": results,
        **extra,
        "loadavg_at_end": loadavg(),
    }


def write_plot(path: Path, draw: Callable[[Any], None], figsize=(10, 4.5)) -> None:
    """``draw(fig)`` fills a matplotlib figure; it is saved as PNG atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_results(
    out_dir: Path,
    name: str,
    data: dict,
    table: str,
    draw: Callable[[Any], None] | None = None,
    figsize=(10, 4.5),
) -> dict[str, Path]:
    """Writes ``NAME.json``, ``NAME.md`` (the table with its command and machine) and, if
    ``draw`` is given, ``NAME.png``. Returns the paths written."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md"}
    atomic_write_json(paths["json"], data)
    md = (
        f"### {name}\n\n"
        f"Command: `{data['command']}`\n\n"
        f"Machine: {machine_line(data['machine'])}\n\n"
        f"{table}\n"
    )
    for note in data.get("notes", []):
        md += f"\n- {note}"
    atomic_write_text(paths["md"], md.rstrip() + "\n")
    if draw is not None:
        paths["png"] = out_dir / f"{name}.png"
        write_plot(paths["png"], draw, figsize)
    return paths


def default_out_dir(quick: bool) -> Path:
    return QUICK_RESULTS_DIR if quick else RESULTS_DIR


def publish(
    args, name: str, data: dict, rows, columns, draw=None, figsize=(10, 4.5)
) -> dict[str, Path]:
    """A script's last step: the table of ``rows``, written with ``data`` (and the plot that
    ``draw`` makes, unless ``--no-plot``) under ``--out-dir``/``--name``, and printed."""
    table = markdown_table(rows, columns)
    out_dir = args.out_dir or default_out_dir(args.quick)
    paths = write_results(
        out_dir, args.name or name, data, table, None if args.no_plot else draw, figsize
    )
    print(table)
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths
