"""Checkpoints: atomic writes, ``weights_only`` loading, RNG states, and ``init_from`` weight loading.

A checkpoint is a dict of tensors and primitive containers only (so :func:`torch.load` with
``weights_only=True`` reads it)::

    {"format": 1, "model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "epoch": int, "iter": int, "batch_in_epoch": int, "best": float | None, "best_iter": int,
     "rng": {"torch": uint8 tensor, "cuda": [uint8 tensor], "numpy": {...}, "python": {...}},
     "meta": {"lsvr_core": str, "torch": str}}

``epoch`` is the 0-based epoch in progress and ``batch_in_epoch`` the number of its batches already
trained (0 after an epoch ends), so a resumed run continues with the next batch.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lsvr_core.errors import ConfigError, LsvrError

FORMAT = 1


class CheckpointWriteError(LsvrError, OSError):
    """A checkpoint could not be written (full disk, read-only folder): one line naming the file (an OSError
    too, for callers that handle I/O errors)."""


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` with :func:`torch.save` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A failure mid-write (full disk, kill) leaves any previous ``path`` untouched and removes the temporary
    (a temporary left by a killed process is removed by :func:`remove_stale_temporaries` at the next start).

    Raises:
        CheckpointWriteError: the file cannot be written (full disk, read-only folder); names the file.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
        if isinstance(err, RuntimeError) and ("write failed" in str(err) or "inline_container" in str(err)):
            raise CheckpointWriteError(f"cannot write checkpoint {path}: the write failed (disk full?)") from None
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.NAME.tmpPID`` files in ``folder`` left by :func:`save_atomic` of processes that no longer run
    (a kill -9 during a save); returns what was removed."""
    removed = []
    for tmp in folder.glob(".*.tmp*") if folder.is_dir() else ():
        pid = tmp.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_numbered(folder: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``epoch_N.pt`` in ``folder`` (by N); returns the deleted paths."""
    numbered = sorted((p for p in folder.glob("epoch_*.pt") if p.stem[6:].isdigit()), key=lambda p: int(p.stem[6:]))
    doomed = numbered[:-keep] if keep > 0 else numbered
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``.

    Raises:
        LsvrError: missing or unreadable file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise LsvrError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle/zip errors: name the file, keep the cause short
        raise LsvrError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None


def model_state(ckpt: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of an lsvr checkpoint, or of a bare state dict.

    Raises:
        ConfigError: the file holds something else (a tensor, a list, ...).
    """
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not an lsvr checkpoint or a state dict of tensors (it holds "
                          f"{type(ckpt).__name__ if not isinstance(ckpt, dict) else 'a dict of other values'})")
    return state


RESUME_KEYS = ("model", "optimizer", "scheduler", "scaler", "epoch", "iter", "batch_in_epoch", "best", "best_iter",
               "rng")


def check_resumable(ckpt: Any, path: str | Path) -> None:
    """Raise :class:`ConfigError` unless ``ckpt`` has everything a resumed run needs."""
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not an lsvr checkpoint (it holds a {type(ckpt).__name__}); cannot resume from it")
    if "optimizer" not in ckpt:
        raise ConfigError(f"{path}: holds weights only, cannot resume a run from it (use model.init_from)")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if missing:
        raise ConfigError(f"{path}: not a complete lsvr checkpoint (no {', '.join(missing)}); cannot resume from it "
                          f"(use model.init_from to start from its weights)")


def key_report(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """``{"missing", "unexpected", "mismatched"}`` key lists of ``state`` against ``model``'s state dict."""
    own = model.state_dict()
    return {"missing": [k for k in own if k not in state], "unexpected": [k for k in state if k not in own],
            "mismatched": [k for k, v in state.items() if k in own and own[k].shape != v.shape]}


def _shown(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Load ``state`` strictly (resume, eval, predict).

    Raises:
        ConfigError: the keys or shapes differ: one line with the counts and the first keys of each kind.
    """
    report = key_report(model, state)
    if any(report.values()):
        parts = [f"{len(v)} {k} ({_shown(v)})" for k, v in report.items() if v]
        raise ConfigError(f"{path}: was saved from a different model than this config builds: {'; '.join(parts)} "
                          f"keys")
    model.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors and primitives."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss": py_state[2]},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))


def load_weights(model: nn.Module, path: str | Path, log: Any, *, min_fraction: float = 0.0,
                 strict: bool = True) -> float:
    """``init_from``: load model weights non-strictly and report missing, unexpected and mis-shaped keys.

    Keys whose shapes differ (e.g. a classifier with another class count) are skipped and reported.

    Returns:
        the fraction of the model's values (``numel`` over its state dict) that were loaded.
    Raises:
        ConfigError: with ``strict``, when nothing or less than ``min_fraction`` of the model's values loads.
    """
    state = model_state(load(path), path)
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in shape_mismatch}
    result = model.load_state_dict(state, strict=False)
    loaded = [k for k in state if k in own]
    total = sum(v.numel() for v in own.values()) or 1
    fraction = sum(own[k].numel() for k in loaded) / total
    summary = (f"init_from {path}: loaded {len(loaded)} of {len(own)} tensors ({100 * fraction:.1f} % of the "
               f"model's values); {len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected, "
               f"{len(shape_mismatch)} shape-mismatched")
    log.info(summary)
    if strict and (not loaded or fraction < min_fraction):
        raise ConfigError(f"model.{summary}; at least {100 * min_fraction:.0f} % must load "
                          f"(model.init_from_min_fraction), or set model.init_from_strict: false. Unexpected keys "
                          f"look like: {_shown(result.unexpected_keys) or 'none'}")
    if not loaded or fraction < min_fraction:
        log.warning(f"init_from {path}: only {100 * fraction:.1f} % of the model's values loaded "
                    f"(model.init_from_strict: false)")
    for title, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys),
                        ("shape mismatch (skipped)", shape_mismatch)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            log.info(f"  {title} keys: {shown}")
    return fraction
