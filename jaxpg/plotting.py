"""Plots from a metrics table (:func:`jaxpg.metrics.read_metrics_csv`, or the run loop's).

* :func:`plot_learning_curve`: episode return against env steps; the mean over seeds as a line
  and a band of one standard deviation over seeds (or min..max with ``band="minmax"``), thin
  lines for the individual seeds.
* :func:`plot_sweep`: one mean curve per sweep setting, and the final return of each setting
  (mean and standard deviation over seeds) as bars.
* :func:`plot_run` / :func:`plot_run_table`: a run directory's ``learning_curve.png`` (and
  ``sweep.png``).

Per-update returns are noisy and undefined (NaN) for updates in which no episode ended, so each
seed's curve is a NaN-ignoring moving average over ``smooth`` updates (default: 1% of the run)
before the mean over seeds is taken. Uses matplotlib's object API (no pyplot, no display).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxpg.files import atomic_path
from jaxpg.metrics import FINAL_FRACTION, final_return, member_curves


def smooth_curve(values: np.ndarray, window: int) -> np.ndarray:
    """NaN-ignoring trailing moving average over the last axis: ``[..., U] -> [..., U]``.

    A point is NaN only while no finite value has been seen in its window.
    """
    values = np.asarray(values, np.float64)
    if window <= 1:
        return values
    finite = np.isfinite(values)
    total = np.cumsum(np.where(finite, values, 0.0), axis=-1)
    count = np.cumsum(finite, axis=-1)
    pad = [(0, 0)] * (values.ndim - 1) + [(window, 0)]
    total = total - np.pad(total, pad)[..., : values.shape[-1]]
    count = count - np.pad(count, pad)[..., : values.shape[-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _default_window(num_updates: int) -> int:
    return max(1, num_updates // 100)


def _mean_band(curves: np.ndarray, band: str):
    with np.errstate(invalid="ignore"), _ignore_nan_warnings():
        mean = np.nanmean(curves, axis=0)
        if band == "minmax":
            low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
        else:
            # Clipped to the seeds' range: a return band past the best seed is no information.
            std = np.nanstd(curves, axis=0)
            low = np.maximum(mean - std, np.nanmin(curves, axis=0))
            high = np.minimum(mean + std, np.nanmax(curves, axis=0))
    return mean, low, high


class _ignore_nan_warnings:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _figure(width=7.0, height=4.5, ncols=1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols if ncols > 1 else width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _steps_axis(ax) -> None:
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel("env steps")


def _save(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def plot_learning_curve(
    table: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    smooth: int | None = None,
    band: str = "std",
) -> None:
    """Saves ``path`` (PNG): return vs env steps, mean and a band over seeds.

    For a sweep table, each setting gets its own mean line and band.
    """
    setting_ids, seeds, updates, steps, values = member_curves(table)
    window = _default_window(len(updates)) if smooth is None else int(smooth)
    curves = smooth_curve(values, window)  # [K, S, U]
    fig, ax = _figure()
    colors = _colors(len(setting_ids))
    labels = _setting_labels(table, setting_ids)
    for k in range(len(setting_ids)):
        color = colors[k]
        if len(seeds) > 1 and len(seeds) <= 16 and len(setting_ids) == 1:
            for s in range(len(seeds)):
                ax.plot(steps, curves[k, s], color=color, alpha=0.25, linewidth=0.7)
        mean, low, high = _mean_band(curves[k], band)
        label = (
            labels[k]
            if len(setting_ids) > 1
            else (f"mean over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}")
        )
        ax.plot(steps, mean, color=color, linewidth=2.0, label=label)
        if len(seeds) > 1:
            band_label = "± 1 std over seeds" if band == "std" else "min..max over seeds"
            ax.fill_between(
                steps,
                low,
                high,
                color=color,
                alpha=0.2,
                linewidth=0,
                label=band_label if len(setting_ids) == 1 else None,
            )
    _steps_axis(ax)
    ax.set_ylabel(
        "episode return" + (f" (moving average over {window} updates)" if window > 1 else "")
    )
    ax.set_title(title or "learning curve")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def plot_sweep(
    table: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    smooth: int | None = None,
) -> None:
    """Saves ``path`` (PNG): curves per sweep setting, and each setting's final return."""
    setting_ids, seeds, updates, steps, values = member_curves(table)
    window = _default_window(len(updates)) if smooth is None else int(smooth)
    curves = smooth_curve(values, window)
    finals = final_return(values)  # [K, S]
    labels = _setting_labels(table, setting_ids)
    colors = _colors(len(setting_ids))
    fig, (ax, bx) = _figure(width=6.0, ncols=2)
    for k in range(len(setting_ids)):
        mean, low, high = _mean_band(curves[k], "std")
        ax.plot(steps, mean, color=colors[k], linewidth=1.8, label=labels[k])
        if len(seeds) > 1:
            ax.fill_between(steps, low, high, color=colors[k], alpha=0.15, linewidth=0)
    _steps_axis(ax)
    ax.set_ylabel(
        "episode return" + (f" (moving average over {window} updates)" if window > 1 else "")
    )
    ax.set_title("mean over seeds" + (" ± 1 std" if len(seeds) > 1 else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="x-small")
    with _ignore_nan_warnings():
        mean = np.nanmean(finals, axis=1)
        std = np.nanstd(finals, axis=1) if len(seeds) > 1 else np.zeros(len(setting_ids))
    positions = np.arange(len(setting_ids))
    bx.barh(positions, np.nan_to_num(mean), xerr=np.nan_to_num(std), color=colors, alpha=0.8)
    bx.set_yticks(positions, labels, fontsize="x-small")
    bx.invert_yaxis()
    bx.set_xlabel(f"final return (mean over the last {FINAL_FRACTION:.0%} of updates)")
    bx.set_title(f"final return, {len(seeds)} seed{'s' if len(seeds) > 1 else ''} per setting")
    bx.grid(True, axis="x", alpha=0.3)
    fig.suptitle(title or "sweep")
    _save(fig, path)


def _colors(n: int) -> Sequence:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


def _setting_labels(table: Mapping[str, np.ndarray], setting_ids: np.ndarray) -> list[str]:
    """``"lr=0.0003, gamma=0.99"`` per setting, from the swept columns of the table."""
    if "setting" not in table:
        return ["" for _ in setting_ids]
    names = list(table)
    swept = names[names.index("setting") + 1 : names.index("seed")]
    setting = np.asarray(table["setting"])
    labels = []
    for k in setting_ids:
        first = int(np.argmax(setting == k))
        labels.append(
            ", ".join(f"{n}={float(table[n][first]):.4g}" for n in swept) or f"setting {k}"
        )
    return labels


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """(Re)draws a run directory's plots from its ``metrics.csv``: the learning curve, and the
    sweep plot for a sweep; returns the paths written."""
    from jaxpg import runs
    from jaxpg.members import Members
    from jaxpg.metrics import read_metrics_csv, table_len

    run_dir = Path(run_dir)
    path = run_dir / runs.METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    config, run = runs.read_config(run_dir)
    table = read_metrics_csv(path)
    if not table_len(table):
        raise ValueError(f"{path} has no rows")
    return plot_run_table(run_dir, table, config, Members.from_dict(run))


def plot_run_table(
    run_dir: str | os.PathLike, table: Mapping, config: Any, members: Any
) -> list[Path]:
    """A run directory's plots from its metrics ``table``: ``learning_curve.png``, and
    ``sweep.png`` for a sweep (``members``: :class:`jaxpg.members.Members`)."""
    from jaxpg import runs

    run_dir = Path(run_dir)
    s = members.num_seeds
    title = f"{config.env_spec.name} {config.algorithm}: {s} seed{'s' if s > 1 else ''}"
    written = [run_dir / runs.CURVE_FILE]
    plot_learning_curve(table, written[0], title=title)
    if members.settings:
        written.append(run_dir / runs.SWEEP_FILE)
        plot_sweep(table, written[1], title=f"{title}, {members.num_settings} settings")
    return written
