"""The ``voc`` evaluator against an independent restatement of the VOC devkit, written here (no lsvr code).

The oracle follows VOCevaldet.m and VOCap.m of the VOC devkit: boxes are 1-based inclusive integer pixels and
areas count "+1"; per class, detections in decreasing confidence take the ground-truth box of their image with
the largest overlap (difficult boxes included in the search); overlap above the threshold and the box not
difficult and not yet detected -> true positive; not difficult but already detected -> false positive;
difficult -> neither; overlap too small -> false positive. Recall divides by the non-difficult boxes.
VOC2007 AP: mean over t = 0, 0.1, ..., 1 of the largest precision at recall >= t (0 if none).
VOC2010+ AP: area under the precision envelope (precision made non-increasing from the right), summed where
recall changes. lsvr's boxes are continuous pixels: continuous [x1, x2] is inclusive [x1 + 1, x2], which gives
the same IoU (see lsvr_data.voc). The data is random integer boxes, so no overlap equals a threshold (the
devkit uses >=, lsvr >; they differ only on ties), and each class has 3 or 7 non-difficult boxes, so no recall
value is a multiple of 0.1 other than 0 and 1 (no rounding tie at the 11-point thresholds).
"""

from __future__ import annotations

import random

import pytest
import torch

from lsvr_core.structures import Predictions, Targets
from lsvr_data.config import VocEvaluatorConfig
from lsvr_data.fields import DIFFICULT
from lsvr_data.voc_eval import build_voc_evaluator

CLASSES = ["cat", "dog", "bird"]


