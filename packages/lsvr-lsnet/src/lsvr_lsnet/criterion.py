"""LSNet training targets and losses: centroid (init) and ATSS (refine + classification) assignment, cross-IoU
landmark losses and the focal classification loss (spec §3, §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lsvr_core.api import Batch
from lsvr_lsnet.encoding import decode_landmarks, landmarks_to_boxes
from lsvr_lsnet.layouts import TaskLayout
from lsvr_lsnet.targets import LandmarkGT, grid_points, prepare_gt, valid_points


@dataclass
class HeadOutputs:
    """Raw per-level outputs of the head (levels fine to coarse).

    Attributes:
        cls: [(N, num_classes, H_l, W_l)] classification logits.
        init: branch name -> [(N, 4K, H_l, W_l)] stage-1 cross vectors (cells, >= 0).
        refine: branch name -> [(N, 4K, H_l, W_l)] stage-2 cross vectors (cells, >= 0).
    """

    cls: list[Tensor]
    init: dict[str, list[Tensor]]
    refine: dict[str, list[Tensor]]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [(int(c.shape[-2]), int(c.shape[-1])) for c in self.cls]


def flatten_levels(maps: list[Tensor], last: int) -> Tensor:
    """[(N, D, H_l, W_l)] -> (N, P, D // last, last), P = sum H_l W_l, row-major per level."""
    n = maps[0].shape[0]
    flat = torch.cat([m.permute(0, 2, 3, 1).reshape(n, -1, m.shape[1]) for m in maps], dim=1)
    return flat.view(n, flat.shape[1], -1, last)


@dataclass
class _Positives:
    """Positives of one stage gathered over the batch: image, point and GT index per positive."""

    image: list[Tensor]
    point: list[Tensor]
    gts: list[LandmarkGT]
    gt_index: list[Tensor]
    normaliser: float = 0.0

    def add(self, i: int, points: Tensor, gt_index: Tensor, gt: LandmarkGT) -> None:
        self.image.append(torch.full_like(points, i))
        self.point.append(points)
        self.gt_index.append(gt_index)
        self.gts.append(gt)
        self.normaliser += max(int(points.numel()), 1)  # N_pos = sum over images of max(#pos, 1) (§3.2)

    def gather(self, field: str) -> Tensor | None:
        parts = [getattr(g, field) for g in self.gts]
        if any(p is None for p in parts):
            return None
        return torch.cat([p[idx] for p, idx in zip(parts, self.gt_index, strict=True)])


class LSNetCriterion(nn.Module):
    """Assign targets and compute ``{loss_cls, loss_pts_init, loss_pts_refine}`` (+ ``loss_box_init``,
    ``loss_box_refine`` for pose_bbox's box branch).

    Args:
        layout: the task layout.
        assigner_init: ``(points (P, 2), levels (P,), gt_boxes (G, 4)) -> (P,) gt index or -1`` (``centroid``).
        assigner_refine: ``(boxes (P, 4), num_level_points, gt_boxes (G, 4)) -> (P,)`` (``atss``).
        loss_cls: ``(logits (M, C), labels (M,) with -1 background, avg_factor=) -> scalar`` (``focal``).
        landmark_losses: ``loss_init``, ``loss_refine`` (main branch) and, for pose_bbox, ``loss_box_init``,
            ``loss_box_refine``: cross-IoU losses ``(pred, offsets, avg_factor=, anchors=, gt_boxes=, visibility=)``.
        point_base_scale: normalisation term = point_base_scale * stride (§4.1).
        pad_divisor: valid points lie inside each image padded to this (§3).
    """

    def __init__(self, layout: TaskLayout, assigner_init: Callable[..., Tensor], assigner_refine: Callable[..., Tensor],
                 loss_cls: nn.Module, landmark_losses: dict[str, nn.Module], point_base_scale: float,
                 pad_divisor: int) -> None:
        super().__init__()
        self.layout = layout
        self.assigner_init, self.assigner_refine = assigner_init, assigner_refine
        self.loss_cls = loss_cls
        self.landmark_losses = nn.ModuleDict(landmark_losses)
        self.point_base_scale, self.pad_divisor = point_base_scale, pad_divisor

    def forward(self, out: HeadOutputs, batch: Batch, strides: list[int]) -> dict[str, Tensor]:
        """Args:
            out: the head's raw outputs.
            batch: images and input-frame targets (on the outputs' device).
            strides: stride of each level, pixels.
        Returns:
            dict of scalar float losses.
        """
        sizes, device = out.sizes, out.cls[0].device
        points, point_strides, point_levels = grid_points(sizes, strides, device)
        counts = [h * w for h, w in sizes]
        # losses in float32 even under autocast
        cls = flatten_levels(out.cls, out.cls[0].shape[1]).flatten(2).float()  # (N, P, C)
        init = {b: flatten_levels(v, 4).float() for b, v in out.init.items()}  # (N, P, K, 4)
        refine = {b: flatten_levels(v, 4).float() for b, v in out.refine.items()}
        with torch.no_grad():  # ATSS proposals: boxes decoded from the detached init predictions (§3.2)
            box_from = self.layout.branch(self.layout.box).box_from
            box_init = init[self.layout.box].detach()
            n, p = box_init.shape[:2]
            lm = decode_landmarks(box_init.flatten(0, 1), points.repeat(n, 1), point_strides.repeat(n))
            proposals = landmarks_to_boxes(lm, box_from).view(n, p, 4)

        pos_init, pos_refine = _Positives([], [], [], []), _Positives([], [], [], [])
        logits, labels = [], []
        for i, targets in enumerate(batch.targets):
            gt = prepare_gt(targets, self.layout.task)
            valid = valid_points(targets.image_size, sizes, strides, self.pad_divisor, device)  # (P,)
            level_counts = [int(v.sum()) for v in valid.split(counts)]
            vidx = valid.nonzero().squeeze(1)
            a_init = self.assigner_init(points[vidx], point_levels[vidx], gt.boxes)
            a_ref = self.assigner_refine(proposals[i, vidx], level_counts, gt.boxes)
            pos_init.add(i, vidx[a_init >= 0], a_init[a_init >= 0], gt)
            pos_refine.add(i, vidx[a_ref >= 0], a_ref[a_ref >= 0], gt)
            lab = torch.full_like(a_ref, -1)
            lab[a_ref >= 0] = gt.labels[a_ref[a_ref >= 0]]
            logits.append(cls[i, vidx])
            labels.append(lab)

        losses = {"loss_cls": self.loss_cls(torch.cat(logits), torch.cat(labels), avg_factor=pos_refine.normaliser)}
        main, box = self.layout.main, self.layout.box
        losses["loss_pts_init"] = self._landmarks(self.landmark_losses["loss_init"], init[main], pos_init,
                                                  points, point_strides, "landmarks")
        losses["loss_pts_refine"] = self._landmarks(self.landmark_losses["loss_refine"], refine[main], pos_refine,
                                                    points, point_strides, "landmarks")
        if box != main:
            losses["loss_box_init"] = self._landmarks(self.landmark_losses["loss_box_init"], init[box], pos_init,
                                                      points, point_strides, "box_landmarks")
            losses["loss_box_refine"] = self._landmarks(self.landmark_losses["loss_box_refine"], refine[box],
                                                        pos_refine, points, point_strides, "box_landmarks")
        return losses

    def _landmarks(self, loss: Any, pred: Tensor, pos: _Positives, points: Tensor, point_strides: Tensor,
                   field: str) -> Tensor:
        """Landmark loss on the positives only (§11.15), everything divided by point_base_scale * stride (§4.1).

        ``pred`` (N, P, K, 4) is in cells, so pred * stride / (pbs * stride) = pred / pbs.
        """
        img, pt = torch.cat(pos.image), torch.cat(pos.point)
        landmarks = pos.gather(field)
        assert landmarks is not None
        anchors = points[pt]  # (M, 2)
        norm = (self.point_base_scale * point_strides[pt])[:, None]  # (M, 1)
        vis = pos.gather("visibility") if field == "landmarks" else None
        return loss(pred[img, pt] / self.point_base_scale, (landmarks - anchors[:, None]) / norm[..., None],
                    avg_factor=pos.normaliser, anchors=anchors / norm, gt_boxes=pos.gather("boxes") / norm,
                    visibility=vis)
