"""The ``coco`` evaluator on imperfect detections against AP values derived by hand (no data files needed).

Ground truth (COCO xywh, continuous pixels), two images of 100 x 100, category ids 3 and 7 (labels 0 and 1, so
the label -> category mapping is exercised too):

    image 1, cat 3:  G1 = [0, 0, 10, 10]   G2 = [50, 50, 10, 10]   G3 = [0, 50, 10, 10]
    image 2, cat 7:  G4 = [20, 20, 20, 20]

Detections (xyxy in the Predictions, written here as xywh):

    image 1, cat 3:  D1 = [0, 0, 10, 10] score 0.9       IoU(D1, G1) = 1
                     D2 = [50, 50, 10, 6.2] score 0.8    IoU(D2, G2) = 62 / 100 = 0.62
                     D3 = [80, 0, 10, 10] score 0.7      overlaps nothing (false positive at every threshold)
    image 2, cat 7:  D4 = [20, 20, 20, 14.4] score 0.6   IoU(D4, G4) = 288 / 400 = 0.72

No IoU equals a threshold of 0.50:0.05:0.95, so no tie decides a match. COCOeval's AP at one IoU threshold t is
the mean, over the 101 recall thresholds r = 0, 0.01, ..., 1, of the interpolated precision at the first rank
whose recall >= r (0 when recall never reaches r); AP is the mean over categories with ground truth.

Category 3 (3 ground-truth boxes), detections in score order D1, D2, D3:
  t in {0.50, 0.55, 0.60} (3 thresholds): TP, TP, FP -> recall 1/3, 2/3, 2/3; precision 1, 1, 2/3.
      Interpolated precision 1 up to recall 2/3: r = 0.00..0.66 (67 values) give 1, r >= 0.67 give 0.
      AP_t = 67 / 101.
  t in {0.65, ..., 0.95} (7 thresholds): TP, FP, FP -> recall 1/3 everywhere; precision 1, 1/2, 1/3.
      r = 0.00..0.33 (34 values) give 1, the rest 0. AP_t = 34 / 101.
  AP50 = 67/101, AP75 = 34/101, AP = (3 * 67 + 7 * 34) / (10 * 101) = 439 / 1010.
  Recall (AR100): 2/3 at 3 thresholds, 1/3 at 7 -> (3 * 2/3 + 7 * 1/3) / 10 = 13 / 30.
Category 7 (1 ground-truth box), one detection D4:
  t in {0.50, ..., 0.70} (5 thresholds): TP -> precision 1 at recall 1: AP_t = 101 / 101 = 1.
  t in {0.75, ..., 0.95} (5 thresholds): FP -> recall 0: AP_t = 0.
  AP50 = 1, AP75 = 0, AP = 5 / 10. Recall: 1 at 5 thresholds, 0 at 5 -> AR100 = 1/2.
Mean over the two categories:
  AP50 = (67/101 + 1) / 2 = 84/101;  AP75 = (34/101 + 0) / 2 = 17/101;
  AP = (439/1010 + 1/2) / 2 = 944/2020;  AR100 = (13/30 + 1/2) / 2 = 14/30.
All objects are small (area < 32^2), so APs = AP and APm, APl are -1 (no ground truth in those ranges).
"""

from __future__ import annotations

import pytest
import torch

from lsvr_core.structures import Predictions
from lsvr_data.coco import quiet_coco
from lsvr_data.coco_eval import build_coco_evaluator
from lsvr_data.config import CocoEvaluatorConfig

GT = [(1, 3, [0, 0, 10, 10]), (1, 3, [50, 50, 10, 10]), (1, 3, [0, 50, 10, 10]), (2, 7, [20, 20, 20, 20])]
DETS = {1: [([0, 0, 10, 10], 0.9, 0), ([50, 50, 10, 6.2], 0.8, 0), ([80, 0, 10, 10], 0.7, 0)],
        2: [([20, 20, 20, 14.4], 0.6, 1)]}


class HandDataset:
    """The two-image ground truth above, in the form the coco evaluator reads."""

    classes = ["square", "wide"]
    label_to_cat_id = [3, 7]

    def coco_gt(self):  # noqa: ANN201
        anns = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3],
                 "iscrowd": 0} for i, (img, cat, box) in enumerate(GT)]
        return quiet_coco({
            "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in (1, 2)],
            "annotations": anns,
            "categories": [{"id": 3, "name": "square"}, {"id": 7, "name": "wide"}],
        })


def predictions(image_id: int) -> Predictions:
    dets = DETS[image_id]
    boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _, _ in dets], dtype=torch.float32)
    return Predictions(boxes, torch.tensor([s for _, s, _ in dets]), torch.tensor([lb for _, _, lb in dets]),
                       image_id, frame="original")


def test_ap_of_imperfect_detections_equals_the_hand_derivation() -> None:
    ev = build_coco_evaluator(CocoEvaluatorConfig(per_class=True), dataset=HandDataset(), task="bbox")
    ev.process([predictions(1), predictions(2)])
    m = ev.evaluate()
    # float32 boxes: IoUs differ from the exact fractions by ~1e-7, far from any threshold
    assert m["bbox/AP50"] == pytest.approx(84 / 101, abs=1e-6)
    assert m["bbox/AP75"] == pytest.approx(17 / 101, abs=1e-6)
    assert m["bbox/AP"] == pytest.approx(944 / 2020, abs=1e-6)
    assert m["bbox/AR100"] == pytest.approx(14 / 30, abs=1e-6)
    assert m["bbox/APs"] == pytest.approx(944 / 2020, abs=1e-6)
    assert m["bbox/APm"] == -1.0 and m["bbox/APl"] == -1.0
    assert m["bbox/AP_square"] == pytest.approx(439 / 1010, abs=1e-6)
    assert m["bbox/AP_wide"] == pytest.approx(0.5, abs=1e-6)


def test_one_category_alone() -> None:
    """Only image 1 processed: category 7 has no ground truth there and drops out of the mean."""
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=HandDataset(), task="bbox")
    ev.process([predictions(1)])
    m = ev.evaluate()
    assert m["bbox/AP50"] == pytest.approx(67 / 101, abs=1e-6)
    assert m["bbox/AP75"] == pytest.approx(34 / 101, abs=1e-6)
    assert m["bbox/AP"] == pytest.approx(439 / 1010, abs=1e-6)
