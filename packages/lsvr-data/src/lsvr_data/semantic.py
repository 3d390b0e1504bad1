"""Per-image semantic maps (COCO-stuff ``stuffthingmaps``: one 8-bit PNG per image, value = class index,
255 = unlabelled) for heads with a semantic branch (HTC). Read in the file's pixel grid and brought to the
input frame with the image's own resize and flip (nearest neighbour), so they stay aligned with the image."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from lsvr_core.api import DataError, Targets


def semantic_map(folder: Path, image_file: Path | str, orig_size: tuple[int, int], meta: Targets) -> Tensor:
    """The semantic map of one image in its input frame.

    Args:
        folder: the ``stuffthingmaps/<split>`` folder.
        image_file: the image's path; the map is ``folder / <stem>.png``.
        orig_size: (H, W) of the image file.
        meta: the image's transformed :class:`Targets` (``image_size``, ``flipped``).
    Returns:
        (H', W') uint8 at ``meta.image_size``.
    Raises:
        DataError: the PNG is missing, unreadable or not the image's size.
    """
    path = Path(folder) / f"{Path(image_file).stem}.png"
    if not path.is_file():
        raise DataError(f"semantic map {path} not found (data semantic_dir: one stuffthingmaps PNG per image)")
    try:
        label = decode_image(str(path), mode=ImageReadMode.GRAY)  # (1, H, W) uint8
    except RuntimeError as err:
        raise DataError(f"semantic map {path}: cannot decode ({err})") from err
    if tuple(label.shape[-2:]) != tuple(orig_size):
        raise DataError(f"semantic map {path}: size {tuple(label.shape[-2:])} differs from its image's {orig_size}")
    out = F.interpolate(label[None].float(), size=tuple(meta.image_size), mode="nearest")[0, 0]
    if meta.flipped:
        out = out.flip(-1)
    return out.to(torch.uint8)


def write_things_maps(ann_file: Path, out_dir: Path, image_ids: list[int] | None = None) -> list[Path]:
    """Write things-only semantic maps derived from COCO instance annotations, in the stuffthingmaps
    convention (8-bit PNG per image, pixel = COCO category id - 1, 255 where no non-crowd instance is).
    Later (larger-area-first order: smaller instances drawn last) instances win overlaps. A stand-in for
    COCO-stuff where only instance annotations are available (tests, coco_mini).

    Returns:
        the written paths.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from torchvision.io import write_png

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id in image_ids or sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        label = torch.full((info["height"], info["width"]), 255, dtype=torch.uint8)
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        for ann in sorted(anns, key=lambda a: -a["area"]):
            mask = torch.from_numpy(coco.annToMask(ann)).bool()
            label[mask] = ann["category_id"] - 1
        path = out_dir / f"{Path(info['file_name']).stem}.png"
        write_png(label[None], str(path))
        written.append(path)
    return written
