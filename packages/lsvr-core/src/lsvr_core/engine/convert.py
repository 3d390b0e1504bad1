"""``lsvr convert-weights``: turn a reference implementation's checkpoint into an lsvr weights file.

The converters themselves belong to the method plugins (hook ``lsvr_weight_converters``); this module only
reads the source file, unwraps the usual containers and writes the result in the format ``model.init_from``
reads (``{"model": state_dict, "meta": {...}}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lsvr_core.engine.checkpoint import load, save_atomic
from lsvr_core.errors import ConversionError

_CONTAINER_KEYS = ("state_dict", "model", "module", "net")


def unwrap_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a loaded checkpoint.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model`` / ``module`` / ``net`` (mmdet,
    torchvision and plain ``torch.save(model.state_dict())`` files). A ``module.`` prefix left by
    DataParallel is stripped. Non-tensor entries (optimizer, meta) are ignored.

    Raises:
        ConversionError: no dict of tensors is found (names the file).
    """
    for _ in range(3):
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ConversionError(f"{path}: no tensors found (keys: {', '.join(map(str, list(obj)[:10]))})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def convert_weights(manager: Any, fmt: str, src: str | Path, dst: str | Path) -> dict[str, torch.Tensor]:
    """Convert ``src`` with the converter registered as ``fmt`` and write ``dst``.

    Returns:
        The converted state dict (lsvr parameter names).
    Raises:
        PluginError: unknown format (lists the valid ones).
        ConversionError: the converter could not map every key (lists them).
        LsvrError: ``src`` is missing or unreadable.
    """
    spec = manager.converter(fmt)
    state = unwrap_state_dict(load(src), src)
    converted = spec.load()(state)
    meta = {"converted_from": str(Path(src).name), "format": fmt, "converter": spec.distribution}
    save_atomic({"model": converted, "meta": meta}, Path(dst))
    return converted
