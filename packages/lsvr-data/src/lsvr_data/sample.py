"""The mutable per-image record the transforms work on, and its geometric primitives.

Every geometric step is "scale then translate" (resize, crop, expand) or a horizontal flip, applied to all
instance geometry at once so boxes, landmarks, keypoints, polygons and masks stay consistent with the image.
Image and mask pixels go through ``torchvision.transforms.v2.functional``; point arithmetic is ours because
the flip convention here is ``x -> W - x`` (continuous pixel edges, as mmdetection and
:meth:`lsvr_core.structures.Predictions.to_original`), whereas tv_tensors.KeyPoints use ``W - 1 - x``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lsvr_core.api import ExtraFields, Targets, field_affine, field_clip, field_hflip
from lsvr_data.fields import BOXES, KEYPOINTS, POLYGONS


@dataclass
class Sample:
    """One image and its instances, in the current frame.

    Attributes:
        image: (3, H, W) uint8 RGB.
        boxes: (N, 4) float32 xyxy pixels.
        labels: (N,) int64; iscrowd: (N,) bool; ann_ids: (N,) int64.
        keypoints: (N, 17, 3) float32 (x, y, v); points with v == 0 are kept at (0, 0).
        polygons: per instance a list of (P, 2) float32 tensors.
        masks: (N, H, W) uint8.
        extras: declared per-instance fields (``difficult``, ``extreme_points``, ``contours``, a plugin's own),
            transformed by their declared kind.
        scale: accumulated (sx, sy) from the original file; flipped: net horizontal flip.
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    iscrowd: Tensor
    ann_ids: Tensor
    image_id: int
    orig_size: tuple[int, int]
    keypoints: Tensor | None = None
    polygons: list[list[Tensor]] | None = None
    masks: Tensor | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    flipped: bool = False
    extras: ExtraFields = field(default_factory=ExtraFields)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def clone(self) -> Sample:
        return Sample(**{k: _clone(v) for k, v in self.__dict__.items()})

    # --- geometry ---------------------------------------------------------------------------------------

    def _geometry(self, fn) -> None:  # noqa: ANN001
        """Apply ``fn(spec, value) -> value`` to every geometric field, core's and the declared extras."""
        self.boxes = fn(BOXES, self.boxes)
        if self.keypoints is not None:
            self.keypoints = fn(KEYPOINTS, self.keypoints)
        if self.polygons is not None:
            self.polygons = fn(POLYGONS, self.polygons)
        self.extras = self.extras.map(fn)

    def affine(self, sx: float, sy: float, tx: float = 0.0, ty: float = 0.0) -> None:
        """Points: x -> x * sx + tx, y -> y * sy + ty (the image is changed by the caller)."""
        self._geometry(lambda spec, v: field_affine(spec, v, sx, sy, tx, ty))

    def resize(self, height: int, width: int, interpolation: InterpolationMode = InterpolationMode.BILINEAR,
               antialias: bool = True) -> None:
        """Resize image (and masks, nearest) to (height, width); points scale by (W'/W, H'/H)."""
        h, w = self.size
        sx, sy = width / w, height / h
        self.image = TF.resize(tv_tensors.Image(self.image), [height, width], interpolation=interpolation,
                               antialias=antialias).as_subclass(Tensor)
        if self.masks is not None:
            self.masks = TF.resize(tv_tensors.Mask(self.masks), [height, width]).as_subclass(Tensor)
        self.affine(sx, sy)
        self.scale = (self.scale[0] * sx, self.scale[1] * sy)

    def hflip(self) -> None:
        """Mirror x -> W - x; swap box x1/x2 and every declared flip permutation (keypoint left/right pairs,
        left/right extreme points; contours keep their orientation and start point: reverse order, point 0 stays
        first). Source: LSNet spec §7.3."""
        w = self.size[1]
        self.image = TF.horizontal_flip(self.image)
        if self.masks is not None:
            self.masks = TF.horizontal_flip(self.masks)
        self._geometry(lambda spec, v: field_hflip(spec, v, w))
        self.flipped = not self.flipped

    def crop(self, x0: int, y0: int, x1: int, y1: int, keep: Tensor) -> None:
        """Crop to [x0, x1) x [y0, y1), keep instances ``keep`` (bool (N,)), clip points to the crop."""
        self.select(keep)
        self.image = self.image[:, y0:y1, x0:x1]
        if self.masks is not None:
            self.masks = self.masks[:, y0:y1, x0:x1]
        self.affine(1.0, 1.0, -x0, -y0)
        self.clip_points()

    def expand(self, height: int, width: int, left: int, top: int, fill: tuple[float, float, float]) -> None:
        """Place the image at (left, top) on a (height, width) canvas filled with ``fill`` (RGB)."""
        h, w = self.size
        canvas = torch.empty((3, height, width), dtype=self.image.dtype)
        canvas[:] = torch.tensor(fill).round().to(self.image.dtype)[:, None, None]
        canvas[:, top : top + h, left : left + w] = self.image
        self.image = canvas
        if self.masks is not None:
            m = self.masks.new_zeros((self.masks.shape[0], height, width))
            m[:, top : top + h, left : left + w] = self.masks
            self.masks = m
        self.affine(1.0, 1.0, left, top)

    def clip_points(self) -> None:
        """Clamp boxes, polygons and 2-channel points to the image ([0, W] x [0, H]); keypoints (and other
        3-channel points) outside it become unlabelled."""
        h, w = self.size
        self._geometry(lambda spec, v: field_clip(spec, v, h, w))

    def select(self, keep: Tensor) -> None:
        """Keep the instances selected by a bool mask (N,)."""
        idx = keep.nonzero().flatten().tolist()
        for name in ("boxes", "labels", "iscrowd", "ann_ids", "keypoints", "masks"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[keep])
        if self.polygons is not None:
            self.polygons = [self.polygons[i] for i in idx]
        self.extras = self.extras.select(keep)

    def to_targets(self) -> Targets:
        """The lsvr-core :class:`Targets` of this sample (input frame)."""
        return Targets(
            boxes=self.boxes.float(), labels=self.labels.long(), image_id=self.image_id, orig_size=self.orig_size,
            image_size=self.size, iscrowd=self.iscrowd.bool(), scale=self.scale, flipped=self.flipped,
            polygons=self.polygons, masks=self.masks, keypoints=self.keypoints, ann_ids=self.ann_ids.long(),
            extras=self.extras,
        )


def _clone(value):  # noqa: ANN001, ANN202
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, ExtraFields):
        return value.clone()
    return value
