"""``lsvr export`` and ``lsvr predict --engine``: the entry points of :mod:`lsvr_core.export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from lsvr_core.errors import ConfigError

if TYPE_CHECKING:
    from lsvr_core.config.sections import RunConfigBase
    from lsvr_core.plugins import PluginManager


FORMATS = ("onnx", "pt2")


def default_image_size(cfg: RunConfigBase) -> tuple[int, int]:
    """The fixed input size of an export: the val pipeline's output size rounded up to the size divisor.

    Square pipelines give ``square_size``; keep-ratio pipelines the longer/shorter ``scale`` bound in both
    orientations' maximum (H = W = max scale), so any image fits.
    """
    val = cfg.data.val if cfg.data.val is not None else cfg.data.train
    div = cfg.data.size_divisor
    pipeline = getattr(val, "pipeline", None)
    if pipeline is not None and getattr(pipeline, "resize", "") == "square":
        side = pipeline.square_size
    elif pipeline is not None and getattr(pipeline, "resize", "") == "keep_ratio":
        side = max(pipeline.scale)
    else:
        side = getattr(val, "image_size", None)
        if side is None:
            raise ConfigError("cannot tell the input size of this dataset's images: pass --image-size H W")
    side = -(-int(side) // div) * div
    return side, side


def export(cfg: RunConfigBase, manager: PluginManager, *, checkpoint: str, fmt: str, output: str | None,
           image_size: tuple[int, int] | None, dynamic: bool, postprocess: bool, opset: int | None) -> int:
    """Export the detector of ``cfg`` with the weights of ``checkpoint``; prints the written paths.

    Raises:
        ConfigError: unknown format, ``postprocess`` with ``dynamic``, a head that cannot be exported (or,
            with ``postprocess``, has no ``export_postprocess``), an input size not divisible by
            ``data.size_divisor``.
        LsvrError: tracing failed (names the blocking op).
    """
    from lsvr_core.config import config_to_yaml
    from lsvr_core.engine.api import _load_model
    from lsvr_core.export.module import Postprocessed, RawOutputs
    from lsvr_core.export.sidecar import write_sidecar
    from lsvr_core.export.writers import DEFAULT_OPSET, dynamic_spec, export_onnx, export_pt2

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: valid formats are {', '.join(FORMATS)}")
    if postprocess and dynamic:
        raise ConfigError("--postprocess with --dynamic: in-graph decoding takes a fixed number of candidates per "
                          "FPN level, which needs a fixed input size; pass --image-size H W (or drop --dynamic)")
    div = cfg.data.size_divisor
    size = image_size or default_image_size(cfg)
    if size[0] % div or size[1] % div:
        raise ConfigError(f"--image-size {size[0]} {size[1]}: both must be multiples of data.size_divisor={div}")
    model = _load_model(cfg, manager, checkpoint, torch.device("cpu")).eval()
    out = Path(output) if output else Path(checkpoint).with_suffix(".onnx" if fmt == "onnx" else ".pt2")
    spec = dynamic_spec(dynamic, div)
    example = torch.full((1, 3, *size), 114.0)
    inputs: tuple[torch.Tensor, ...]
    if postprocess:
        post = Postprocessed(model).eval()
        module: nn.Module = post
        inputs = (example, torch.tensor(size, dtype=torch.int64), torch.ones(2))
        output_names = post.probe(*inputs)
    else:
        module = RawOutputs(model).eval()
        inputs = (example,)
        with torch.no_grad():
            output_names = [f"output_{i}" for i in range(len(module(example)))]
    if fmt == "pt2":
        export_pt2(module, inputs, out, spec)
    else:
        export_onnx(module, inputs, out, spec, output_names, opset or DEFAULT_OPSET)
    val = cfg.data.val if cfg.data.val is not None else cfg.data.train
    dataset = manager.build("dataset", val, root=cfg.data.root, train=False, task=cfg.task)
    names = getattr(dataset, "classes", None)
    cat_ids = getattr(dataset, "label_to_cat_id", None)
    side = write_sidecar(out, cfg=cfg, config_yaml=config_to_yaml(cfg), image_size=None if dynamic else size,
                         output_names=output_names, postprocess=postprocess,
                         class_names=list(names) if names else None, fmt=fmt,
                         opset=(opset or DEFAULT_OPSET) if fmt == "onnx" else None,
                         category_ids=[int(c) for c in cat_ids] if cat_ids is not None else None)
    what = f"outputs {', '.join(output_names)}" if postprocess else f"{len(output_names)} raw outputs"
    print(f"wrote {out} ({fmt}, input 1x3x{'HxW dynamic' if dynamic else f'{size[0]}x{size[1]}'}, {what}) and {side}")
    print(f"run it: lsvr predict --engine {'onnxruntime' if fmt == 'onnx' else 'pt2'} {out} IMAGES...",
          file=sys.stderr)
    return 0


def predict_exported(manager: PluginManager, *, model_path: str, engine: str, images: list[str], out_dir: str | None,
                     score_thresh: float) -> int:
    """``lsvr predict --engine onnxruntime|pt2 MODEL IMAGES``: the eager predict path with the exported model."""
    from lsvr_core.engine import api
    from lsvr_core.export.runtime import ExportedDetector

    runner = ExportedDetector(model_path, engine, manager)
    out = out_dir or str(Path(model_path).with_suffix("")) + "_predict"
    return api.predict(runner.cfg, manager, checkpoint=None, images=images, out_dir=out,
                       score_thresh=score_thresh, model=runner)
