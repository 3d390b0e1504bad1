"""Registration (torch-free, factories resolve through the plugin manager) and ``lsvr eval-results``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsvr_core.cli.main import main
from lsvr_core.plugins import get_plugin_manager


def test_registration_is_torch_free() -> None:
    code = ("import sys, lsvr_data.plugin, lsvr_data.config\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'pycocotools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_components_build_through_plugin_manager(tmp_path: Path) -> None:
    pm = get_plugin_manager(reload=True)
    for kind, names in (("dataset", {"coco", "voc", "synthetic"}), ("evaluator", {"coco", "voc"})):
        registered = {s.name for s in pm.components(kind) if s.distribution == "lsvr-data"}
        assert names <= registered
        for name in names:
            assert callable(pm.get(kind, name).load())
    spec = pm.get("dataset", "synthetic")
    ds = pm.build("dataset", spec.config(num_images=3, image_size=64), root=tmp_path, train=True, task="bbox")
    ev = pm.build("evaluator", pm.get("evaluator", "coco").config(), dataset=ds, task="bbox")
    assert len(ds) == 3 and ev.iou_types == ["bbox"]


def _gt_results(gt: dict, kind: str) -> list[dict]:
    out = []
    for a in gt["annotations"]:
        if a.get("iscrowd") or (kind == "keypoints" and not a.get("num_keypoints")):
            continue
        r = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        if kind == "keypoints":
            r["keypoints"] = a["keypoints"]
        out.append(r)
    return out


@pytest.mark.parametrize("kind,ann", [("bbox", "instances_val2017.json"),
                                      ("keypoints", "person_keypoints_val2017.json")])
def test_eval_results_cli(coco_mini: Path, tmp_path: Path, capsys, kind: str, ann: str) -> None:  # noqa: ANN001
    gt_path = coco_mini / "annotations" / ann
    res = tmp_path / "results.json"
    res.write_text(json.dumps(_gt_results(json.loads(gt_path.read_text()), kind)))
    assert main(["eval-results", str(gt_path), str(res), "--iou-type", kind, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    names = (["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"] if kind == "bbox"
             else ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"])
    assert list(stats) == names and stats["AP"] == pytest.approx(1.0)
    assert main(["eval-results", str(gt_path), str(res), "--iou-type", kind]) == 0
    assert f"{kind:<9} AP     1.000" in capsys.readouterr().out


def test_eval_results_cli_errors(coco_mini: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    gt_path = coco_mini / "annotations" / "instances_val2017.json"
    assert main(["eval-results", str(gt_path), str(tmp_path / "none.json")]) == 2
    assert "results file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]')
    assert main(["eval-results", str(gt_path), str(bad)]) == 2
    assert "image ids not in" in capsys.readouterr().err
