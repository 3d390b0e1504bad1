"""Shared helpers of the engine tests (loaded by file path: the tests use --import-mode=importlib)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

PLUGIN = Path(__file__).resolve().parent / "tiny_plugin.py"

BASE: dict[str, Any] = {
    "task": "bbox",
    "model": {"num_classes": 3, "backbone": {"type": "tiny_conv"}, "head": {"type": "tiny_head"},
              "pixel_mean": [30.0, 30.0, 30.0], "pixel_std": [60.0, 60.0, 60.0]},
    "data": {"root": ".", "train": {"type": "tiny_shapes", "num_images": 16},
             "val": {"type": "tiny_shapes", "num_images": 6}, "batch_size": 4, "val_batch_size": 2,
             "num_workers": 0},
    "optim": {"type": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4},
    "schedule": {"epochs": 2, "policy": "cosine", "milestones": [], "warmup_iters": 2},
    "runtime": {"device": "cpu", "threads": 1, "seed": 3},
    "eval": {"evaluator": {"type": "tiny_iou"}, "num_draw": 2},
    "logging": {"interval": 1},
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_dict(work_dir: Path, **sections: Any) -> dict[str, Any]:
    """The base tiny config with ``runtime.work_dir`` set and ``sections`` merged over it."""
    data = merge(BASE, sections)
    data["runtime"]["work_dir"] = str(work_dir)
    return data


def manager():
    from lsvr_core.plugins import get_plugin_manager

    return get_plugin_manager([PLUGIN], reload=True)


def config(mgr, work_dir: Path, **sections: Any):
    from lsvr_core.config import build_config_model

    return build_config_model(mgr).model_validate(config_dict(work_dir, **sections))


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def losses(work_dir: Path) -> list[dict[str, float]]:
    path = Path(work_dir) / "losses.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
