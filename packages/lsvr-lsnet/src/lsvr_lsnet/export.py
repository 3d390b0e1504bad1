"""LSNet decoding inside an exported graph (``lsvr export --postprocess``): spec §6 with fixed shapes.

The same steps as :class:`~lsvr_lsnet.postprocess.LSNetPostprocessor` for one image, written so that
``torch.export`` and the ONNX exporter capture them: locations outside the image's padded size get score -1
instead of being dropped; each level keeps its ``nms_pre`` best locations (fewer when the level is smaller);
the ``candidates`` best (location, class) pairs then enter class-wise NMS, and the score threshold is applied
after NMS (:mod:`lsvr_core.api` ``topk_pairs`` / ``nms_keep``). This equals eager decoding when the pairs above
``score_thr`` number at most ``candidates``, or when at least ``max_per_img`` of the best ``candidates`` pairs
survive NMS (eager NMS grows its candidate set until then).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lsvr_core.api import nms_keep, topk_pairs
from lsvr_data.fields import EXTREME_POINTS
from lsvr_lsnet.criterion import HeadOutputs
from lsvr_lsnet.encoding import decode_landmarks, landmarks_to_boxes
from lsvr_lsnet.postprocess import LSNetPostprocessor
from lsvr_lsnet.targets import grid_points

GRAPH_CANDIDATES = 4000


def _valid(image_size: Tensor, sizes: list[tuple[int, int]], strides: list[int], pad_divisor: int) -> Tensor:
    """:func:`~lsvr_lsnet.targets.valid_points` with ``image_size`` a (2,) int64 tensor [h, w]: (P,) bool."""
    padded = torch.div(image_size + pad_divisor - 1, pad_divisor, rounding_mode="floor") * pad_divisor
    out = []
    for (h, w), s in zip(sizes, strides, strict=True):
        vh, vw = torch.div(padded + s - 1, s, rounding_mode="floor").unbind(0)
        ys = torch.arange(h, device=image_size.device)[:, None]
        xs = torch.arange(w, device=image_size.device)[None, :]
        out.append(((ys < vh) & (xs < vw)).reshape(-1))
    return torch.cat(out)


def decode_in_graph(post: LSNetPostprocessor, out: HeadOutputs, strides: list[int], image_size: Tensor,
                    scale_factor: Tensor, candidates: int = GRAPH_CANDIDATES) -> dict[str, Tensor]:
    """Detections of image 0 of ``out`` (the exported graph takes one image).

    Args:
        post: the head's postprocessor (its ``nms_pre``, ``score_thr``, ``nms_iou``, ``max_per_img``,
            ``pose_min_area``, ``pad_divisor`` and task layout).
        out: raw outputs, batch 1. strides: per level, pixels.
        image_size: (2,) int64 [h, w] of the resized image before padding.
        scale_factor: (2,) float32 [sx, sy] resized / original (pose drops boxes of original-frame area
            <= ``pose_min_area``, §6.6).
        candidates: (location, class) pairs entering NMS.
    Returns:
        ``boxes`` (K, 4) float32 xyxy, ``scores`` (K,), ``labels`` (K,) int64 in the resized frame, then
        ``extreme_points`` (K, 4, 2) for bbox, ``contours`` (K, 36, 2) for segm, ``keypoints`` (K, 17, 3) for pose.
    """
    layout, sizes = post.layout, out.sizes
    points, point_strides, _ = grid_points(sizes, strides, image_size.device)
    valid = _valid(image_size, sizes, strides, post.pad_divisor)
    keep_idx, keep_scores, start = [], [], 0
    for cls in out.cls:
        n = cls.shape[-2] * cls.shape[-1]
        scores = cls[0].float().sigmoid().flatten(1).t()  # (H W, C)
        scores = torch.where(valid[start:start + n, None], scores, torch.full_like(scores, -1.0))
        _, top = scores.max(dim=1).values.topk(min(post.nms_pre, n))
        keep_idx.append(top + start)
        keep_scores.append(scores[top])
        start += n
    idx, scores = torch.cat(keep_idx), torch.cat(keep_scores)  # (M,), (M, C)

    def landmarks(branch: str) -> Tensor:
        vec = torch.cat([r[0].flatten(1).t() for r in out.refine[branch]])[idx].float()  # (M, 4K)
        return decode_landmarks(vec.view(idx.shape[0], -1, 4), points[idx], point_strides[idx])

    limit = image_size.flip(0).to(torch.float32)  # [w, h]
    main = landmarks(layout.main)
    box_lm = main if layout.box == layout.main else landmarks(layout.box)
    boxes = landmarks_to_boxes(box_lm, layout.branch(layout.box).box_from)
    boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    boxes = torch.minimum(boxes.clamp(min=0), limit.repeat(2))
    main = torch.minimum(main.clamp(min=0), limit)

    pair_scores, loc, label = topk_pairs(scores, candidates)
    keep = nms_keep(boxes[loc], pair_scores, label, iou_thr=post.nms_iou, score_thr=post.score_thr,
                    max_dets=post.max_per_img)
    loc, label, det_scores = loc[keep], label[keep], pair_scores[keep]
    det = {"boxes": boxes[loc], "scores": det_scores, "labels": label}
    if layout.task == "bbox":
        det[EXTREME_POINTS.name] = main[loc, :4]
    elif layout.task == "segm":
        det["contours"] = main[loc, :-1]
    else:
        kps = main[loc, :-1]
        kps = torch.cat([kps, torch.ones_like(kps[..., :1])], dim=-1)
        b = det["boxes"]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (scale_factor[0] * scale_factor[1])
        big = area > post.pose_min_area
        det = {"boxes": b[big], "scores": det_scores[big], "labels": label[big], "keypoints": kps[big]}
    return det
