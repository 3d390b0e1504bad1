"""The run's work directory: resolved config, plugin versions, metrics, log file, checkpoints.

A new run never reuses a folder that holds a run (:mod:`lsvr_core.engine.rundir`: ``work_dirs/x``,
``work_dirs/x2``, ...). Layout (written by rank 0 only)::

    work_dir/
      config.resolved.yaml   the validated config with every default filled in
      plugins.json           {distribution: version} of every loaded plugin
      metrics.jsonl          one JSON object per evaluation: epoch, iter and metric keys
      log.txt                the run's log lines (progress, evaluation tables, warnings)
      checkpoints/           last.pt, best.pt, epoch_N.pt (emergency.pt after a crash)
      predictions/           drawn predictions after each evaluation
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOGGER_NAME = "lsvr.engine"


@dataclass(frozen=True)
class WorkDir:
    """Paths of one run's work directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def plugins(self) -> Path:
        return self.root / "plugins.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch}.pt"

    def create(self, cfg: Any, distributions: dict[str, str]) -> None:
        """Make the folders, write ``config.resolved.yaml`` and ``plugins.json``, create ``metrics.jsonl``
        (kept when it exists: a resumed run appends)."""
        from lsvr_core.config import config_to_yaml
        from lsvr_core.errors import ConfigError

        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.predictions.mkdir(parents=True, exist_ok=True)
            self.config.write_text(config_to_yaml(cfg))
            self.plugins.write_text(json.dumps(dict(sorted(distributions.items())), indent=2) + "\n")
            self.metrics.touch()
        except OSError as err:
            where = err.filename or self.root
            raise ConfigError(f"runtime.work_dir={str(self.root)!r}: cannot write {where}: "
                              f"{err.strerror or err}; choose another runtime.work_dir") from None

    @property
    def scalars(self) -> Path:
        return self.root / "scalars.jsonl"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    def append_metrics(self, record: dict[str, Any], path: Path | None = None) -> None:
        """Append one JSON line to ``metrics.jsonl`` (or ``path``; non-finite floats are written as null)."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with (path or self.metrics).open("a") as fh:
            fh.write(json.dumps(clean) + "\n")


class _DropProgress(logging.Filter):
    """Drops progress lines from the terminal while a tqdm bar shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.active and getattr(record, "progress", False))


def setup_logging(log_file: Path | None, is_main: bool) -> tuple[logging.Logger, _DropProgress]:
    """Configure the ``lsvr.engine`` logger: stderr and ``log_file`` on rank 0, errors only elsewhere.

    Returns:
        (logger, the terminal filter whose ``active`` flag hides progress lines while a tqdm bar is shown).
    """
    logger = logging.getLogger(LOGGER_NAME)
    close_logging(logger)
    logger.setLevel(logging.INFO if is_main else logging.ERROR)
    logger.propagate = False
    drop = _DropProgress()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(message)s"))
    stream.addFilter(drop)
    logger.addHandler(stream)
    if log_file is not None and is_main:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        _bridge_warnings(log_file)
    return logger, drop


def _bridge_warnings(log_file: Path) -> None:
    """Send warnings of other loggers (plugins: dropped annotations, skipped images) to stderr and the run log."""
    root = logging.getLogger()
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(log_file)):
        handler.setLevel(logging.WARNING)
        fmt = "%(asctime)s %(message)s" if isinstance(handler, logging.FileHandler) else "%(message)s"
        handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))
        handler._lsvr_bridge = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def close_logging(logger: logging.Logger | None = None) -> None:
    """Remove and close the handlers of the engine logger (between runs in one process)."""
    logger = logger or logging.getLogger(LOGGER_NAME)
    root = logging.getLogger()
    bridges = [(root, h) for h in root.handlers if getattr(h, "_lsvr_bridge", False)]
    for owner, handler in [(logger, h) for h in list(logger.handlers)] + bridges:
        owner.removeHandler(handler)
        handler.close()
