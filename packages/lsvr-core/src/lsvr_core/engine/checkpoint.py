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

from lsvr_core.errors import LsvrError

FORMAT = 1


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write ``obj`` with :func:`torch.save` to a temporary file beside ``path``, fsync it, then ``os.replace``.

    A failure mid-write (full disk, kill) leaves any previous ``path`` untouched and removes the temporary.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def model_state(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of an lsvr checkpoint, or of a bare state dict."""
    state = ckpt.get("model", ckpt)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LsvrError(f"{path}: not an lsvr checkpoint or a state dict of tensors")
    return state


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


def load_weights(model: nn.Module, path: str | Path, log: Any) -> None:
    """``init_from``: load model weights non-strictly and report missing, unexpected and mis-shaped keys.

    Keys whose shapes differ (e.g. a classifier with another class count) are skipped and reported.
    """
    state = model_state(load(path), path)
    own = model.state_dict()
    shape_mismatch = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in shape_mismatch}
    result = model.load_state_dict(state, strict=False)
    log.info(f"init_from {path}: loaded {len(state) - len(result.unexpected_keys)} tensors")
    for title, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys),
                        ("shape mismatch (skipped)", shape_mismatch)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            log.info(f"  {title} keys: {shown}")
