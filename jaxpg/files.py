"""Files that are written whole or not at all, and the one JSON policy.

Every result file jaxpg writes (``config.json``, ``summary.json``, ``metrics.csv``, plots, GIFs,
the benchmarks' JSON) goes to a temporary file in the same directory and is moved into place
with ``os.replace``, so a reader, or a crash, never sees half a file.

JSON has no NaN or infinity: :func:`to_json` writes them as ``null`` (and arrays as lists), so
every file is standard JSON that any parser reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "jsonable",
    "read_json",
    "to_json",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); a result file gets open()'s usual mode.
        os.chmod(tmp, 0o666 & ~_umask())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (and fsyncs it)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonable(obj: Any) -> Any:
    """Plain JSON values: mappings with string keys, lists, numbers, strings, bools, None.

    NumPy and JAX scalars and arrays become numbers and lists; NaN and infinities become
    ``None``; a path becomes its string; anything else its ``str``.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # np.ndarray, jax.Array
        return jsonable(obj.tolist())
    return str(obj)


def to_json(obj: Any) -> str:
    """``obj`` as indented, standard JSON text (NaN -> ``null``, see :func:`jsonable`)."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes :func:`to_json` of ``obj`` to ``path`` atomically."""
    atomic_write_text(path, to_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
