"""Optional experiment loggers: Weights & Biases and TensorBoard.

Neither library is a dependency of jaxpg; each is imported only when its logger is built
(``pip install 'jaxpg[wandb]'`` or ``'jaxpg[tensorboard]'``). Both take the same calls:

    logger = make_logger("tensorboard", run_dir, config_dict)
    logger.log({"episode_return": 123.0, "loss": 0.5}, step=env_steps)
    logger.close()

The CLI logs, per update, the mean over seeds of every metric (per setting for a sweep, with
a ``setting_<k>/`` prefix), at step = env steps. Offline use: ``WANDB_MODE=offline`` (or
``mode="offline"``) keeps W&B on disk under ``<run_dir>/wandb``; TensorBoard always writes event
files under ``<run_dir>/tensorboard``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

BACKENDS = ("wandb", "tensorboard")


class Logger(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class LoggerUnavailable(ImportError):
    """The logging library is not installed."""


class TensorBoardLogger:
    """Scalars to TensorBoard event files through ``tensorboardX``."""

    def __init__(self, logdir: str | os.PathLike):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise LoggerUnavailable(
                "--log tensorboard needs tensorboardX: pip install 'jaxpg[tensorboard]'"
            ) from None
        self.logdir = Path(logdir)
        self._writer = SummaryWriter(logdir=str(self.logdir))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class WandbLogger:
    """Metrics to Weights & Biases. ``mode`` is W&B's: "online", "offline" or "disabled"."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: Mapping[str, Any],
        *,
        project: str | None = None,
        name: str | None = None,
        mode: str | None = None,
    ):
        try:
            import wandb
        except ImportError:
            raise LoggerUnavailable("--log wandb needs wandb: pip install 'jaxpg[wandb]'") from None
        self.run = wandb.init(
            project=project or "jaxpg",
            name=name or Path(run_dir).name,
            dir=str(run_dir),
            config=dict(config),
            mode=mode or os.environ.get("WANDB_MODE") or None,
            reinit=True,
        )

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        self.run.log(clean, step=int(step))

    def close(self) -> None:
        self.run.finish()


_LIBRARIES = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


def check_available(kind: str) -> None:
    """Raises :class:`LoggerUnavailable` now if the ``kind`` logger's library is missing (so a
    run fails before it compiles, not after), ``ValueError`` for an unknown kind."""
    import importlib.util

    if kind not in _LIBRARIES:
        raise ValueError(f"--log {kind!r}: unknown logger; choose from {list(BACKENDS)}")
    module, extra = _LIBRARIES[kind]
    if importlib.util.find_spec(module) is None:
        raise LoggerUnavailable(f"--log {kind} needs {module}: pip install 'jaxpg[{extra}]'")


def make_logger(
    kind: str, run_dir: str | os.PathLike, config: Mapping[str, Any], **options: Any
) -> Logger:
    """Builds the ``kind`` logger ("wandb" or "tensorboard") for a run directory."""
    if kind == "tensorboard":
        return TensorBoardLogger(Path(run_dir) / "tensorboard")
    if kind == "wandb":
        return WandbLogger(run_dir, config, **options)
    raise ValueError(f"--log {kind!r}: unknown logger; choose from {list(BACKENDS)}")
