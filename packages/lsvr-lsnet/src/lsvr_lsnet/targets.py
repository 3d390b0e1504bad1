"""Ground-truth landmarks per task and the grid points they are assigned to (LSNet spec §1, §3)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lsvr_core.api import DataError, Targets
from lsvr_lsnet.encoding import points_to_boxes


@dataclass
class LandmarkGT:
    """The non-crowd objects of one image as LSNet regresses them (input frame, pixels).

    Attributes:
        boxes: (G, 4) float xyxy, the boxes used for assignment and the penalty term (§3 "GT boxes used").
        labels: (G,) int64.
        landmarks: (G, K, 2) float xy of the main branch, the centre last.
        visibility: (G, K) bool, keypoint tasks only (centre True), else None.
        box_landmarks: (G, 5, 2) float xy border mid-points + centre, pose_bbox's box branch only, else None.
    """

    boxes: Tensor
    labels: Tensor
    landmarks: Tensor
    visibility: Tensor | None = None
    box_landmarks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _centre(boxes: Tensor) -> Tensor:
    return ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None, :]  # (G, 1, 2)


def border_midpoints(boxes: Tensor) -> Tensor:
    """(G, 4) xyxy -> (G, 4, 2) top-centre, left-centre, bottom-centre, right-centre (spec §1 ``get_border_center``)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return torch.stack([torch.stack([cx, y1], -1), torch.stack([x1, cy], -1), torch.stack([cx, y2], -1),
                        torch.stack([x2, cy], -1)], dim=1)


def _require(value: Tensor | None, field: str, task: str, image_id: int) -> Tensor:
    if value is None:
        raise DataError(f"image {image_id}: task {task!r} needs the target field {field!r}, which the dataset did not "
                        f"provide (check the dataset's task setting; extreme_points / contours need landmarks: true)")
    return value


def prepare_gt(targets: Targets, task: str) -> LandmarkGT:
    """Build the landmark targets of one image; crowd instances are dropped (they are plain negatives, §3).

    Per task (§1, §3, §11.6-7):
        bbox: 4 extreme points (top, left, bottom, right) + annotation-box centre; box = annotation box.
        segm: 36 contour points + centre of their box; box = contour box (§3: replaces the annotation box).
        pose_bbox: 17 keypoints + annotation-box centre; box branch: border mid-points + centre; box = annotation.
        pose_kbox: 17 keypoints + keypoint-box centre; box = min/max of the labelled keypoints; persons with no
            labelled keypoint are dropped (the reference silently treats them as background, §11.6).

    Args:
        targets: one image's :class:`~lsvr_core.structures.Targets` (input frame).
        task: ``bbox``, ``segm``, ``pose_bbox`` or ``pose_kbox``.
    Returns:
        :class:`LandmarkGT` with G >= 0 objects (an image whose annotations are all crowd gives G = 0).
    Raises:
        DataError: the field the task needs (extreme_points / contours / keypoints) is missing.
    """
    t = targets.non_crowd()
    boxes, labels = t.boxes.float(), t.labels.long()
    if task == "bbox":
        extremes = _require(t.extras.get("extreme_points"), "extreme_points", task, t.image_id).float()
        return LandmarkGT(boxes, labels, torch.cat([extremes, _centre(boxes)], dim=1))
    if task == "segm":
        contours = _require(t.extras.get("contours"), "contours", task, t.image_id).float()
        boxes = points_to_boxes(contours) if len(contours) else boxes
        return LandmarkGT(boxes, labels, torch.cat([contours, _centre(boxes)], dim=1))
    keypoints = _require(t.keypoints, "keypoints", task, t.image_id).float()
    labelled = keypoints[..., 2] > 0  # (G, 17)
    if task == "pose_kbox":
        keep = labelled.any(dim=1)
        keypoints, labelled, labels = keypoints[keep], labelled[keep], labels[keep]
        big = torch.finfo(keypoints.dtype).max
        xy = keypoints[..., :2]
        lo = torch.where(labelled[..., None], xy, xy.new_tensor(big)).amin(dim=1)
        hi = torch.where(labelled[..., None], xy, xy.new_tensor(-big)).amax(dim=1)
        boxes = torch.cat([lo, hi], dim=1) if len(xy) else boxes[:0]
    ones = labelled.new_ones((len(labelled), 1))
    landmarks = torch.cat([keypoints[..., :2], _centre(boxes)], dim=1)
    gt = LandmarkGT(boxes, labels, landmarks, torch.cat([labelled, ones], dim=1))
    if task == "pose_bbox":
        gt.box_landmarks = torch.cat([border_midpoints(boxes), _centre(boxes)], dim=1)
    return gt


def grid_points(sizes: list[tuple[int, int]], strides: list[int],
                device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Anchor points of all levels, concatenated fine to coarse, row-major within a level.

    Args:
        sizes: (H_l, W_l) of each level's feature map.
        strides: stride of each level, pixels.
    Returns:
        points (P, 2) float xy = (x * stride, y * stride) pixels (no half-stride offset, spec §1),
        point_strides (P,) float, point_levels (P,) int64 level number log2(stride).
    """
    pts, sts, lvs = [], [], []
    for (h, w), s in zip(sizes, strides, strict=True):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        pts.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float() * s)
        sts.append(torch.full((h * w,), float(s), device=device))
        lvs.append(torch.full((h * w,), round(math.log2(s)), device=device, dtype=torch.long))
    return torch.cat(pts), torch.cat(sts), torch.cat(lvs)


def valid_points(image_size: tuple[int, int], sizes: list[tuple[int, int]], strides: list[int], pad_divisor: int,
                 device: torch.device) -> Tensor:
    """Points inside the image's own padded size: x < ceil(W_pad / stride), y < ceil(H_pad / stride) (§3).

    Args:
        image_size: (H, W) of the image before padding, pixels.
        sizes, strides: as :func:`grid_points`.
        pad_divisor: the image is padded to a multiple of this (32 in the reference).
    Returns:
        (P,) bool in :func:`grid_points` order.
    """
    pad_h = math.ceil(image_size[0] / pad_divisor) * pad_divisor
    pad_w = math.ceil(image_size[1] / pad_divisor) * pad_divisor
    out = []
    for (h, w), s in zip(sizes, strides, strict=True):
        vh, vw = min(math.ceil(pad_h / s), h), min(math.ceil(pad_w / s), w)
        mask = torch.zeros((h, w), dtype=torch.bool, device=device)
        mask[:vh, :vw] = True
        out.append(mask.reshape(-1))
    return torch.cat(out)
