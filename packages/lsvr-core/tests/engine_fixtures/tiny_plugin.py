"""A tiny detector, dataset and evaluator for the engine tests (loaded with ``--plugin`` / a plugin file).

Everything is small enough to train a few iterations in well under a second on one CPU thread:

* dataset ``tiny_shapes``: ``num_images`` random images (the indices in ``corrupt`` fail like unreadable files),
  alternately landscape (32x48) and portrait (48x32),
  each with one filled rectangle whose class is its colour; with ``train=True`` a random horizontal flip
  drawn from the global torch RNG (so the engine's per-sample seeding is exercised).
* backbone ``tiny_conv``: two strided convs, no normalisation (so 1 and 2 processes compute the same).
* head ``tiny_head``: pools the features, predicts one class and one box per image; losses ``loss_cls``
  (cross-entropy) and ``loss_box`` (L1 on image-normalised coordinates); ``nan_after`` makes ``loss_box``
  NaN from that training forward on; ``dropout`` draws from the torch RNG.
* evaluator ``tiny_iou``: ``bbox/AP`` = fraction of processed images whose top box has IoU >= 0.5 with the
  ground truth and the right class; ``bbox/mIoU``.

Hooks: ``lsvr_log_metrics`` appends ``{"step", "loss", ...}`` to ``work_dir/losses.jsonl`` on rank 0 and
sends SIGINT to its own process at the step named by ``TINY_SIGNAL_AT``; ``lsvr_run_end`` writes
``work_dir/status.txt``; ``TINY_SLEEP`` (seconds) slows each training step.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Literal

import torch
from torch import nn
from torchvision.ops import box_iou

from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import DataError
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import BackboneConfig, ComponentSpec, DatasetConfig, EvaluatorConfig, HeadConfig
from lsvr_core.structures import Predictions, Targets

_MOD = __name__


class TinyShapesConfig(DatasetConfig):
    type: Literal["tiny_shapes"] = "tiny_shapes"
    num_images: int = 16
    num_classes: int = 3
    corrupt: list[int] = []  # items that fail to load like an unreadable image file


class TinyConvConfig(BackboneConfig):
    type: Literal["tiny_conv"] = "tiny_conv"
    channels: int = 8


class TinyHeadConfig(HeadConfig):
    type: Literal["tiny_head"] = "tiny_head"
    nan_after: int | None = None
    dropout: float = 0.0


class TinyIoUConfig(EvaluatorConfig):
    type: Literal["tiny_iou"] = "tiny_iou"


COLORS = torch.tensor([[220, 40, 40], [40, 220, 40], [40, 40, 220]], dtype=torch.uint8)


class TinyShapes:
    def __init__(self, cfg: TinyShapesConfig, *, root, train: bool, task: str) -> None:
        self.n, self.train = cfg.num_images, train
        self.corrupt = set(cfg.corrupt)
        self.classes = [f"shape{i}" for i in range(cfg.num_classes)]

    def __len__(self) -> int:
        return self.n

    def aspect_ratios(self) -> list[float]:
        return [48 / 32 if i % 2 == 0 else 32 / 48 for i in range(self.n)]

    def __getitem__(self, i: int):
        if i in self.corrupt:
            raise DataError(f"image shapes/{i:03d}.png (image id {i + 1}): cannot decode (truncated file)")
        g = torch.Generator().manual_seed(1000 + i)
        h, w = (32, 48) if i % 2 == 0 else (48, 32)
        img = torch.randint(0, 60, (3, h, w), generator=g, dtype=torch.uint8)
        label = int(torch.randint(0, len(self.classes), (1,), generator=g))
        x0, y0 = int(torch.randint(0, w // 2, (1,), generator=g)), int(torch.randint(0, h // 2, (1,), generator=g))
        x1, y1 = x0 + w // 3, y0 + h // 3
        img[:, y0:y1, x0:x1] = COLORS[label].view(3, 1, 1)
        box = torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32)
        flipped = bool(self.train and torch.rand(()) < 0.5)
        if flipped:
            img = img.flip(-1)
            box = torch.stack([w - box[:, 2], box[:, 1], w - box[:, 0], box[:, 3]], 1)
        t = Targets(boxes=box, labels=torch.tensor([label]), image_id=i + 1, orig_size=(h, w), image_size=(h, w),
                    flipped=flipped)
        return img, t


class TinyConv(nn.Module):
    def __init__(self, cfg: TinyConvConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.body = nn.Sequential(nn.Conv2d(3, c, 3, 4, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 2, 1), nn.ReLU())
        self.c = c

    def output_shape(self):
        return {"c3": ShapeSpec(self.c, 8)}

    def forward(self, images):
        return {"c3": self.body(images)}


class TinyHead(nn.Module):
    def __init__(self, cfg: TinyHeadConfig, input_shape, num_classes: int, task: str) -> None:
        super().__init__()
        c = input_shape["c3"].channels
        self.drop = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(c, num_classes + 4)
        self.num_classes = num_classes
        self.nan_after = cfg.nan_after
        self.calls = 0

    def _outputs(self, features, batch):
        x = self.drop(features["c3"].mean((2, 3)))
        out = self.fc(x)
        sizes = torch.tensor([[w, h, w, h] for h, w in batch.image_sizes], dtype=torch.float32, device=x.device)
        return out[:, : self.num_classes], out[:, self.num_classes :].sigmoid(), sizes

    def forward(self, features, batch):
        logits, boxes, sizes = self._outputs(features, batch)
        self.calls += 1
        labels = torch.stack([t.labels[0] for t in batch.targets])
        gt = torch.stack([t.boxes[0] for t in batch.targets]) / sizes
        loss_box = (boxes - gt).abs().sum(1).mean()
        if self.nan_after is not None and self.calls > self.nan_after:
            loss_box = loss_box * float("nan")
        if os.environ.get("TINY_SLEEP"):
            time.sleep(float(os.environ["TINY_SLEEP"]))
        return {"loss_cls": nn.functional.cross_entropy(logits, labels), "loss_box": loss_box}

    def predict(self, features, batch):
        logits, boxes, sizes = self._outputs(features, batch)
        scores, labels = logits.softmax(-1).max(-1)
        xyxy = boxes * sizes
        xyxy = torch.stack([torch.minimum(xyxy[:, 0], xyxy[:, 2]), torch.minimum(xyxy[:, 1], xyxy[:, 3]),
                            torch.maximum(xyxy[:, 0], xyxy[:, 2]), torch.maximum(xyxy[:, 1], xyxy[:, 3])], 1)
        return [Predictions(boxes=xyxy[i : i + 1], scores=scores[i : i + 1], labels=labels[i : i + 1],
                            image_id=t.image_id) for i, t in enumerate(batch.targets)]


class TinyIoU:
    def __init__(self, cfg: TinyIoUConfig, *, dataset, task: str) -> None:
        self.gt = {}
        for i in range(len(dataset)):
            try:
                _, t = dataset[i]
            except Exception:  # a corrupt item: met (and reported) again when the engine loads it
                continue
            self.gt[t.image_id] = t
        self.reset()

    def reset(self) -> None:
        self.hits, self.ious = {}, {}

    def process(self, predictions) -> None:
        for p in predictions:
            assert p.frame == "original"
            t = self.gt[p.image_id]
            iou = float(box_iou(p.boxes[:1], t.boxes[:1])[0, 0]) if len(p) else 0.0
            self.ious[p.image_id] = iou
            self.hits[p.image_id] = float(iou >= 0.5 and len(p) and int(p.labels[0]) == int(t.labels[0]))

    def evaluate(self) -> dict[str, float]:
        n = max(len(self.hits), 1)
        return {"bbox/AP": sum(self.hits.values()) / n, "bbox/mIoU": sum(self.ious.values()) / n,
                "bbox/num_images": float(len(self.hits))}


def build_dataset(cfg, *, root, train, task, registry=None):
    return TinyShapes(cfg, root=root, train=train, task=task)


def build_backbone(cfg, *, registry=None):
    return TinyConv(cfg)


def build_head(cfg, input_shape, num_classes, task, *, registry=None):
    return TinyHead(cfg, input_shape, num_classes, task)


def build_evaluator(cfg, *, dataset, task, registry=None):
    return TinyIoU(cfg, dataset=dataset, task=task)


@hookimpl
def lsvr_datasets():
    return [ComponentSpec("dataset", "tiny_shapes", TinyShapesConfig, f"{_MOD}:build_dataset", "test shapes")]


@hookimpl
def lsvr_backbones():
    return [ComponentSpec("backbone", "tiny_conv", TinyConvConfig, f"{_MOD}:build_backbone", "test backbone")]


@hookimpl
def lsvr_heads():
    return [ComponentSpec("head", "tiny_head", TinyHeadConfig, f"{_MOD}:build_head", "test head", ("bbox",))]


@hookimpl
def lsvr_evaluators():
    return [ComponentSpec("evaluator", "tiny_iou", TinyIoUConfig, f"{_MOD}:build_evaluator", "test evaluator")]


@hookimpl
def lsvr_log_metrics(run, step, metrics):
    if run.is_main_process:
        with open(run.work_dir / "losses.jsonl", "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")
    if os.environ.get("TINY_SIGNAL_AT") == str(step):
        os.kill(os.getpid(), signal.SIGINT)


@hookimpl
def lsvr_run_end(run, status):
    if run.is_main_process:
        (run.work_dir / "status.txt").write_text(status)
