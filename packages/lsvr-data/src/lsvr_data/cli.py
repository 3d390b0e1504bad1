"""``lsvr eval-results GT_JSON RESULTS_JSON --iou-type bbox|segm|keypoints [--backend NAME] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

from lsvr_core.api import DataError
from lsvr_data.coco import load_json, quiet_coco
from lsvr_data.coco_eval import run_cocoeval


def eval_results(gt_json: str, results_json: str, iou_type: str, as_json: bool = False, backend: str = "auto") -> int:
    """Print COCOeval's stats by name (AP, AP50, ... ; keypoints use their own 10 names).

    ``backend`` selects the COCOeval implementation (:mod:`lsvr_data.coco_backends`).

    Raises:
        DataError: a file is missing or malformed, or the results do not match the ground truth.
    """
    gt_path, res_path = Path(gt_json), Path(results_json)
    coco_gt = quiet_coco(load_json(gt_path))
    if not res_path.is_file():
        raise DataError(f"results file not found: {res_path}")
    try:
        results = json.loads(res_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"results file {res_path} is not valid JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(results, list):
        raise DataError(f"results file {res_path}: expected a JSON list of detections")
    unknown = {r.get("image_id") for r in results if isinstance(r, dict)} - set(coco_gt.getImgIds())
    if unknown:
        raise DataError(f"results file {res_path}: image ids not in {gt_path}: {sorted(unknown)[:5]}")
    try:
        stats, _ = run_cocoeval(coco_gt, results, iou_type, backend=backend)
    except (KeyError, AssertionError, IndexError, TypeError) as err:
        raise DataError(f"cannot evaluate {res_path} as {iou_type} results: {type(err).__name__}: {err}") from None
    if as_json:
        print(json.dumps(stats))
    else:
        for name, value in stats.items():
            print(f"{iou_type:<9} {name:<6} {value:.3f}")
    return 0
