"""Per-image targets, predictions and batches shared by every dataset, head and evaluator.

Method-specific per-instance fields (LSNet's extreme points and contours, VOC's ``difficult`` ...) are not
attributes here: plugins declare them (:mod:`lsvr_core.fields`, hook ``lsvr_target_fields``) and they travel in
``extras`` (:class:`~lsvr_core.field_geometry.ExtraFields`), transformed according to their declared kind.

Coordinates are xy pixels. A dataset returns targets in the *input frame* (after its transforms: resized and
possibly flipped, not padded). Heads predict in the input frame; :meth:`Predictions.to_original` maps them
back to the file's pixel grid with the ``scale`` and ``flipped`` recorded in :class:`Targets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lsvr_core.field_geometry import ExtraFields

NUM_KEYPOINTS = 17


@dataclass
class Targets:
    """Ground truth and metadata of one image.

    Attributes:
        boxes: (N, 4) float32 xyxy pixels, input frame.
        labels: (N,) int64 contiguous class indices in [0, num_classes).
        iscrowd: (N,) bool; crowd regions are ignored by assigners and evaluators.
        image_id: the dataset's image id (COCO ``image_id``).
        orig_size: (H, W) of the image file, pixels.
        image_size: (H, W) of the transformed image before padding, pixels.
        scale: (sx, sy) such that input-frame x = original x * sx (before any flip).
        flipped: True if the image was flipped horizontally after resizing.
        polygons: per instance a list of (P, 2) float32 xy arrays (input frame); None when not loaded.
        masks: (N, H, W) uint8 instance masks at ``image_size``, built only when a dataset is asked for them.
        keypoints: (N, 17, 3) float32 (x, y, visibility 0/1/2), input frame.
        ann_ids: (N,) int64 annotation ids (for error messages and cross-checks); -1 when unknown.
        extras: declared per-instance fields (``extras.require("difficult")`` / :meth:`extra`), input frame.
        semantic: (H, W) uint8 per-pixel semantic labels at ``image_size`` (COCO-stuff stuffthingmaps; 255
            ignored), per image, not per instance; loaded only when a dataset is asked for them (HTC).
    """

    boxes: Tensor
    labels: Tensor
    image_id: int
    orig_size: tuple[int, int]
    image_size: tuple[int, int]
    iscrowd: Tensor | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    flipped: bool = False
    polygons: list[list[Any]] | None = None
    masks: Tensor | None = None
    keypoints: Tensor | None = None
    ann_ids: Tensor | None = None
    extras: ExtraFields = field(default_factory=ExtraFields)
    semantic: Tensor | None = None

    def __post_init__(self) -> None:
        if self.iscrowd is None:
            self.iscrowd = torch.zeros(len(self.boxes), dtype=torch.bool)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def extra(self, name: str) -> Tensor:
        """The declared per-instance field ``name`` (e.g. ``extreme_points`` (N, 4, 2)).

        Raises:
            DataError: the field is absent; the message names the image and the fields present.
        """
        return self.extras.require(name, self.image_id)

    def to(self, device: torch.device | str) -> Targets:
        """Copy with every tensor moved to ``device`` (polygons stay on the host)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, Tensor):
                moved[key] = value.to(device, non_blocking=True)
        moved["extras"] = self.extras.to(device)
        return Targets(**moved)

    def non_crowd(self) -> Targets:
        """The subset of instances with ``iscrowd == False``."""
        keep = ~self.iscrowd
        return self.select(keep)

    def select(self, keep: Tensor) -> Targets:
        """Subset of instances by a boolean mask or index tensor."""
        out = {}
        idx = keep.nonzero().flatten().tolist() if keep.dtype == torch.bool else keep.tolist()
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "semantic":  # per image: kept whole
                pass
            elif isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == len(self):
                value = value[keep]
            elif f.name == "polygons" and value is not None:
                value = [value[i] for i in idx]
            elif f.name == "extras":
                value = value.select(keep)
            out[f.name] = value
        return Targets(**out)


