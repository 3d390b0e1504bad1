"""The coco dataset and evaluator on coco_mini: PROVENANCE.md counts, ground truth fed back as predictions
scores AP 1.000 (bbox, segm, keypoints), and bad input gives clear errors or counted skips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from lsvr_core.errors import DataError
from lsvr_core.structures import Predictions
from lsvr_data.coco import build_coco
from lsvr_data.coco_eval import STAT_NAMES, build_coco_evaluator
from lsvr_data.config import CocoDatasetConfig, CocoEvaluatorConfig, PipelineConfig

torch.set_num_threads(1)


@pytest.mark.parametrize(("split", "images", "instances", "crowd", "persons"), [
    ("train2017", 80, 739, 8, 172), ("val2017", 79, 624, 5, 118)])
def test_counts_match_provenance(coco_mini: Path, split: str, images: int, instances: int, crowd: int,
                                 persons: int) -> None:
    ds = build_coco(CocoDatasetConfig(split=split), root=coco_mini, train=False, task="bbox")
    assert len(ds) == images and len(ds.aspect_ratios()) == images
    assert sum(len(r) for r in ds.records) == instances
    assert sum(int(r.iscrowd.sum()) for r in ds.records) == crowd
    assert len(ds.classes) == 80 and ds.classes[0] == "person" and ds.label_to_cat_id[-1] == 90
    labels = torch.cat([torch.as_tensor(r.labels) for r in ds.records])
    assert labels.min() >= 0 and labels.max() < 80
    pose = build_coco(CocoDatasetConfig(split=split), root=coco_mini, train=False, task="pose_kbox")
    assert len(pose) == images and sum(len(r) for r in pose.records) == persons
    assert pose.classes == ["person"] and pose.label_to_cat_id == [1]


def test_item_contract(coco_mini: Path) -> None:
    cfg = CocoDatasetConfig(split="val2017", landmarks=True, pipeline=PipelineConfig(flip_prob=0.0))
    ds = build_coco(cfg, root=coco_mini, train=False, task="bbox")
    img, t = ds[0]
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and tuple(img.shape[1:]) == t.image_size
    assert max(t.image_size) <= 1333 and min(t.image_size) <= 800
    assert t.image_id == ds.records[0].image_id and t.orig_size == (ds.records[0].height, ds.records[0].width)
    assert t.boxes.dtype == torch.float32 and t.labels.dtype == torch.int64 and t.iscrowd.dtype == torch.bool
    assert t.extra("extreme_points").shape == (len(t), 4, 2) and t.extra("contours").shape == (len(t), 36, 2)
    assert t.masks is None and t.keypoints is None and not t.flipped


def _feed_gt(ev, ds, task: str, items: bool) -> None:
    for i in range(len(ds)):
        if items:  # through the test pipeline (resize 1333x800) and back with Predictions.to_original
            _, t = ds[i]
        else:
            t = ds.targets(i)
        keep = ~t.iscrowd
        if task.startswith("pose"):  # COCOeval ignores persons without labelled keypoints
            keep &= (t.keypoints[..., 2] > 0).any(1)
        t_keep = t.select(keep)
        pred = Predictions(boxes=t_keep.boxes, scores=torch.ones(len(t_keep)), labels=t_keep.labels,
                           image_id=t.image_id, keypoints=t_keep.keypoints,
                           masks=None if t_keep.masks is None else t_keep.masks.bool())
        ev.process([pred.to_original(t)])


def test_gt_as_predictions_bbox_segm(coco_mini: Path) -> None:
    # task bbox + with_masks: the same masks as task segm, without computing contours nobody uses here
    ds = build_coco(CocoDatasetConfig(split="val2017", with_masks=True), root=coco_mini, train=False, task="bbox")
    assert build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="segm").iou_types == ["bbox", "segm"]
    ev = build_coco_evaluator(CocoEvaluatorConfig(iou_types=["bbox", "segm"], per_class=True), dataset=ds,
                              task="segm")
    _feed_gt(ev, ds, "segm", items=False)
    m = ev.evaluate()
    assert m["bbox/AP"] == pytest.approx(1.0) and m["segm/AP"] == pytest.approx(1.0)
    assert m["bbox/AP75"] == pytest.approx(1.0) and m["segm/AR100"] == pytest.approx(1.0)
    assert {f"bbox/{n}" for n in STAT_NAMES} <= set(m)
    assert m["bbox/AP_person"] == pytest.approx(1.0)


def test_gt_as_predictions_through_pipeline_bbox(coco_mini: Path) -> None:
    ds = build_coco(CocoDatasetConfig(split="val2017"), root=coco_mini, train=False, task="bbox")
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="bbox")
    _feed_gt(ev, ds, "bbox", items=True)
    assert ev.evaluate()["bbox/AP"] == pytest.approx(1.0)


def test_gt_as_predictions_keypoints(coco_mini: Path) -> None:
    ds = build_coco(CocoDatasetConfig(split="val2017"), root=coco_mini, train=False, task="pose_bbox")
    ev = build_coco_evaluator(CocoEvaluatorConfig(iou_types=["keypoints"]), dataset=ds, task="pose_bbox")
    _feed_gt(ev, ds, "pose_bbox", items=True)
    m = ev.evaluate()
    assert m["keypoints/AP"] == pytest.approx(1.0) and m["keypoints/AR"] == pytest.approx(1.0)
    assert set(m) == {f"keypoints/{n}" for n in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm",
                                                 "ARl", "AP_person")}  # per-class AP is on by default
    assert m["keypoints/AP_person"] == pytest.approx(1.0)


def test_evaluator_scores_only_processed_images(coco_mini: Path) -> None:
    ds = build_coco(CocoDatasetConfig(split="val2017"), root=coco_mini, train=False, task="bbox")
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="bbox")
    t = ds.targets(0)
    keep = ~t.iscrowd
    ev.process([Predictions(t.boxes[keep], torch.ones(int(keep.sum())), t.labels[keep], t.image_id,
                            frame="original")])
    assert ev.evaluate()["bbox/AP"] == pytest.approx(1.0)
    # an image registered with zero predictions now counts: its objects are all missed
    t1 = ds.targets(1)
    ev.process([Predictions(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), t1.image_id,
                            frame="original")])
    assert ev.evaluate()["bbox/AR100"] < 1.0
    ev.reset()
    assert ev.evaluate() == {}


def test_evaluator_rejects_input_frame_predictions(coco_mini: Path) -> None:
    ds = build_coco(CocoDatasetConfig(split="val2017"), root=coco_mini, train=False, task="bbox")
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="bbox")
    t = ds.targets(0)
    with pytest.raises(DataError, match="original-frame"):
        ev.process([Predictions(t.boxes, torch.ones(len(t)), t.labels, t.image_id)])


# --- bad input ------------------------------------------------------------------------------------------


def _mini_json(coco_mini: Path, tmp_path: Path, edit=None) -> Path:  # noqa: ANN001
    """A two-image COCO file (val2017 images 0 and 1), optionally edited, written to tmp_path."""
    data = json.loads((coco_mini / "annotations" / "instances_val2017.json").read_text())
    ids = [img["id"] for img in data["images"][:2]]
    data["images"] = data["images"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    if edit:
        edit(data)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _build(ann: Path, coco_mini: Path, policy: str = "skip", train: bool = False, **kw):  # noqa: ANN003, ANN202
    cfg = CocoDatasetConfig(ann_file=str(ann), img_dir=str(coco_mini / "val2017"), on_bad_annotation=policy, **kw)
    return build_coco(cfg, root=Path("/nonexistent"), train=train, task="segm")


def test_missing_and_malformed_annotation_file(coco_mini: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="annotation file not found: .*nope.json"):
        _build(tmp_path / "nope.json", coco_mini)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,}')
    with pytest.raises(DataError, match=r"bad.json is not valid JSON: .* line 1"):
        _build(bad, coco_mini)
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match="missing or invalid 'annotations'"):
        _build(bad, coco_mini)


def test_degenerate_annotations_skip_or_error(coco_mini: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    def edit(data: dict) -> None:
        data["annotations"][0]["bbox"][2] = 0.5  # w < 1
        data["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]  # two points only
        data["annotations"][2]["image_id"] = 123456789  # refers to a missing image

    ann = _mini_json(coco_mini, tmp_path, edit)
    ids = [a["id"] for a in json.loads(ann.read_text())["annotations"][:3]]
    with caplog.at_level(logging.WARNING, logger="lsvr_data"):
        ds = _build(ann, coco_mini)
    skipped_ids = {a for _, a, _ in ds.bad.skipped}
    assert set(ids) <= skipped_ids
    assert "skipped" in caplog.text and str(ids[0]) in caplog.text
    kept = {int(a) for r in ds.records for a in r.ann_ids}
    assert not kept & set(ids)
    with pytest.raises(DataError, match=rf"ann.json: annotation {ids[2]}: refers to image_id 123456789"):
        _build(ann, coco_mini, policy="error")


def test_all_crowd_image_does_not_crash(coco_mini: Path, tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        first = data["images"][0]["id"]
        for a in data["annotations"]:
            if a["image_id"] == first:
                a["iscrowd"] = 1

    ann = _mini_json(coco_mini, tmp_path, edit)
    ds = _build(ann, coco_mini, landmarks=True, with_masks=True)
    img, t = ds[0]
    assert len(t) > 0 and bool(t.iscrowd.all()) and len(t.non_crowd()) == 0
    assert t.extra("contours").shape == (len(t), 36, 2) and t.masks.shape[0] == len(t)
    assert len(_build(ann, coco_mini, train=True)) == 1  # filtered for training


def test_missing_and_corrupt_images(coco_mini: Path, tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["images"][1]["file_name"] = "missing.jpg"

    ann = _mini_json(coco_mini, tmp_path, edit)
    with pytest.raises(DataError, match="1 image file.*missing.jpg"):
        _build(ann, coco_mini, policy="error")
    assert len(_build(ann, coco_mini)) == 1  # skipped with a warning
    ds = _build(ann, coco_mini, check_images=False)
    with pytest.raises(DataError, match=r"missing.jpg \(image id \d+\): file not found"):
        ds[1]
    corrupt = tmp_path / "imgs"
    corrupt.mkdir()
    (corrupt / "missing.jpg").write_bytes(b"not a jpeg")
    cfg = CocoDatasetConfig(ann_file=str(ann), img_dir=str(corrupt), check_images=False)
    ds = build_coco(cfg, root=tmp_path, train=False, task="bbox")
    with pytest.raises(DataError, match="missing.jpg .*cannot decode"):
        ds[1]


def test_pose_task_needs_keypoint_file(coco_mini: Path) -> None:
    cfg = CocoDatasetConfig(split="val2017", ann_file="annotations/instances_val2017.json")
    with pytest.raises(DataError, match="person_keypoints"):
        build_coco(cfg, root=coco_mini, train=False, task="pose_bbox")


@pytest.mark.slow
def test_gen_coco_lsvr_tool_matches_on_the_fly_landmarks(coco_mini: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[3] / "tools" / "gen_coco_lsvr.py"
    out = tmp_path / "instances_lsvr_val2017.json"
    src = coco_mini / "annotations" / "instances_val2017.json"
    subprocess.run([sys.executable, str(tool), str(src), str(out)], check=True, capture_output=True, timeout=300)
    anns = json.loads(out.read_text())["annotations"]
    assert len(anns) == 624 and all(len(a["extreme_points"]) == 10 for a in anns)
    a = anns[0]
    x, y, w, h = a["bbox"]
    assert a["extreme_points"][8:] == pytest.approx([x + w / 2, y + h / 2])
    common = dict(split="val2017", landmarks=True)
    from_file = build_coco(CocoDatasetConfig(ann_file=str(out), **common), root=coco_mini, train=False, task="bbox")
    on_the_fly = build_coco(CocoDatasetConfig(**common), root=coco_mini, train=False, task="bbox")
    for i in range(len(from_file)):
        assert from_file.records[i].extreme_points is not None
        a, b = from_file.targets(i), on_the_fly.targets(i)
        torch.testing.assert_close(a.extra("extreme_points"), b.extra("extreme_points"))


def test_item_errors_name_the_image_and_pickling_drops_gt(coco_mini: Path) -> None:
    import pickle

    ds = build_coco(CocoDatasetConfig(split="val2017"), root=coco_mini, train=False, task="bbox")
    ds.coco_gt()
    assert pickle.loads(pickle.dumps(ds))._coco_gt is None and ds._coco_gt is not None

    def broken(sample, gen):  # noqa: ANN001, ANN202
        raise ValueError("boom")

    ds.pipeline = broken
    rec = ds.records[3]
    with pytest.raises(DataError, match=rf"item 3 \(image id {rec.image_id}, file .*{rec.file.name}.*ValueError: boom"):
        ds[3]
