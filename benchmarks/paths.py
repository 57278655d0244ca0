"""Where the benchmark suite lives, where its results go, and the checkout's jaxpg on the path.

The peer drivers run in their own virtual environments, where jaxpg is not installed. What they
need from it, :mod:`jaxpg.files` and :mod:`jaxpg.metrics`, imports only the standard library and
numpy, so the checkout is appended to ``sys.path``: an installed jaxpg, or one on
``PYTHONPATH`` (``device_suite.sh``'s), still comes first.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "tmp"  # gitignored: --quick runs land here by default

if str(REPO_DIR) not in sys.path:
    sys.path.append(str(REPO_DIR))