@dataclass
class Predictions:
    """Detections of one image.

    Attributes:
        boxes: (N, 4) float32 xyxy pixels.
        scores: (N,) float32 in [0, 1].
        labels: (N,) int64 contiguous class indices.
        image_id: the image's id (copied from its :class:`Targets`).
        masks: (N, H, W) float32 mask probabilities or bool masks covering the frame's image size.
        contours: (N, P, 2) float32 xy, one closed polygon outline per instance (any P, e.g. LSNet's 36);
            the results writer rasterises them when there are no masks.
        keypoints: (N, 17, 3) float32 (x, y, score).
        roi_masks: (N, M, M) float32 mask probabilities over the boxes (two-stage heads, optional): when present,
            :meth:`to_original` pastes them at the original-frame boxes (mmdet's mask pasting) instead of
            resizing the input-frame ``masks``.
        frame: ``"input"`` (heads' output) or ``"original"`` (after :meth:`to_original`).
        extras: declared per-instance outputs (e.g. LSNet's ``extreme_points`` (N, 4, 2)), mapped to the original
            frame by :meth:`to_original` according to their declared kind.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image_id: int = -1
    masks: Tensor | None = None
    contours: Tensor | None = None
    keypoints: Tensor | None = None
    frame: str = "input"
    extras: ExtraFields = field(default_factory=ExtraFields)
    roi_masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Predictions:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in moved.items():
            if isinstance(value, Tensor):
                moved[key] = value.to(device)
        moved["extras"] = self.extras.to(device)
        return Predictions(**moved)

    def to_original(self, meta: Targets) -> Predictions:
        """Map input-frame predictions to the file's pixel grid (undo flip, then scale); masks are resized.

        ``extras`` follow their declared kind; like keypoints, flipped points keep their (mirrored) slots: undoing
        a flip moves coordinates only, ``flip_perm`` reordering is the head's business.

        Raises:
            ValueError: if already in the original frame.
        """
        if self.frame != "input":
            raise ValueError("predictions are already in the original frame")
        sx, sy = meta.scale
        w_in = meta.image_size[1]
        oh, ow = meta.orig_size

        def points(p: Tensor | None) -> Tensor | None:
            if p is None:
                return None
            out = p.clone().float()
            if meta.flipped:
                out[..., 0] = w_in - out[..., 0]
            out[..., 0] /= sx
            out[..., 1] /= sy
            return out

        boxes = points(self.boxes.reshape(-1, 2, 2))
        assert boxes is not None
        boxes = boxes.reshape(-1, 4)
        if meta.flipped:
            boxes = boxes[:, [2, 1, 0, 3]]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, ow)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, oh)
        keypoints = None
        if self.keypoints is not None:
            keypoints = self.keypoints.clone().float()
            keypoints[..., :2] = points(self.keypoints[..., :2])  # type: ignore[index]
        masks = None
        if self.roi_masks is not None and len(self.roi_masks):  # paste the RoI masks straight into the original frame
            from torchvision.models.detection.roi_heads import paste_masks_in_image

            roi = self.roi_masks.flip(-1) if meta.flipped else self.roi_masks
            masks = paste_masks_in_image(roi[:, None].float(), boxes, (oh, ow))[:, 0]
        elif self.masks is not None and len(self.masks):
            h_in, w_in_ = meta.image_size
            m = self.masks[:, :h_in, :w_in_].float()
            if meta.flipped:
                m = m.flip(-1)
            masks = F.interpolate(m[:, None], size=(oh, ow), mode="bilinear", align_corners=False)[:, 0]
        elif self.masks is not None:
            masks = self.masks.new_zeros((0, oh, ow), dtype=torch.float32)
        extras = self.extras.hflip(w_in, permute=False) if meta.flipped else self.extras
        return replace(
            self,
            boxes=boxes,
            masks=masks,
            contours=points(self.contours),
            keypoints=keypoints,
            extras=extras.affine(1.0 / sx, 1.0 / sy),
            frame="original",
            image_id=meta.image_id,
        )


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        images: (B, 3, H, W) float32 RGB in [0, 255], zero-padded to a multiple of the size divisor.
        targets: per image :class:`Targets` (ground truth and metadata, input frame).
        progress: fraction of the run's iterations done before this batch, in [0, 1), set by the trainer for
            training steps (None elsewhere); lets training-batch transforms follow the schedule (e.g. MixUp
            for the first 80 % of iterations).
    """

    images: Tensor
    targets: list[Targets]
    progress: float | None = None

    @property
    def image_sizes(self) -> list[tuple[int, int]]:
        """(H, W) of each image before padding."""
        return [t.image_size for t in self.targets]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.images.to(device, non_blocking=True), [t.to(device) for t in self.targets], self.progress)


def collate(samples: list[tuple[Tensor, Targets]], size_divisor: int = 32) -> Batch:
    """Stack ``(image (3, H, W) uint8 or float, Targets)`` samples into a zero-padded float32 :class:`Batch`.

    The padded size is the largest H and W in the batch rounded up to ``size_divisor``. Padding at the bottom
    and right moves no coordinate, so targets (and their ``extras``) pass through unchanged; each image's
    extras are checked to hold one entry per instance.

    Raises:
        DataError: an extra field's instance count differs from the boxes'.
    """
    if not samples:
        raise ValueError("collate() got an empty list of samples")
    max_h = max(img.shape[-2] for img, _ in samples)
    max_w = max(img.shape[-1] for img, _ in samples)
    pad_h = -(-max_h // size_divisor) * size_divisor
    pad_w = -(-max_w // size_divisor) * size_divisor
    images = torch.zeros((len(samples), 3, pad_h, pad_w), dtype=torch.float32)
    for i, (img, _) in enumerate(samples):
        images[i, :, : img.shape[-2], : img.shape[-1]].copy_(img)  # converts in place, no float temporary
    for _, t in samples:
        t.extras.check_length(len(t), t.image_id)
    return Batch(images, [t for _, t in samples])
