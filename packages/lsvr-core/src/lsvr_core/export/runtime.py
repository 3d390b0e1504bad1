"""Run an exported model like the eager detector: ``runner(batch) -> list[Predictions]`` (original frame).

:class:`ExportedDetector` pads each image of a :class:`~lsvr_core.structures.Batch` with the pixel mean to the
exported input size (or to the batch's padded size for ``--dynamic`` exports), runs the graph with
onnxruntime (CPU provider) or the ``torch.export`` program, and decodes the raw outputs with the head's
``decode_outputs`` — the same decoding and NMS code as eager inference. The head is rebuilt from the config in
the sidecar (its decoding uses no learned weights). Because it is called like the eager model, ``lsvr predict
--engine`` and evaluation reuse the eager paths unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.errors import ConfigError
from lsvr_core.export.module import pad_with_mean
from lsvr_core.export.sidecar import read_sidecar
from lsvr_core.structures import Batch, Predictions

ENGINES = ("onnxruntime", "pt2")


def config_from_sidecar(meta: dict[str, Any], manager: Any) -> Any:
    """The validated run config stored in a sidecar (``config``: resolved YAML)."""
    import yaml

    from lsvr_core.config import build_config_model

    return build_config_model(manager).model_validate(yaml.safe_load(meta["config"]))


class ExportedDetector(nn.Module):
    """An exported model behind the eager detector's inference interface.

    Args:
        path: the ``.onnx`` or ``.pt2`` file (its ``.lsvr.json`` sidecar beside it).
        engine: ``onnxruntime`` or ``pt2``.
        manager: the plugin manager (rebuilds the head for decoding; loads the plugins whose custom ops a pt2
            program calls).
    Raises:
        ConfigError: unknown engine, engine/file mismatch, onnxruntime missing, or a missing sidecar.
    """

    def __init__(self, path: str | Path, engine: str, manager: Any) -> None:
        super().__init__()
        from lsvr_core.engine.build import build_model

        if engine not in ENGINES:
            raise ConfigError(f"--engine {engine!r}: valid engines are torch, {', '.join(ENGINES)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"exported model not found: {self.path}")
        self.meta = read_sidecar(self.path)
        if (engine == "onnxruntime") != (self.meta["format"] == "onnx"):
            raise ConfigError(f"{self.path} is a {self.meta['format']} export; use --engine "
                              f"{'onnxruntime' if self.meta['format'] == 'onnx' else 'pt2'}")
        self.cfg = config_from_sidecar(self.meta, manager)
        self.engine = engine
        self.size = tuple(self.meta["input"]["size"]) if self.meta["input"]["size"] else None
        self.class_names = self.meta.get("class_names")
        self.category_ids = self.meta.get("category_ids")
        self.decoder = build_model(self.cfg, manager).eval()
        if engine == "onnxruntime":
            try:
                import onnxruntime as ort
            except ImportError:
                raise ConfigError("--engine onnxruntime needs onnxruntime: pip install lsvr-core[export]") from None
            options = ort.SessionOptions()
            options.intra_op_num_threads = max(torch.get_num_threads(), 1)
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        else:
            # kept out of the module tree: an exported program refuses train()/eval() switches
            self._program = (torch.export.load(str(self.path)).module(),)

    def run_graph(self, images: Tensor) -> tuple[Tensor, ...]:
        """The graph's raw outputs for ``images`` (B, 3, H, W) float32 0-255, mean-padded."""
        if self.engine == "onnxruntime":
            outs = self.session.run(None, {"images": images.contiguous().numpy()})
            return tuple(torch.from_numpy(o) for o in outs)
        with torch.no_grad():
            return tuple(self._program[0](images))

    def forward(self, batch: Batch) -> list[Predictions]:
        size = self.size or tuple(batch.images.shape[-2:])
        mean = self.decoder.pixel_mean.view(3)
        images = torch.stack([pad_with_mean(batch.images[i, :, :h, :w].cpu(), size, mean)
                              for i, (h, w) in enumerate(batch.image_sizes)])
        if self.size is not None and images.shape[0] > 1:  # fixed-shape exports take one image at a time
            outputs = [self.run_graph(images[i : i + 1]) for i in range(images.shape[0])]
            raw = tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))
        else:
            raw = self.run_graph(images)
        padded = Batch(images, batch.targets)
        predictions = self.decoder.head.decode_outputs(raw, padded)
        return [p.to_original(t) for p, t in zip(predictions, batch.targets, strict=True)]
