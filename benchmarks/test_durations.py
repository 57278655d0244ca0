"""The test suite's time, file by file and test by test, before and after a change.

Each input is a pytest JUnit XML report of one whole run, written by the README's test command
plus ``--junitxml``; ``--wall`` gives each run's wall-clock seconds (pytest's last line). The
table sums each file's test times (setup, call and teardown of every test, as pytest reports
them) and gives after / before; the slowest tests of the last run follow. With 2 xdist workers
on 2 cores, the wall time is about half the summed time.

    python -m pytest -q --durations=0 --junitxml=/tmp/before.xml    # on the old tree
    python -m pytest -q --durations=0 --junitxml=/tmp/after.xml     # on the new tree
    python benchmarks/test_durations.py /tmp/before.xml /tmp/after.xml \\
        --labels 8be32ff "this change" --wall 1164 809 --name test_durations_emitters_cpu
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402
from options import add_common_args  # noqa: E402
from report import payload, publish  # noqa: E402


def read_report(path: Path) -> dict[str, float]:
    """``{"tests/FILE.py::NAME": seconds}`` from a pytest JUnit XML report."""
    times: dict[str, float] = {}
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "").split(".")
        file = "/".join(module) + ".py"
        times[f"{file}::{case.get('name')}"] = float(case.get("time", 0.0))
    return times


def per_file(times: dict[str, float]) -> Counter:
    files: Counter = Counter()
    for name, seconds in times.items():
        files[name.split("::")[0]] += seconds
    return files


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", type=Path, nargs="+", help="JUnit XML reports, oldest first")
    parser.add_argument("--labels", nargs="+", default=None, help="a label per report")
    parser.add_argument("--wall", type=float, nargs="+", default=None, help="wall s per report")
    parser.add_argument("--top", type=int, default=30, help="slowest tests listed")
    parser.add_argument("--note", action="append", default=[], help="a line under the table")
    add_common_args(parser, quick_help="(no effect: nothing is run)", repeats=False)
    args = parser.parse_args(argv)
    labels = args.labels or [p.stem for p in args.reports]
    walls = args.wall or [None] * len(args.reports)
    if not len(labels) == len(walls) == len(args.reports):
        parser.error("give one label and one wall time per report")
    runs = [read_report(p) for p in args.reports]
    files = [per_file(t) for t in runs]
    last = files[-1]
    rows = [
        {"file": "TOTAL (summed)", **{lab: sum(f.values()) for lab, f in zip(labels, files)}},
        {"file": "wall", **dict(zip(labels, walls))},
    ]
    rows += [
        {"file": name, **{lab: f.get(name, 0.0) for lab, f in zip(labels, files)}}
        for name, _ in last.most_common()
    ]
    for row in rows:
        a, b = row[labels[0]], row[labels[-1]]
        row["last / first"] = b / a if a and b is not None else None
    slowest = sorted(runs[-1].items(), key=lambda kv: -kv[1])[: args.top]
    columns = [("file", "file"), *[(lab, f"{lab} s") for lab in labels]]
    columns.append(("last / first", "last / first"))
    data = payload(
        "test_durations",
        "compare",
        {"reports": [str(p) for p in args.reports], "labels": labels, "wall_s": walls},
        rows,
        machine_info(),
        argv,
        slowest=[{"test": n, "seconds": s} for n, s in slowest],
        notes=[
            *args.note,
            f"slowest ({labels[-1]}): " + "; ".join(f"{n} {s:.1f}" for n, s in slowest[:10]),
        ],
    )
    publish(args, "test_durations", data, rows, columns)


if __name__ == "__main__":
    main()
