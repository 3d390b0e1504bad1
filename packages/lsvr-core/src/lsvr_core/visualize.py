"""Drawing predictions on images with ``torchvision.utils`` (boxes with class and score, masks, contour
polygons, keypoint skeletons), saved as PNG. Used by ``lsvr predict`` and the sample images a run logs.

Coordinates are xy pixels of the image being drawn on (the original frame for the engine's predictions).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

from lsvr_core.structures import Predictions

# COCO person skeleton (the ``skeleton`` of person_keypoints json, converted to 0-based keypoint indices).
COCO_SKELETON: list[tuple[int, int]] = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
    (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255)]


def color(label: int) -> tuple[int, int, int]:
    """A stable colour per class index."""
    return _PALETTE[int(label) % len(_PALETTE)]


def draw_predictions(image: Tensor, preds: Predictions, class_names: list[str] | None = None,
                     score_thresh: float = 0.3, mask_thresh: float = 0.5, keypoint_thresh: float = 0.05) -> Tensor:
    """Draw the detections of one image.

    Args:
        image: (3, H, W) uint8 RGB.
        preds: detections in the pixel frame of ``image``; those with ``score < score_thresh`` are skipped.
        class_names: names by label index (``"#<label>"`` when missing).
        mask_thresh: masks (probabilities) are drawn where ``> mask_thresh``.
        keypoint_thresh: keypoints (x, y, score) are drawn where ``score > keypoint_thresh``.
    Returns:
        (3, H, W) uint8 drawn copy.
    Raises:
        ValueError: ``image`` is not (3, H, W) uint8.
    """
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"draw_predictions needs a (3, H, W) uint8 image, got {tuple(image.shape)} {image.dtype}")
    out = image.cpu()
    keep = preds.scores.cpu() >= score_thresh
    if not bool(keep.any()):
        return out.clone()
    labels = preds.labels.cpu()[keep].tolist()
    colors = [color(lab) for lab in labels]
    h, w = out.shape[-2:]
    if preds.masks is not None and len(preds.masks):
        masks = preds.masks.cpu()[keep].float()
        if masks.shape[-2:] != (h, w):
            masks = F.interpolate(masks[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        out = draw_segmentation_masks(out, masks > mask_thresh, alpha=0.45, colors=colors)
    if preds.contours is not None and len(preds.contours):
        out = _draw_polygons(out, preds.contours.cpu()[keep].float(), colors)
    if preds.keypoints is not None and len(preds.keypoints):
        kps = preds.keypoints.cpu()[keep].float()
        skeleton = COCO_SKELETON if kps.shape[1] == 17 else None
        for inst, c in zip(kps, colors, strict=True):  # white skeleton lines, keypoints in the class colour
            out = draw_keypoints(out, inst[None, :, :2], connectivity=skeleton, colors=c, radius=3, width=2,
                                 visibility=inst[None, :, 2] > keypoint_thresh)
    names = [class_names[lab] if class_names and 0 <= lab < len(class_names) else f"#{lab}" for lab in labels]
    captions = [f"{n} {s:.2f}" for n, s in zip(names, preds.scores.cpu()[keep].tolist(), strict=True)]
    boxes = preds.boxes.cpu()[keep].float()
    out = draw_bounding_boxes(out, boxes, colors=colors, width=2)
    return draw_labels(out, boxes, captions, colors)


def draw_labels(image: Tensor, boxes: Tensor, captions: list[str], colors: list[tuple[int, int, int]],
                font_size: int = 12) -> Tensor:
    """Caption each box on a filled tag just outside it: above the box, or below it at the top edge.

    torchvision's ``draw_bounding_boxes`` writes labels inside the box, over the object it names; this draws
    them outside (Pillow, as torchvision does), clipped to the image.

    Args:
        image: (3, H, W) uint8.
        boxes: (N, 4) float xyxy pixels of ``image``.
        captions: N strings.
        colors: N RGB tag colours (text is black or white, whichever contrasts).
    Returns:
        (3, H, W) uint8 drawn copy.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    h, w = image.shape[-2:]
    for (x1, y1, _, y2), text, c in zip(boxes.tolist(), captions, colors, strict=True):
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        ty = y1 - th - 1 if y1 - th - 1 >= 0 else min(y2 + 1, h - th)
        tx = min(max(x1, 0), max(w - tw, 0))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=c)
        ink = (0, 0, 0) if sum(c) > 382 else (255, 255, 255)
        draw.text((tx + 2 - left, ty + 2 - top), text, fill=ink, font=font)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()


def _draw_polygons(image: Tensor, polygons: Tensor, colors: list[tuple[int, int, int]]) -> Tensor:
    """Closed polygon outlines (torchvision has no polygon drawer; Pillow, which it draws with, does).

    Args:
        image: (3, H, W) uint8.
        polygons: (N, P, 2) float xy pixels.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    draw = ImageDraw.Draw(canvas)
    for poly, c in zip(polygons.tolist(), colors, strict=True):
        draw.polygon([(x, y) for x, y in poly], outline=c, width=2)
    return torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write a (3, H, W) uint8 image as PNG (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(image.cpu().permute(1, 2, 0).contiguous().numpy()).save(path, format="PNG")
    return path


def read_image(path: str | Path) -> Tensor:
    """Decode an image file as (3, H, W) uint8 RGB (Pillow; EXIF orientation is not applied).

    Raises:
        OSError: the file is missing or not a readable image.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def resize_to(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a (3, h, w) uint8 image to ``size`` = (H, W) (bilinear, antialiased); no-op when equal."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.round().clamp(0, 255).to(torch.uint8)
