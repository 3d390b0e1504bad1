"""Candidate selection and NMS that trace into a graph (``lsvr export --postprocess``).

Eager decoding filters candidates by score before NMS and stops NMS early (data-dependent control flow that
neither ``torch.export`` nor ONNX capture). The graph form keeps fixed shapes up to NMS and applies the score
threshold after it:

* :func:`topk_pairs` takes a fixed number of (location, class) pairs by score (ONNX ``TopK``);
* :func:`nms_keep` runs class-wise greedy NMS over all of them (torchvision's ``nms``, exported as ONNX
  ``NonMaxSuppression``), then keeps the survivors above the score threshold, best first, at most ``max_dets``.

Greedy NMS visits candidates by decreasing score and a box is only suppressed by higher-scoring boxes of its
class, so candidates below the threshold (visited last) never suppress one above it: NMS-then-threshold keeps
exactly the boxes of threshold-then-NMS over the same candidates. The graph equals eager decoding whenever its
fixed candidate set contains every candidate eager decoding keeps (each head's ``export_postprocess`` says
when that holds).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

_NMS_FAKE_FIXED = False


def allow_small_nms_outputs() -> None:
    """Re-register the fake (shape) kernel of ``torchvision::nms`` so that traced graphs accept any number of
    survivors.

    torchvision 0.29's fake kernel sizes the output with the deprecated ``ctx.create_unbacked_symint()``, whose
    lower bound is 2: every exported graph then asserts at run time that NMS kept at least 2 boxes, and fails
    on an image where it keeps 0 or 1 (a sparse FPN level, a clean image after the score threshold). This
    kernel declares the size with ``new_dynamic_size(min=0)``. Idempotent; called before tracing.
    """
    global _NMS_FAKE_FIXED
    if _NMS_FAKE_FIXED:
        return
    import torchvision  # noqa: F401  (registers torchvision::nms)

    def fake_nms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        torch._check(dets.dim() == 2 and dets.size(1) == 4, lambda: "nms: boxes must be (N, 4)")
        torch._check(scores.dim() == 1 and scores.size(0) == dets.size(0), lambda: "nms: scores must be (N,)")
        num_kept = torch.library.get_ctx().new_dynamic_size(min=0)
        return dets.new_empty(num_kept, dtype=torch.long)

    torch.library.register_fake("torchvision::nms", fake_nms, allow_override=True)
    _NMS_FAKE_FIXED = True


def topk_pairs(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``k`` highest-scoring (location, class) pairs of ``scores``.

    Args:
        scores: (M, C) float per-location class scores; M and C static.
        k: pairs to take (clipped to M * C at trace time, so the output shape is static).
    Returns:
        (scores (k,), location index (k,) int64, class index (k,) int64), by decreasing score.
    """
    num_classes = scores.shape[1]
    k = min(int(k), scores.shape[0] * num_classes)
    top, flat = scores.flatten().topk(k)
    return top, torch.div(flat, num_classes, rounding_mode="floor"), flat % num_classes


def nms_keep(boxes: Tensor, scores: Tensor, labels: Tensor, *, iou_thr: float, score_thr: float,
             max_dets: int) -> Tensor:
    """Class-wise greedy NMS over every candidate, then the survivors with score > ``score_thr``.

    Classes are separated by offsetting each box by ``label * (max coordinate + 1)`` (torchvision's
    ``batched_nms`` coordinate trick), without its empty-input branch, which does not trace.

    Args:
        boxes: (N, 4) float xyxy pixels, N >= 1 static. scores: (N,) float. labels: (N,) int64.
        iou_thr: IoU > ``iou_thr`` suppresses. score_thr: kept scores are > this. max_dets: at most this many.
    Returns:
        (K,) int64 indices into the inputs, by decreasing score, K <= max_dets (data-dependent).
    """
    offsets = labels.to(boxes.dtype) * (boxes.max() + 1)
    keep = nms(boxes + offsets[:, None], scores, float(iou_thr))
    keep = keep[scores[keep] > score_thr]
    return keep[:max_dets]