# ----------------------------------------------------------------------------------- the devkit, restated
def devkit_overlap(det: tuple[int, int, int, int], gt: tuple[int, int, int, int]) -> float:
    """VOCevaldet.m overlap of two 1-based inclusive boxes (0 when they do not intersect)."""
    iw = min(det[2], gt[2]) - max(det[0], gt[0]) + 1
    ih = min(det[3], gt[3]) - max(det[1], gt[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (det[2] - det[0] + 1) * (det[3] - det[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - iw * ih
    return iw * ih / union


def devkit_ap(dets: list, gts: list, cls: int, threshold: float, voc2007: bool) -> float:
    """AP of class ``cls``. dets: (image, class, confidence, box); gts: (image, class, box, difficult)."""
    mine = sorted((d for d in dets if d[1] == cls), key=lambda d: -d[2])
    truth = [g for g in gts if g[1] == cls]
    npos = sum(1 for g in truth if not g[3])
    detected = [False] * len(truth)
    tp, fp = [], []
    for image, _, _, box in mine:
        ovmax, jmax = -1.0, -1
        for j, (g_image, _, g_box, _) in enumerate(truth):
            if g_image == image:
                ov = devkit_overlap(box, g_box)
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= threshold:
            if truth[jmax][3]:  # difficult: neither true nor false positive
                tp.append(0)
                fp.append(0)
            elif not detected[jmax]:
                detected[jmax] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    rec, prec, ctp, cfp = [], [], 0, 0
    for a, b in zip(tp, fp, strict=True):
        ctp, cfp = ctp + a, cfp + b
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp) if ctp + cfp > 0 else 0.0)
    if voc2007:
        ap = 0.0
        for i in range(11):
            t = i / 10
            ps = [p for r, p in zip(rec, prec, strict=True) if r >= t]
            ap += (max(ps) if ps else 0.0) / 11
        return ap
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


# ----------------------------------------------------------------------------------- data and evaluator input
class ListDataset:
    """Ground truth held as 1-based inclusive boxes, served as lsvr Targets (continuous pixels)."""

    classes = CLASSES

    def __init__(self, gts: list, image_ids: list[int]) -> None:
        self.gts, self.image_ids = gts, image_ids

    def index_of(self, image_id: int) -> int:
        return self.image_ids.index(image_id)

    def targets(self, index: int) -> Targets:
        image_id = self.image_ids[index]
        mine = [g for g in self.gts if g[0] == image_id]
        boxes = torch.tensor([[b[0] - 1, b[1] - 1, b[2], b[3]] for _, _, b, _ in mine], dtype=torch.float64)
        t = Targets(boxes.reshape(-1, 4), torch.tensor([c for _, c, _, _ in mine], dtype=torch.int64), image_id,
                    (500, 500), (500, 500), iscrowd=torch.zeros(len(mine), dtype=torch.bool))
        t.extras.add(DIFFICULT, torch.tensor([d for *_, d in mine], dtype=torch.bool))
        return t


def lsvr_metrics(gts: list, dets: list, image_ids: list[int], voc2007: bool) -> dict[str, float]:
    ev = build_voc_evaluator(VocEvaluatorConfig(use_07_metric=voc2007, per_class=True),
                             dataset=ListDataset(gts, image_ids), task="bbox")
    for image_id in image_ids:
        mine = [d for d in dets if d[0] == image_id]
        boxes = torch.tensor([[b[0] - 1, b[1] - 1, b[2], b[3]] for *_, b in mine], dtype=torch.float64)
        ev.process([Predictions(boxes.reshape(-1, 4), torch.tensor([s for _, _, s, _ in mine]),
                                torch.tensor([c for _, c, _, _ in mine], dtype=torch.int64), image_id,
                                frame="original")])
    return ev.evaluate()


def random_case(seed: int) -> tuple[list, list, list[int]]:
    """6 images; per class 3 or 7 non-difficult boxes plus 1-2 difficult ones; detections: jittered copies of
    ground truth (some twice: duplicates), detections of difficult boxes and background boxes."""
    rng = random.Random(seed)
    image_ids = [11, 12, 13, 14, 15, 16]
    gts, dets = [], []

    def box() -> tuple[int, int, int, int]:
        x, y = rng.randint(1, 400), rng.randint(1, 400)
        return x, y, x + rng.randint(15, 90), y + rng.randint(15, 90)

    for cls, npos in enumerate((3, 7, 3)):
        for difficult in [False] * npos + [True] * rng.randint(1, 2):
            gts.append((rng.choice(image_ids), cls, box(), difficult))
    for image, cls, (x1, y1, x2, y2), _ in gts:
        for _ in range(rng.choice((0, 1, 1, 2))):
            j = [rng.randint(-12, 12) for _ in range(4)]
            jittered = (x1 + j[0], y1 + j[1], max(x2 + j[2], x1 + j[0] + 2), max(y2 + j[3], y1 + j[1] + 2))
            dets.append((image, cls, rng.random(), jittered))
    for _ in range(10):
        dets.append((rng.choice(image_ids), rng.randrange(3), rng.random(), box()))
    return gts, dets, image_ids


# ----------------------------------------------------------------------------------- tests
def test_hand_case_with_a_difficult_box() -> None:
    """One class, image 1: A (1,1)-(10,10), B (21,21)-(30,30), difficult D (41,41)-(50,50); image 2: C (1,1)-(10,10).
    Detections by confidence: a on A (TP), d on D (ignored), a2 on A again (duplicate: FP), c shifted by 5 px on C
    (overlap 5*10 / (100 + 100 - 50) = 1/3 < 0.5: FP), b on B (TP).
    TP/FP over the 4 counted detections: TP, FP, FP, TP -> recall 1/3, 1/3, 1/3, 2/3; precision 1, 1/2, 1/3, 1/2.
    VOC2007: t = 0, 0.1, 0.2, 0.3 -> 1 (4 values); t = 0.4, 0.5, 0.6 -> 1/2 (3 values); t >= 0.7 -> 0.
             AP = (4 * 1 + 3 * 0.5) / 11 = 5.5 / 11 = 0.5.
    VOC2010: envelope 1 up to recall 1/3, then 1/2 up to 2/3: AP = 1/3 * 1 + 1/3 * 1/2 = 0.5 as well;
    with the 0.5 threshold and this data both rules agree, and the devkit restatement must say the same."""
    gts = [(1, 0, (1, 1, 10, 10), False), (1, 0, (21, 21, 30, 30), False), (1, 0, (41, 41, 50, 50), True),
           (2, 0, (1, 1, 10, 10), False)]
    dets = [(1, 0, 0.9, (1, 1, 10, 10)), (1, 0, 0.8, (41, 41, 50, 50)), (1, 0, 0.7, (1, 1, 10, 10)),
            (2, 0, 0.6, (6, 1, 15, 10)), (1, 0, 0.5, (21, 21, 30, 30))]
    for voc2007 in (True, False):
        assert devkit_ap(dets, gts, 0, 0.5, voc2007) == pytest.approx(0.5)
        assert lsvr_metrics(gts, dets, [1, 2], voc2007)["voc/mAP50"] == pytest.approx(0.5)


@pytest.mark.parametrize("voc2007", [True, False], ids=["voc2007_11point", "voc2010_area"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_detections_match_the_devkit(seed: int, voc2007: bool) -> None:
    gts, dets, image_ids = random_case(seed)
    m = lsvr_metrics(gts, dets, image_ids, voc2007)
    for threshold, key in ((0.5, "voc/mAP50"), (0.75, "voc/mAP75")):
        per_class = [devkit_ap(dets, gts, c, threshold, voc2007) for c in range(len(CLASSES))]
        assert m[key] == pytest.approx(sum(per_class) / len(per_class), abs=1e-9), (key, per_class)
        if threshold == 0.5:
            for name, ap in zip(CLASSES, per_class, strict=True):
                assert m[f"voc/AP50_{name}"] == pytest.approx(ap, abs=1e-9), name
    assert 0.1 < m["voc/mAP50"] < 1.0  # neither trivial nor perfect: duplicates, misses and background boxes
