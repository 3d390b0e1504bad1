"""The mis-wirings of issue #12 exit 2 from `lsvr validate` with the dotted path, the value and what fits."""

from __future__ import annotations

import json

import pytest

from lsvr_core.cli.main import main


@pytest.mark.parametrize(("ref", "override", "expected"), [
    ("lsnet:demo", "model.head.assigner_init.type=mutual_guide",
     "model.head.assigner_init.type: assigner 'mutual_guide' implements anchor_assigner, but this slot calls "
     "point_assigner; types that fit: centroid (got 'mutual_guide')"),
    ("lsnet:demo", "model.head.assigner_refine.type=centroid",
     "model.head.assigner_refine.type: assigner 'centroid' implements point_assigner, but this slot calls "
     "point_box_assigner; types that fit: atss (got 'centroid')"),
    ("lsnet:demo", "model.head.loss_init.type=balanced_l1",
     "model.head.loss_init.type: loss 'balanced_l1' implements regression_loss, but this slot calls "
     "landmark_loss; types that fit: cross_iou (got 'balanced_l1')"),
    ("mutualguide:voc_sample", "model.head.assigner.type=atss",
     "model.head.assigner.type: assigner 'atss' implements point_box_assigner, but this slot calls "
     "anchor_assigner; types that fit: iou, mutual_guide (got 'atss')"),
    ("mutualguide:voc_sample", "model.head.loss_bbox.type=cross_iou",
     "model.head.loss_bbox.type: loss 'cross_iou' implements landmark_loss, but this slot calls "
     "regression_loss; types that fit: balanced_l1, l1, smooth_l1 (got 'cross_iou')"),
])
def test_miswired_slot_exits_2(capsys: pytest.CaptureFixture[str], ref: str, override: str, expected: str) -> None:
    assert main(["validate", ref, "-o", override]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err


def test_fitting_replacements_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "mutualguide:voc_sample", "-o", "model.head.loss_bbox={type: smooth_l1}",
                 "-o", "model.head.loss_iou={type: giou}", "-o", "model.head.assigner={type: iou}"]) == 0
    capsys.readouterr()
    assert main(["config", "show", "mutualguide:voc_sample", "-o", "model.head.loss_iou={type: siou}"]) == 0
    assert "type: siou" in capsys.readouterr().out


def test_components_show_interfaces_and_slots(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["components", "--json"]) == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows[("assigner", "centroid")]["implements"] == ["point_assigner"]
    assert rows[("loss", "focal")]["implements"] == ["classification_loss", "soft_classification_loss"]
    assert rows[("head", "lsnet")]["slots"]["assigner_init"] == "point_assigner"
    assert rows[("head", "mutual_guide")]["slots"] == {"assigner": "anchor_assigner",
                                                       "loss_cls": "soft_classification_loss",
                                                       "loss_bbox": "regression_loss", "loss_iou": "box_loss"}


@pytest.mark.parametrize(("ref", "override", "expected"), [
    ("lsnet:demo", "task=keypoints",
     "task: head 'lsnet' (model.head) supports tasks bbox, segm, pose_bbox, pose_kbox (got 'keypoints')"),
    ("mutualguide:voc_sample", "task=segm", "task: dataset 'voc' (data.train) supports tasks bbox (got 'segm')"),
    ("lsnet:demo", "model.backbone.out_levels=[c9]",
     "model.backbone.out_levels: Value error, levels must be among c2, c3, c4, c5; unknown: ['c9'] (got ['c9'])"),
    ("lsnet:demo", "model.head.in_levels=[p3,p4,p9]",
     "model.head.in_levels: p9 not produced by the neck 'fpn', which outputs p3, p4, p5, p6, p7 "
     "(got ['p3', 'p4', 'p9'])"),
    ("lsnet:demo", "model.head.pad_divisor=64", "model.head.pad_divisor: must equal data.size_divisor=32"),
    ("lsnet:demo", "model.num_classes=80", "model.num_classes: data.train ('synthetic', task bbox) has 4 classes"),
])
def test_cross_section_mistakes_exit_2(capsys: pytest.CaptureFixture[str], ref: str, override: str,
                                       expected: str) -> None:
    assert main(["validate", ref, "-o", override]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err


def test_pad_divisor_follows_size_divisor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "lsnet:demo", "-o", "data.size_divisor=64"]) == 0
    assert "  pad_divisor: 64\n" in capsys.readouterr().out


@pytest.mark.slow
def test_validate_build_prints_parameters_and_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "lsvr:fcos_r18_synthetic", "--build", "--image-size", "64"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "lsvr:fcos_r18_synthetic: ok (task bbox, resnet -> fpn -> fcos)"
    assert out[1].startswith("  built on CPU: ") and out[1].endswith(" trainable)")
    assert out[2].startswith("  train forward on a 2-image 64x64 batch: loss_cls ") and "loss_box" in out[2]
    assert out[3].startswith("  inference forward: [")
