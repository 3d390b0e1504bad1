"""CPV inference: snap the corners of boxes from the coarser levels to the corner heatmap maxima (spec §5
"Inference")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def heatmap_level(box_level: int) -> int | None:
    """The heatmap level whose corners refine boxes of ``box_level``: none for level 0 (stride 8), level 0 for
    box levels 1-2, level 1 for levels >= 3 (reference ``_get_bboxes_single``)."""
    if box_level == 0:
        return None
    return 0 if box_level in (1, 2) else 1


def select_corner(score_logits: Tensor, x: Tensor, y: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    """The heatmap cell a corner snaps to: the arg-max of sigmoid(score) in the 2x2 window whose top-left cell is
    floor(corner / stride), clamped to the (H - 1, W - 1) windows.

    Args:
        score_logits: (H, W) corner heatmap logits of one image, H, W >= 2.
        x, y: (M,) corner coordinates, pixels.
        stride: the heatmap's stride, pixels.
    Returns:
        (M,) int64 column and row of the selected cell.
    """
    h, w = score_logits.shape
    _, index = F.max_pool2d_with_indices(score_logits.sigmoid()[None, None], kernel_size=2, stride=1)
    index = index[0, 0]  # (H - 1, W - 1) flat index into (H, W)
    col = torch.floor((x / stride).clamp(0, w - 2)).long()
    row = torch.floor((y / stride).clamp(0, h - 2)).long()
    flat = index[row, col]
    return flat % w, torch.div(flat, w, rounding_mode="floor")


def snap_corners(boxes: Tensor, levels: Tensor, scores: list[Tensor], offsets: list[Tensor], strides: list[int],
                 image_size: tuple[int, int]) -> Tensor:
    """Replace the corners of boxes from levels >= 1 by heatmap corners.

    A top-left corner becomes ``((x_c + off_x), (y_c + off_y)) * stride_hm`` at the cell (x_c, y_c) chosen by
    :func:`select_corner` on the top-left heatmap (bottom-right alike), clamped to the image. Heatmap scores are
    not used for rescoring (the reference computes and drops them, spec §11.9).

    Args:
        boxes: (M, 4) xyxy input-frame pixels, clamped to the image.
        levels: (M,) int64 FPN level index of each box (0 = finest).
        scores: per level (2, H_l, W_l) corner logits of this image, channels (top-left, bottom-right).
        offsets: per level (4, H_l, W_l) corner offsets, channels (tl_x, tl_y, br_x, br_y), cells.
        strides: per level stride, pixels.
        image_size: (H, W) of the unpadded input image, pixels.
    Returns:
        (M, 4) boxes (a new tensor).
    Source: LSNet spec §5 "Inference" (reference ``lscpvnet_head.py`` ``_get_bboxes_single``).
    """
    out = boxes.clone()
    h_img, w_img = image_size
    for lv in levels.unique().tolist():
        hm = heatmap_level(lv)
        if hm is None or hm >= len(scores) or min(scores[hm].shape[-2:]) < 2:
            continue
        sel = (levels == lv).nonzero().squeeze(1)
        s = strides[hm]
        for corner, (cx, cy) in enumerate(((0, 1), (2, 3))):  # top-left, bottom-right
            col, row = select_corner(scores[hm][corner], boxes[sel, cx], boxes[sel, cy], s)
            off = offsets[hm][2 * corner: 2 * corner + 2, row, col]  # (2, m) (x, y)
            out[sel, cx] = ((col.to(boxes.dtype) + off[0]) * s).clamp(0, w_img)
            out[sel, cy] = ((row.to(boxes.dtype) + off[1]) * s).clamp(0, h_img)
    return out
