"""The transform pipeline: keep-ratio / square resize, horizontal flip, SSD augmentation.

All randomness comes from the ``torch.Generator`` passed in, so a dataset can make every item reproducible
(see :meth:`lsvr_data.base.DetectionDataset.set_epoch`). No normalisation and no padding happen here.

Sources: LSNet spec §7.3 (keep-ratio resize with mmdet rounding, multi-scale short side, flip);
MutualGuide spec §5 (SSD crop / photometric distortion / expand, square resize with a random interpolation,
dropping boxes with normalised min side <= 0.01 and falling back to the un-augmented image) and §7 (the v2
pre-resize, combined crop/expand, flip).
"""

from __future__ import annotations

import math

import torch
from torch import Generator, Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lsvr_data.config import PipelineConfig
from lsvr_data.sample import Sample

SSD_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -math.inf)  # None: no crop
SSD_INTERPOLATIONS = (
    (InterpolationMode.BILINEAR, False), (InterpolationMode.BICUBIC, False), (InterpolationMode.BILINEAR, True),
    (InterpolationMode.NEAREST, False), (InterpolationMode.BICUBIC, True),
)  # stand-ins for OpenCV's linear, cubic, area, nearest, lanczos


def _uniform(gen: Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _randint(gen: Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def keep_ratio_size(height: int, width: int, long_max: int, short_target: int) -> tuple[int, int]:
    """mmcv ``rescale_size``: factor = min(long_max / long edge, short_target / short edge), sides rounded.

    Returns:
        (new_h, new_w) pixels, ``int(side * factor + 0.5)``.
    """
    factor = min(long_max / max(height, width), short_target / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M) (no +1)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


class Pipeline:
    """Callable ``pipeline(sample, generator) -> sample`` built from a :class:`PipelineConfig`.

    Args:
        cfg: the pipeline config.
        train: True applies the random steps (multi-scale, flip, SSD augmentation); False only resizes.
    """

    def __init__(self, cfg: PipelineConfig, train: bool) -> None:
        self.cfg = cfg
        self.train = train

    def __call__(self, sample: Sample, gen: Generator) -> Sample:
        cfg = self.cfg
        if not self.train:
            self._resize(sample, gen, random=False)
            return sample
        if cfg.mg_v2_aug:
            return self._mg_v2(sample, gen)
        original = sample.clone() if cfg.ssd_aug else None
        if cfg.ssd_aug:
            self._ssd_crop(sample, gen)
            self._photometric(sample, gen)
            if float(torch.rand((), generator=gen)) < cfg.expand_prob:
                self._expand(sample, gen)
        if cfg.flip_prob > 0 and float(torch.rand((), generator=gen)) < cfg.flip_prob:
            sample.hflip()
        self._resize(sample, gen, random=True)
        if cfg.ssd_aug:
            keep = self._large_enough(sample)
            if not bool(keep.any()) and original is not None:
                sample = original
                self._resize(sample, gen, random=False)
            else:
                sample.select(keep)
        return sample

    # --- resize -----------------------------------------------------------------------------------------

    def _resize(self, sample: Sample, gen: Generator, random: bool) -> None:
        cfg = self.cfg
        h, w = sample.size
        interp, antialias = InterpolationMode.BILINEAR, True
        if cfg.resize == "none":
            return
        if cfg.resize == "square":
            new_h = new_w = cfg.square_size
            if random and cfg.ssd_aug:
                interp, antialias = SSD_INTERPOLATIONS[_randint(gen, 0, len(SSD_INTERPOLATIONS) - 1)]
        else:
            long_max, short = cfg.scale
            if random and cfg.short_side_range is not None:
                short = _randint(gen, *cfg.short_side_range)
            new_h, new_w = keep_ratio_size(h, w, long_max, short)
        if (new_h, new_w) != (h, w):
            sample.resize(new_h, new_w, interpolation=interp, antialias=antialias)

    # --- SSD augmentation (MutualGuide spec §5) ---------------------------------------------------------

    def _ssd_crop(self, sample: Sample, gen: Generator, max_rounds: int = 10, tries: int = 50) -> None:
        """IoU-constrained random crop: keep instances whose box centre is inside, clip them to the crop."""
        h, w = sample.size
        boxes = sample.boxes
        if len(boxes) == 0:
            return
        for _ in range(max_rounds):
            min_iou = SSD_MIN_IOUS[_randint(gen, 0, len(SSD_MIN_IOUS) - 1)]
            if min_iou is None:
                return
            for _ in range(tries):
                scale = _uniform(gen, 0.3, 1.0)
                lo, hi = max(0.5, scale * scale), min(2.0, 1.0 / (scale * scale))
                ratio = math.sqrt(_uniform(gen, lo, hi))
                cw, ch = int(scale * ratio * w), int(scale / ratio * h)
                if cw < 1 or ch < 1 or cw > w or ch > h:
                    continue
                x0 = _randint(gen, 0, w - cw - 1) if w > cw else 0
                y0 = _randint(gen, 0, h - ch - 1) if h > ch else 0
                roi = torch.tensor([[x0, y0, x0 + cw, y0 + ch]], dtype=torch.float32)
                iou = box_iou(boxes, roi)[:, 0]
                if float(iou.min()) < min_iou:
                    continue
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                keep = (centres > roi[0, :2]).all(1) & (centres < roi[0, 2:]).all(1)
                if not bool(keep.any()):
                    continue
                sample.crop(x0, y0, x0 + cw, y0 + ch, keep)
                return

    def _photometric(self, sample: Sample, gen: Generator) -> None:
        """In order, each with p=0.5: brightness + U(-32, 32), contrast x U(0.5, 1.5), hue + U(-0.1, 0.1) turn
        (OpenCV's +-18 of 180), saturation x U(0.5, 1.5); values clamped to [0, 255] after each step."""
        img = sample.image.float()
        if float(torch.rand((), generator=gen)) < 0.5:
            img = (img + _uniform(gen, -32, 32)).clamp(0, 255)
        if float(torch.rand((), generator=gen)) < 0.5:
            img = (img * _uniform(gen, 0.5, 1.5)).clamp(0, 255)
        if float(torch.rand((), generator=gen)) < 0.5:
            img = TF.adjust_hue(img / 255, _uniform(gen, -0.1, 0.1)) * 255
        if float(torch.rand((), generator=gen)) < 0.5:
            img = TF.adjust_saturation(img / 255, _uniform(gen, 0.5, 1.5)) * 255
        sample.image = img.clamp(0, 255).round().to(torch.uint8)

    def _expand(self, sample: Sample, gen: Generator) -> None:
        """Zoom out: canvas side ratio U(1, max) (aspect in [0.5, 2]) filled with ``fill``, image placed at random."""
        h, w = sample.size
        scale = _uniform(gen, 1.0, self.cfg.expand_max_ratio)
        lo, hi = max(0.5, 1.0 / (scale * scale)), min(2.0, scale * scale)
        ratio = math.sqrt(_uniform(gen, lo, hi))
        ws, hs = max(scale * ratio, 1.0), max(scale / ratio, 1.0)
        new_w, new_h = int(ws * w), int(hs * h)
        left = _randint(gen, 0, new_w - w)
        top = _randint(gen, 0, new_h - h)
        sample.expand(new_h, new_w, left, top, self.cfg.fill)

    # --- MutualGuide v2 augmentation (spec §7 "Recipe") ------------------------------------------------

    def _mg_v2(self, sample: Sample, gen: Generator) -> Sample:
        """Pre-resize to the square size, photometric distortion, crop/expand with p 0.75, flip, resize
        (``HEAD:data/coco.py:119-138``, ``HEAD:data/data_augment.py``)."""
        self._resize(sample, gen, random=False)
        self._photometric(sample, gen)
        if float(torch.rand((), generator=gen)) < 0.75:
            self._crop_expand_v2(sample, gen)
        if self.cfg.flip_prob > 0 and float(torch.rand((), generator=gen)) < self.cfg.flip_prob:
            sample.hflip()
        self._resize(sample, gen, random=False)
        return sample

    def _crop_expand_v2(self, sample: Sample, gen: Generator, tries: int = 20) -> None:
        """One window of the image, as fractions of its sides: height U(0.25, 1.75), width = height times or
        divided by U(0.5, 1), centre U(0.25, 0.75) in both axes; the part inside the image is cropped and placed
        where it lies in the window, on a canvas of the window's size filled with the image's mean value (one
        grey level). A window is rejected if an object's box has an intersection-over-its-own-area in
        (0.25, 0.75) with it, or if no box centre lies inside; boxes whose centre is inside are kept and clipped.
        Up to 20 windows; if all are rejected the sample is unchanged (``HEAD:data/data_augment.py:11-95``)."""
        h, w = sample.size
        boxes = sample.boxes
        if len(boxes) == 0:
            return
        nb = boxes / torch.tensor([w, h, w, h], dtype=boxes.dtype)
        for _ in range(tries):
            new_h = _uniform(gen, 0.25, 1.75)
            ratio = _uniform(gen, 0.5, 1.0)
            new_w = new_h * ratio if _randint(gen, 0, 1) else new_h / ratio
            cy, cx = _uniform(gen, 0.25, 0.75), _uniform(gen, 0.25, 0.75)
            top, left = cy - new_h / 2, cx - new_w / 2
            roi = torch.tensor([max(0.0, left), max(0.0, top), min(1.0, left + new_w), min(1.0, top + new_h)])
            inter = (torch.minimum(nb[:, 2:], roi[2:]) - torch.maximum(nb[:, :2], roi[:2])).clamp(min=0).prod(1)
            iof = inter / (nb[:, 2:] - nb[:, :2]).prod(1).clamp(min=1e-12)
            if bool(((iof > 0.25) & (iof < 0.75)).any()):
                continue
            centres = (nb[:, :2] + nb[:, 2:]) / 2
            keep = ((centres > roi[:2]) & (centres < roi[2:])).all(1)
            if not bool(keep.any()):
                continue
            x0, y0, x1, y1 = int(roi[0] * w), int(roi[1] * h), int(roi[2] * w), int(roi[3] * h)
            off_x, off_y = int(max(0.0, -left) * w), int(max(0.0, -top) * h)
            fill = float(sample.image.float().mean())
            sample.crop(x0, y0, x1, y1, keep)
            canvas_h = max(math.ceil(h * new_h), off_y + y1 - y0)
            canvas_w = max(math.ceil(w * new_w), off_x + x1 - x0)
            sample.expand(canvas_h, canvas_w, off_x, off_y, (fill, fill, fill))
            return

    @staticmethod
    def _large_enough(sample: Sample) -> Tensor:
        """Instances whose normalised min side is > 0.01 (MutualGuide drops the others)."""
        h, w = sample.size
        bw = (sample.boxes[:, 2] - sample.boxes[:, 0]) / w
        bh = (sample.boxes[:, 3] - sample.boxes[:, 1]) / h
        return torch.minimum(bw, bh) > 0.01
