#!/usr/bin/env python
"""Add LSNet's ``extreme_points`` field to every annotation of a COCO instances JSON (the reference's
``tools/gen_coco_lsvr.py`` step, LSNet spec §7.1).

Each annotation gets ``extreme_points`` = 10 floats ``[x_t, y_t, x_l, y_l, x_b, y_b, x_r, y_r, x_c, y_c]``:
top, left, bottom, right extreme points (ExtremeNet's 2 % band rule, from the polygon vertices, or from the
mask pixels for RLE annotations) and the centre of the annotation's bbox. Everything else is copied unchanged.
The ``coco`` dataset reads the field when present (otherwise it computes the same points on the fly).

Usage:
    python tools/gen_coco_lsvr.py annotations/instances_val2017.json annotations/instances_lsvr_val2017.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pycocotools import mask as mask_utils

from lsvr_data.landmarks import extreme_points, extreme_points_from_mask, polygons_from_coco


def annotation_extremes(ann: dict, height: int, width: int) -> list[float]:
    """The 10-float ``extreme_points`` value of one COCO annotation.

    Raises:
        ValueError: the annotation has no usable segmentation (empty polygon list or empty mask).
    """
    segm = ann.get("segmentation")
    x, y, w, h = ann["bbox"]
    if isinstance(segm, list) and segm:
        points = extreme_points(polygons_from_coco(segm))
    elif isinstance(segm, dict):
        rle = mask_utils.frPyObjects(segm, height, width) if isinstance(segm.get("counts"), list) else segm
        points = extreme_points_from_mask(mask_utils.decode(rle))
    else:
        raise ValueError("no polygon or RLE segmentation")
    return [float(v) for v in points.reshape(-1)] + [x + w / 2, y + h / 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="COCO instances JSON")
    parser.add_argument("output", type=Path, help="where to write the JSON with extreme_points added")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.input.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        print(f"gen_coco_lsvr: cannot read {args.input}: {err}", file=sys.stderr)
        return 2
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    failed = []
    for ann in data["annotations"]:
        try:
            ann["extreme_points"] = annotation_extremes(ann, *sizes[ann["image_id"]])
        except (KeyError, ValueError) as err:
            failed.append(f"annotation {ann.get('id')}: {err}")
    if failed:
        print(f"gen_coco_lsvr: {len(failed)} annotation(s) in {args.input} failed, e.g. {failed[:3]}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data), encoding="utf-8")
    print(f"wrote {args.output}: {len(data['annotations'])} annotations with extreme_points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
