"""LSNet "cross" landmark vectors: encode offsets to (up, down, left, right) and decode them back.

A landmark is stored relative to its anchor point as 4 non-negative magnitudes in the channel order
(up, down, left, right) — the y pair first, then the x pair (LSNet spec §1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def encode_cross_targets(offsets: Tensor, alpha: float = 0.2) -> Tensor:
    """Encode signed landmark offsets as cross-IoU targets.

    The slot in the direction of the offset gets ``|d|``; the opposite slot of the same pair gets
    ``alpha * |d|``. An offset of exactly 0 counts as the positive direction (down / right).

    Args:
        offsets: (..., K, 2) float (dx, dy) = landmark - anchor, any unit.
        alpha: fraction of ``|d|`` given to the opposite slot (0.2 in the reference).
    Returns:
        (..., K, 4) float (up, down, left, right), same unit.
    Source: LSNet spec §1 (example: (dx, dy) = (3, -2) -> (2, 0.4, 0.6, 3)).
    """
    dx, dy = offsets[..., 0], offsets[..., 1]
    ay, ax = dy.abs(), dx.abs()
    neg_y, neg_x = dy < 0, dx < 0
    up = torch.where(neg_y, ay, alpha * ay)
    down = torch.where(neg_y, alpha * ay, ay)
    left = torch.where(neg_x, ax, alpha * ax)
    right = torch.where(neg_x, alpha * ax, ax)
    return torch.stack([up, down, left, right], dim=-1)


def decode_cross_vectors(vectors: Tensor) -> Tensor:
    """Turn cross vectors into signed (dx, dy) offsets.

    Per pair the larger magnitude wins: ``up >= down`` gives ``dy = -up``, else ``dy = +down`` (ties go to the
    first slot, as ``torch.max`` does in the reference); likewise left/right for ``dx``.

    Args:
        vectors: (..., K, 4) non-negative (up, down, left, right) magnitudes.
    Returns:
        (..., K, 2) float (dx, dy), same unit as ``vectors``.
    Source: LSNet spec §1 (decode rule).
    """
    up, down, left, right = vectors.unbind(-1)
    dy = torch.where(up >= down, -up, down)
    dx = torch.where(left >= right, -left, right)
    return torch.stack([dx, dy], dim=-1)


def decode_landmarks(vectors: Tensor, points: Tensor, stride: Tensor | float) -> Tensor:
    """Landmark coordinates from predicted cross vectors.

    Args:
        vectors: (N, K, 4) non-negative (up, down, left, right) magnitudes, feature-stride units.
        points: (N, 2) anchor points, xy pixels.
        stride: (N,) stride of each anchor's FPN level (or one float), pixels.
    Returns:
        (N, K, 2) landmarks, xy pixels.
    Source: LSNet spec §1, §6.3.
    """
    stride = torch.as_tensor(stride, dtype=vectors.dtype, device=vectors.device)
    if stride.dim() == 1:
        stride = stride[:, None, None]
    return points[:, None, :] + decode_cross_vectors(vectors) * stride


def extreme_points_to_boxes(points: Tensor) -> Tensor:
    """Box of the 4 extreme (or border mid-) points (top, left, bottom, right).

    Args:
        points: (..., K >= 4, 2) xy; the first 4 are top, left, bottom, right; the rest (centre) is ignored.
    Returns:
        (..., 4) xyxy = (x of left, y of top, x of right, y of bottom).
    Source: LSNet spec §1 (``extreme_points2bbox``).
    """
    return torch.stack([points[..., 1, 0], points[..., 0, 1], points[..., 3, 0], points[..., 2, 1]], dim=-1)


def points_to_boxes(points: Tensor) -> Tensor:
    """Min/max box of a point set.

    Args:
        points: (..., P, 2) xy.
    Returns:
        (..., 4) xyxy.
    Source: LSNet spec §1 (``vectors2bbox``).
    """
    lo, hi = points.min(dim=-2).values, points.max(dim=-2).values
    return torch.cat([lo, hi], dim=-1)


def landmarks_to_boxes(points: Tensor, box_from: str) -> Tensor:
    """Box of decoded landmarks, the trailing centre landmark excluded.

    Args:
        points: (..., K, 2) xy landmarks whose last entry is the centre.
        box_from: ``"extreme"`` (first 4 are top/left/bottom/right) or ``"minmax"`` (all but the centre).
    Returns:
        (..., 4) xyxy.
    Raises:
        ValueError: unknown ``box_from``.
    """
    if box_from == "extreme":
        return extreme_points_to_boxes(points)
    if box_from == "minmax":
        return points_to_boxes(points[..., :-1, :])
    raise ValueError(f"box_from must be 'extreme' or 'minmax', got {box_from!r}")
