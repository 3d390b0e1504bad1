"""The JSON written beside an exported model: what a caller needs to feed it and read its outputs."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

SIDECAR_SUFFIX = ".lsvr.json"


def sidecar_path(model_path: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.lsvr.json``."""
    return model_path.with_name(model_path.name + SIDECAR_SUFFIX)


def write_sidecar(model_path: Path, *, cfg: Any, config_yaml: str, image_size: tuple[int, int] | None,
                  output_names: list[str], postprocess: bool, class_names: list[str] | None, fmt: str,
                  opset: int | None, category_ids: list[int] | None = None) -> Path:
    """Write the sidecar of ``model_path``.

    Keys: ``format``, ``input`` (name, layout, dtype, channel order, value range, fixed size or null when
    dynamic, size divisor, padding rule; with ``postprocess`` also the ``image_size`` and ``scale_factor``
    inputs), ``normalization`` (mean/std applied inside the graph), ``resize`` (the val pipeline), ``outputs``
    (``names``, ``postprocess``: whether the graph decodes itself, else the head's ``decode_outputs`` does),
    ``task``, ``class_names``, ``category_ids``, ``versions``, ``config`` (the resolved YAML, used to rebuild
    the decoder).
    """
    import torch

    from lsvr_core import __version__

    val = cfg.data.val
    pipeline = getattr(val, "pipeline", None)
    meta = {
        "format": fmt,
        "opset": opset,
        "task": cfg.task,
        "input": {"name": "images", "layout": "NCHW", "dtype": "float32", "channels": "RGB",
                  "value_range": [0, 255], "size": list(image_size) if image_size else None,
                  "size_divisor": cfg.data.size_divisor,
                  "padding": "right/bottom with the pixel mean (normalises to 0)"},
        "extra_inputs": ({"image_size": "(2,) int64 [h, w] of the resized image inside the padding",
                          "scale_factor": "(2,) float32 [sx, sy] = resized / original size"} if postprocess else {}),
        "normalization": {"mean": list(cfg.model.pixel_mean), "std": list(cfg.model.pixel_std),
                          "applied": "inside the graph: (images - mean) / std"},
        "resize": pipeline.model_dump(mode="json") if pipeline is not None else None,
        "outputs": {"names": output_names, "count": len(output_names), "postprocess": postprocess,
                    "decoding": ("in the graph: boxes/scores in the resized image's pixels (divide by scale_factor "
                                 "for the original image)" if postprocess else
                                 "head.decode_outputs (lsvr_core.export.runtime)")},
        "class_names": class_names,
        "category_ids": category_ids,
        "versions": {"lsvr_core": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "config": config_yaml,
    }
    path = sidecar_path(model_path)
    path.write_text(json.dumps(meta, indent=1) + "\n")
    return path


def read_sidecar(model_path: Path) -> dict[str, Any]:
    """The sidecar of ``model_path``.

    Raises:
        ConfigError: it is missing or not valid JSON.
    """
    from lsvr_core.errors import ConfigError

    path = sidecar_path(model_path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: an exported model needs the sidecar lsvr export wrote beside it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
