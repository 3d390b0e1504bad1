"""Run an exported model like the eager detector: ``runner(batch) -> list[Predictions]`` (original frame).

:class:`ExportedDetector` pads each image of a :class:`~lsvr_core.structures.Batch` with the pixel mean to the
exported input size (or to the batch's padded size for ``--dynamic`` exports), runs the graph with
onnxruntime (CPU provider) or the ``torch.export`` program, and decodes the raw outputs with the head's
``decode_outputs`` — the same decoding and NMS code as eager inference. The head is rebuilt from the config in
the sidecar (its decoding uses no learned weights). A ``--postprocess`` graph decodes itself: it gets one image
with its ``image_size`` and ``scale_factor`` and returns named detections (a head's ``finish_postprocessed``, if
any, then completes them, e.g. pastes two-stage RoI masks). Because it is called like the eager model,
``lsvr predict --engine`` and evaluation reuse the eager paths unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.errors import ConfigError
from lsvr_core.export.module import PREDICTION_FIELDS, pad_with_mean
from lsvr_core.export.sidecar import read_sidecar
from lsvr_core.structures import Batch, Predictions

ENGINES = ("onnxruntime", "pt2")
log = logging.getLogger("lsvr.export")


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
        self.postprocess = bool(self.meta["outputs"].get("postprocess", False))
        self._warned_fit = False
        declared = manager.target_fields()
        names = self.meta["outputs"].get("names", []) if self.postprocess else []
        self.extra_specs = {name: declared.get(name) for name in names if name not in PREDICTION_FIELDS}
        unknown = [name for name, spec in self.extra_specs.items() if spec is None]
        if unknown:
            raise ConfigError(f"{self.path}: outputs {unknown} are not declared target fields here; install the "
                              "plugin that declares them")
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

    def run_postprocessed(self, image: Tensor, image_size: tuple[int, int],
                          scale: tuple[float, float]) -> dict[str, Tensor]:
        """A ``--postprocess`` graph's named detections for one mean-padded image (1, 3, H, W)."""
        size_t = torch.tensor(image_size, dtype=torch.int64)
        scale_t = torch.tensor(scale, dtype=torch.float32)
        if self.engine == "onnxruntime":
            outs = self.session.run(None, {"images": image.contiguous().numpy(), "image_size": size_t.numpy(),
                                           "scale_factor": scale_t.numpy()})
            values = [torch.from_numpy(o) for o in outs]
        else:
            with torch.no_grad():
                values = list(self._program[0](image, size_t, scale_t))
        return dict(zip(self.meta["outputs"]["names"], values, strict=True))

    def _predictions(self, out: dict[str, Tensor], image_id: int) -> Predictions:
        fields = {k: v for k, v in out.items() if k in PREDICTION_FIELDS}
        pred = Predictions(fields.pop("boxes").float(), fields.pop("scores").float(), fields.pop("labels").long(),
                           image_id=image_id, **fields)
        for name, value in out.items():
            if name not in PREDICTION_FIELDS:
                spec = self.extra_specs[name]
                assert spec is not None  # checked in __init__
                pred.extras.add(spec, value)
        return pred

    def fit_to_input(self, batch: Batch) -> Batch:
        """Shrink images larger than a fixed export input to fit it (keeping the aspect ratio) and record the
        extra scale in their targets, so that predictions still map back to the original image.

        The eager model takes any size; a fixed-size export takes at most its input size (e.g. the 128 px
        demo model given a 640 px photo). Export with ``--image-size`` to keep the config's resolution instead.
        """
        if self.size is None or all(h <= self.size[0] and w <= self.size[1] for h, w in batch.image_sizes):
            return batch
        from torchvision.transforms.v2 import functional as TF

        images, targets = [], []
        for i, ((h, w), t) in enumerate(zip(batch.image_sizes, batch.targets, strict=True)):
            image = batch.images[i, :, :h, :w]
            f = min(self.size[0] / h, self.size[1] / w, 1.0)
            if f < 1.0:
                new = (max(1, int(h * f)), max(1, int(w * f)))
                image = TF.resize(image, list(new), antialias=True)
                fy, fx = new[0] / h, new[1] / w
                t = dataclasses.replace(t, image_size=new, scale=(t.scale[0] * fx, t.scale[1] * fy))
                if not self._warned_fit:
                    log.warning("images larger than the exported input %dx%d are shrunk to fit it (first: %dx%d -> "
                                "%dx%d); export with --image-size H W to keep their resolution",
                                self.size[0], self.size[1], h, w, *new)
                    self._warned_fit = True
            images.append(image)
            targets.append(t)
        return Batch(torch.stack([pad_with_mean(im, self.size, self.decoder.pixel_mean.view(3)) for im in images]),
                     targets)

    def forward(self, batch: Batch) -> list[Predictions]:
        batch = self.fit_to_input(batch)
        if self.postprocess:
            mean = self.decoder.pixel_mean.view(3)
            preds = []
            for i, ((h, w), t) in enumerate(zip(batch.image_sizes, batch.targets, strict=True)):
                image = pad_with_mean(batch.images[i, :, :h, :w].cpu(), self.size or (h, w), mean)[None]
                out = self.run_postprocessed(image, (int(h), int(w)), (float(t.scale[0]), float(t.scale[1])))
                pred = self._predictions(out, t.image_id)
                finish = getattr(self.decoder.head, "finish_postprocessed", None)
                if callable(finish):  # e.g. two-stage heads paste their RoI masks like their predict()
                    pred = finish(pred, t)
                preds.append(pred.to_original(t))
            return preds
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
