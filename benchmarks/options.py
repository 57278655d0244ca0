"""Command-line options the benchmark scripts share: output folder and name, ``--quick``,
``--no-plot``, ``--repeats``, and ``--set FIELD=VALUE`` config overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paths import QUICK_RESULTS_DIR, REPO_DIR, RESULTS_DIR


def add_common_args(parser, *, quick_help: str, repeats: bool = True) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help=f"where results go (default: {RESULTS_DIR.relative_to(REPO_DIR)}, or "
        f"{QUICK_RESULTS_DIR.relative_to(REPO_DIR)} with --quick, which git ignores)",
    )
    parser.add_argument("--name", default=None, help="file name stem of the results")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    if repeats:
        parser.add_argument(
            "--repeats",
            type=int,
            default=None,
            help="timed steady-state calls after the first (median reported)",
        )


def add_set_arg(parser) -> None:
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="jaxpg config overrides, e.g. --set shared_network=true "
        "hidden_sizes=64,64 anneal_lr=false",
    )


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["num_envs=8", "anneal_lr=false"]`` -> ``{"num_envs": 8, "anneal_lr": False}``:
    config overrides from the command line (ints, floats, booleans, strings)."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE, e.g. shared_network=true")
        out[name.strip().replace("-", "_")] = _parse_value(text.strip())
    return out


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "," in text:
        return tuple(_parse_value(t) for t in text.split(",") if t)
    return text
