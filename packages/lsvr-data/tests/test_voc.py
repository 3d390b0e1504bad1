"""The voc dataset and evaluator on voc2012_sample: PROVENANCE.md counts, mAP 1.0 for the ground truth, and
real detections scored like a plain restatement of the VOC devkit loop (1-based inclusive pixels, "+1")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lsvr_core.errors import DataError
from lsvr_core.structures import Predictions
from lsvr_data.coco_eval import build_coco_evaluator
from lsvr_data.config import CocoEvaluatorConfig, VocDatasetConfig, VocEvaluatorConfig
from lsvr_data.voc import VOC_CLASSES, build_voc
from lsvr_data.voc_eval import build_voc_evaluator, voc_ap


@pytest.fixture(scope="module")
def voc(voc_sample: Path):
    return build_voc(VocDatasetConfig(root="VOCdevkit", sets=[("2012", "val")]), root=voc_sample, train=False,
                     task="bbox")


def test_counts_match_provenance(voc) -> None:  # noqa: ANN001
    assert len(voc) == 100 and voc.classes == list(VOC_CLASSES)
    assert sum(len(r) for r in voc.records) == 273
    assert sum(int(r.difficult.sum()) for r in voc.records) == 38
    t = voc.targets(0)  # 2007_000027: person at 1-based (174, 101, 349, 351)
    assert t.boxes.tolist() == [[173.0, 100.0, 349.0, 351.0]] and t.labels.tolist() == [14]
    img, t = voc[0]
    assert img.shape[-2:] == torch.Size(t.image_size) and t.extras.get("difficult") is not None


def test_concatenated_sets(voc_sample: Path) -> None:
    cfg = VocDatasetConfig(root="VOCdevkit", sets=[("2012", "val"), ("2012", "val")])
    ds = build_voc(cfg, root=voc_sample, train=False, task="bbox")
    assert len(ds) == 200 and len({r.image_id for r in ds.records}) == 200


@pytest.mark.parametrize("use_07", [True, False])
def test_gt_as_predictions(voc, use_07: bool) -> None:  # noqa: ANN001
    ev = build_voc_evaluator(VocEvaluatorConfig(use_07_metric=use_07, per_class=True), dataset=voc, task="bbox")
    cev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=voc, task="bbox")
    for i in range(len(voc)):
        t = voc.targets(i)
        p = Predictions(t.boxes, torch.ones(len(t)), t.labels, t.image_id, frame="original")
        ev.process([p])
        cev.process([p])
    m = ev.evaluate()
    assert m["voc/mAP50"] == pytest.approx(1.0) and m["voc/mAP"] == pytest.approx(1.0)
    assert m["voc/AP50_person"] == pytest.approx(1.0) and len([k for k in m if "AP50_" in k]) == 20
    assert cev.evaluate()["bbox/AP"] == pytest.approx(1.0)


def test_voc_ap_hand_computed() -> None:
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # 11-point: recall >= 0..0.5 -> max precision 1 (6 points), >= 0.6..1.0 -> 2/3 (5 points)
    assert voc_ap(rec, prec, True) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # area: 0.5 * 1 + 0.5 * 2/3
    assert voc_ap(rec, prec, False) == pytest.approx(0.5 + 1 / 3)


def devkit_ap(dets, gts, cls, thr, use_07):  # noqa: ANN001, ANN201
    """Plain VOC devkit loop on 1-based inclusive boxes with '+1' areas (the independent oracle)."""
    d = sorted([x for x in dets if x[1] == cls], key=lambda x: -x[2])
    used = {}
    npos = sum(1 for g in gts if g[1] == cls and not g[3])
    tp, fp = [], []
    for img, _, _, b in d:
        best, jbest = -1.0, None
        for j, (gimg, gcls, gb, _diff) in enumerate(gts):
            if gimg != img or gcls != cls:
                continue
            iw = min(b[2], gb[2]) - max(b[0], gb[0]) + 1
            ih = min(b[3], gb[3]) - max(b[1], gb[1]) + 1
            if iw > 0 and ih > 0:
                inter = iw * ih
                union = (b[2] - b[0] + 1) * (b[3] - b[1] + 1) + (gb[2] - gb[0] + 1) * (gb[3] - gb[1] + 1) - inter
                if inter / union > best:
                    best, jbest = inter / union, j
        if best > thr:
            if gts[jbest][3]:
                tp.append(0)
                fp.append(0)
            elif not used.get(jbest):
                used[jbest] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    return voc_ap(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), use_07)


@pytest.mark.parametrize("use_07", [True, False])
def test_real_detections_match_devkit_loop(voc, voc_sample: Path, use_07: bool) -> None:  # noqa: ANN001
    raw = json.loads((voc_sample / "extras" / "coco_dets.json").read_text())
    name_of_cat = {c["id"]: c["name"] for c in raw["categories"]}
    image_of = {img["id"]: img["file_name"] for img in raw["images"]}
    id_of_file = {r.file.name: r.image_id for r in voc.records}
    ev = build_voc_evaluator(VocEvaluatorConfig(use_07_metric=use_07), dataset=voc, task="bbox")
    ev.register_image_ids(r.image_id for r in voc.records)
    dets = []
    for a in raw["annotations"]:
        image_id = id_of_file[image_of[a["image_id"]]]
        x, y, w, h = a["bbox"]
        label = VOC_CLASSES.index(name_of_cat[a["category_id"]])
        ev.process([Predictions(torch.tensor([[x, y, x + w, y + h]]), torch.tensor([a["score"]]),
                                torch.tensor([label]), image_id, frame="original")])
        dets.append((image_id, label, a["score"], (x + 1, y + 1, x + w, y + h)))  # continuous -> 1-based incl.
    gts = []
    for i in range(len(voc)):
        t = voc.targets(i)
        for box, label, diff in zip(t.boxes.tolist(), t.labels.tolist(), t.extra("difficult").tolist(), strict=True):
            gts.append((t.image_id, label, (box[0] + 1, box[1] + 1, box[2], box[3]), diff))
    m = ev.evaluate()
    classes = [c for c in range(20) if any(g[1] == c and not g[3] for g in gts)]
    for thr, key in ((0.5, "voc/mAP50"), (0.75, "voc/mAP75")):
        expected = np.mean([devkit_ap(dets, gts, c, thr, use_07) for c in classes])
        assert m[key] == pytest.approx(expected, abs=1e-9)
    assert 0.05 < m["voc/mAP50"] < 1.0


def test_bad_voc_input(tmp_path: Path) -> None:
    base = tmp_path / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir()
    with pytest.raises(DataError, match="split file not found.*test.txt"):
        build_voc(VocDatasetConfig(check_images=False), root=tmp_path, train=False, task="bbox")
    (base / "ImageSets" / "Main" / "test.txt").write_text("a\n")
    (base / "Annotations" / "a.xml").write_text("<annotation><size><width>10</width>")
    with pytest.raises(DataError, match="a.xml is not valid XML"):
        build_voc(VocDatasetConfig(check_images=False), root=tmp_path, train=False, task="bbox")
    (base / "Annotations" / "a.xml").write_text(
        "<annotation><size><width>10</width><height>10</height></size>"
        "<object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>4</xmax><ymax>9</ymax></bndbox></object>"
        "<object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox>"
        "</object></annotation>")
    ds = build_voc(VocDatasetConfig(check_images=False), root=tmp_path, train=False, task="bbox")
    assert len(ds.records[0]) == 0 and len(ds.bad.skipped) == 2
    with pytest.raises(DataError, match=r"a.xml: annotation 1 \(object #0\): degenerate bbox"):
        build_voc(VocDatasetConfig(check_images=False, on_bad_annotation="error"), root=tmp_path, train=False,
                  task="bbox")
    with pytest.raises(DataError, match="JPEGImages.*a.jpg .*not found"):
        build_voc(VocDatasetConfig(), root=tmp_path, train=False, task="bbox")


def test_landmarks_from_boxes(voc_sample: Path) -> None:
    cfg = VocDatasetConfig(root="VOCdevkit", sets=[("2012", "val")], landmarks=True)
    t = build_voc(cfg, root=voc_sample, train=False, task="bbox").targets(0)
    x1, y1, x2, y2 = t.boxes[0].tolist()
    assert t.extra("extreme_points")[0].tolist() == [[(x1 + x2) / 2, y1], [x1, (y1 + y2) / 2], [(x1 + x2) / 2, y2],
                                            [x2, (y1 + y2) / 2]]
    c = t.extra("contours")[0]
    assert c.shape == (36, 2) and c[:, 0].min() == x1 and c[:, 1].max() == y2


def test_config_accepts_integer_years() -> None:
    assert VocDatasetConfig(sets=[[2007, "trainval"], [2012, "trainval"]]).sets == [("2007", "trainval"),
                                                                                     ("2012", "trainval")]
