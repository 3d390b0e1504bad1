"""LSNet inference: decode the refined landmarks, top-k per level, class-wise NMS (spec §6)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from lsvr_core.api import Batch, Predictions, Targets
from lsvr_data.fields import EXTREME_POINTS
from lsvr_lsnet.criterion import HeadOutputs
from lsvr_lsnet.encoding import decode_landmarks, landmarks_to_boxes
from lsvr_lsnet.layouts import TaskLayout
from lsvr_lsnet.targets import grid_points, valid_points


def batched_nms_topk(boxes: Tensor, scores: Tensor, labels: Tensor, iou: float, k: int, chunk: int = 1000) -> Tensor:
    """``torchvision.ops.batched_nms(boxes, scores, labels, iou)[:k]``, computed on the highest-scoring candidates.

    Greedy NMS keeps or drops a candidate by looking only at higher-scoring boxes of its class, so NMS over the
    top-n candidates keeps exactly the survivors of the full NMS that lie in the top-n; once those number at
    least ``k`` they are the answer. n starts at ``chunk`` and grows x4 until then (or all are used). Same result,
    without NMS over hundreds of thousands of (location, class) pairs of an 80-class model on a CPU.

    Args:
        boxes: (M, 4) xyxy. scores: (M,). labels: (M,) int64 class of each candidate.
        iou: suppression threshold (IoU > iou suppresses). k: detections to keep. chunk: first n.
    Returns:
        (<= k,) int64 indices into the inputs, by decreasing score.
    """
    order = scores.argsort(descending=True)
    n = chunk
    while True:
        sel = order[:n]
        keep = batched_nms(boxes[sel], scores[sel], labels[sel], iou)
        if len(keep) >= k or n >= len(order):
            return sel[keep[:k]]
        n *= 4


class LSNetPostprocessor:
    """Turn raw head outputs into input-frame :class:`~lsvr_core.structures.Predictions`.

    Per image (§6): per level keep the ``nms_pre`` valid locations with the highest class score; decode the
    refined landmarks (landmark = anchor + signed vector * stride) and the box; clamp both to the image; keep
    (location, class) pairs with score > ``score_thr``; class-wise NMS at ``nms_iou``; keep ``max_per_img``.
    Pose tasks then drop boxes whose area in the original image is <= ``pose_min_area`` (§6.6, §11.8).

    Outputs per task: bbox — boxes + ``extreme_points`` (N, 4, 2); segm — ``contours`` (N, 36, 2) + their box;
    pose_bbox — the box branch's box + ``keypoints`` (N, 17, 3) with score 1; pose_kbox — keypoints and their
    min/max box. Works for any batch size (the reference's pose path only for 1, §11.8).

    Args:
        layout: the task layout.
        nms_pre, score_thr, nms_iou, max_per_img, pose_min_area: as in :class:`~lsvr_lsnet.config.LSNetHeadConfig`.
        pad_divisor: only locations inside each image's padded size are decoded.
    """

    def __init__(self, layout: TaskLayout, nms_pre: int, score_thr: float, nms_iou: float, max_per_img: int,
                 pose_min_area: float, pad_divisor: int) -> None:
        self.layout = layout
        self.nms_pre, self.score_thr, self.nms_iou, self.max_per_img = nms_pre, score_thr, nms_iou, max_per_img
        self.pose_min_area, self.pad_divisor = pose_min_area, pad_divisor

    @torch.no_grad()
    def __call__(self, out: HeadOutputs, batch: Batch, strides: list[int],
                 refine_boxes: Callable[[Tensor, Tensor, int, Targets], Tensor] | None = None) -> list[Predictions]:
        """``refine_boxes(boxes (M, 4), point_index (M,), image_index, meta) -> (M, 4)``, when given, edits the
        clamped candidate boxes before NMS (CPV corner snapping, spec §5)."""
        sizes, device = out.sizes, out.cls[0].device
        points, point_strides, _ = grid_points(sizes, strides, device)
        starts = [0]
        for h, w in sizes:
            starts.append(starts[-1] + h * w)
        return [self._image(out, i, t, points, point_strides, starts, sizes, strides, device, refine_boxes)
                for i, t in enumerate(batch.targets)]

    def _image(self, out: HeadOutputs, i: int, meta: Targets, points: Tensor, point_strides: Tensor,
               starts: list[int], sizes: list[tuple[int, int]], strides: list[int],
               device: torch.device, refine_boxes: Callable[..., Tensor] | None = None) -> Predictions:
        valid = valid_points(meta.image_size, sizes, strides, self.pad_divisor, device)
        keep_idx, keep_scores = [], []
        for lv, cls in enumerate(out.cls):
            scores = cls[i].float().sigmoid().flatten(1).t()  # (H W, C)
            idx = valid[starts[lv]:starts[lv + 1]].nonzero().squeeze(1)
            scores = scores[idx]
            if len(idx) > self.nms_pre:
                _, top = scores.max(dim=1).values.topk(self.nms_pre)
                idx, scores = idx[top], scores[top]
            keep_idx.append(idx + starts[lv])
            keep_scores.append(scores)
        idx, scores = torch.cat(keep_idx), torch.cat(keep_scores)  # (M,), (M, C)

        def landmarks(branch: str) -> Tensor:
            vec = torch.cat([r[i].flatten(1).t() for r in out.refine[branch]])[idx].float()  # (M, 4K)
            return decode_landmarks(vec.view(len(idx), -1, 4), points[idx], point_strides[idx])  # (M, K, 2) px

        h_img, w_img = meta.image_size
        limit = points.new_tensor([w_img, h_img])
        main = landmarks(self.layout.main)
        box_lm = main if self.layout.box == self.layout.main else landmarks(self.layout.box)
        boxes = landmarks_to_boxes(box_lm, self.layout.branch(self.layout.box).box_from)
        # an extreme-point box is inverted when e.g. the left point lies right of the right point (the reference
        # outputs it as is); order the corners so every output box is a valid xyxy box
        boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
        boxes = torch.minimum(boxes.clamp(min=0), limit.repeat(2))
        main = torch.minimum(main.clamp(min=0), limit)
        if refine_boxes is not None:
            boxes = refine_boxes(boxes, idx, i, meta)

        loc, label = (scores > self.score_thr).nonzero(as_tuple=True)
        det_scores = scores[loc, label]
        keep = batched_nms_topk(boxes[loc], det_scores, label, self.nms_iou, self.max_per_img)
        loc, label, det_scores = loc[keep], label[keep], det_scores[keep]
        pred = Predictions(boxes=boxes[loc], scores=det_scores, labels=label, image_id=meta.image_id)
        if self.layout.task == "bbox":
            pred.extras.add(EXTREME_POINTS, main[loc, :4])
        elif self.layout.task == "segm":
            pred.contours = main[loc, :-1]
        else:
            kps = main[loc, :-1]
            pred.keypoints = torch.cat([kps, kps.new_ones((*kps.shape[:2], 1))], dim=-1)
            sx, sy = meta.scale
            area = (pred.boxes[:, 2] - pred.boxes[:, 0]) * (pred.boxes[:, 3] - pred.boxes[:, 1]) / (sx * sy)
            big = area > self.pose_min_area
            pred = Predictions(pred.boxes[big], pred.scores[big], pred.labels[big], meta.image_id,
                               keypoints=pred.keypoints[big])
        return pred
