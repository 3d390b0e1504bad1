"""The coco evaluator scores exactly the ground truth the dataset keeps (finding 3), and malformed
annotations (a bbox of strings or null, no image_id) are counted skips instead of tracebacks (finding 7)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from lsvr_core.errors import DataError
from lsvr_core.structures import Predictions
from lsvr_data.coco import build_coco
from lsvr_data.coco_eval import build_coco_evaluator
from lsvr_data.config import CocoDatasetConfig, CocoEvaluatorConfig


def write_coco(root: Path, anns: list[dict], sizes=((48, 64), (48, 64), (64, 48))) -> Path:
    """A tiny COCO folder: ``root/img/<i>.png`` images of ``sizes`` (h, w) and ``root/ann.json``."""
    from lsvr_core.visualize import save_png

    images = []
    for i, (h, w) in enumerate(sizes, start=1):
        save_png(torch.full((3, h, w), 40 * i, dtype=torch.uint8), root / "img" / f"{i:03d}.png")
        images.append({"id": i, "file_name": f"{i:03d}.png", "height": h, "width": w})
    cats = [{"id": 1, "name": "box"}, {"id": 3, "name": "disc"}]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


GOOD = [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10], "area": 200, "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 20, 16, 16], "area": 256, "iscrowd": 0},
    {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 8, 30, 30], "area": 900, "iscrowd": 0},
    {"id": 4, "image_id": 3, "category_id": 3, "bbox": [2, 2, 40, 50], "area": 2000, "iscrowd": 0},
]
BAD = [
    {"id": 10, "image_id": 2, "category_id": 3, "bbox": [5, 5, 0.5, 20], "area": 10, "iscrowd": 0},  # degenerate
    {"id": 11, "image_id": 3, "category_id": 1, "bbox": ["a", "b", "c", "d"], "area": 1, "iscrowd": 0},
    {"id": 12, "image_id": 3, "category_id": 1, "bbox": None, "area": 1, "iscrowd": 0},
    {"id": 13, "image_id": 1, "category_id": 1, "bbox": [1, 1, None, 4], "area": 1, "iscrowd": 0},
    {"id": 14, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0},  # no image_id
    {"id": 15, "image_id": 2, "category_id": 1, "bbox": [100, 100, 10, 10], "area": 100, "iscrowd": 0},  # outside
]


def test_perfect_predictions_score_ap_1_on_a_val_set_with_invalid_annotations(tmp_path, caplog):
    write_coco(tmp_path, GOOD + BAD)
    cfg = CocoDatasetConfig(root=str(tmp_path), ann_file="ann.json", img_dir="img")
    with caplog.at_level(logging.WARNING, logger="lsvr_data"):
        ds = build_coco(cfg, root=tmp_path, train=False, task="bbox")
        ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="bbox")
    assert sorted(int(a) for r in ds.records for a in r.ann_ids) == [1, 2, 3, 4]
    assert sorted(ev.coco_gt.getAnnIds()) == [1, 2, 3, 4]  # the evaluator's GT is what the dataset keeps
    text = caplog.text
    assert "skipped 6 bad annotation(s)" in text
    assert "evaluating against the 4 annotations on 3 images the dataset keeps; 6 annotation(s)" in text
    assert "1 x degenerate bbox" in text and "3 x bbox" in text and "1 x has no integer image_id" in text
    ev.reset()
    for i in range(len(ds)):
        t = ds.targets(i)
        ev.process([Predictions(boxes=t.boxes, scores=torch.ones(len(t)), labels=t.labels, image_id=t.image_id,
                                    frame="original")])
    metrics = ev.evaluate()
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["bbox/AR100"] == pytest.approx(1.0)


def test_missing_optional_fields_are_filled_for_cocoeval(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10]}, {"image_id": 2, "category_id": 3,
                                                                        "bbox": [10, 8, 30, 30]}]
    write_coco(tmp_path, anns, sizes=((48, 64), (48, 64)))
    ds = build_coco(CocoDatasetConfig(root=str(tmp_path), ann_file="ann.json", img_dir="img"), root=tmp_path,
                    train=False, task="bbox")
    ev = build_coco_evaluator(CocoEvaluatorConfig(), dataset=ds, task="bbox")
    for i in range(len(ds)):
        t = ds.targets(i)
        ev.process([Predictions(boxes=t.boxes, scores=torch.ones(len(t)), labels=t.labels, image_id=t.image_id,
                                    frame="original")])
    assert ev.evaluate()["bbox/AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", BAD, ids=["degenerate", "strings", "null", "null-coord", "no-image-id", "outside"])
def test_bad_annotation_under_policy_error_names_the_file_and_id(tmp_path, bad):
    write_coco(tmp_path, GOOD + [bad])
    cfg = CocoDatasetConfig(root=str(tmp_path), ann_file="ann.json", img_dir="img", on_bad_annotation="error")
    with pytest.raises(DataError, match=rf"ann.json: annotation {bad['id']}: "):
        build_coco(cfg, root=tmp_path, train=False, task="bbox")


def test_data_check_decodes_every_image_and_lists_bad_annotations(tmp_path, capsys):
    """`lsvr data check CONFIG` (finding 2): a truncated image and the bad annotations are listed up front."""
    import yaml

    from lsvr_core.cli.main import main

    write_coco(tmp_path, GOOD + BAD)
    png = tmp_path / "img" / "002.png"
    png.write_bytes(png.read_bytes()[:40])  # truncated
    section = {"type": "coco", "root": str(tmp_path), "ann_file": "ann.json", "img_dir": "img"}
    cfg = {"model": {"num_classes": 2, "backbone": {"type": "resnet", "depth": 18}, "head": {"type": "fcos"}},
           "data": {"train": section, "val": section}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["data", "check", str(path)])
    out = capsys.readouterr().out
    assert code == 2
    rows = [line for line in out.splitlines() if line.startswith("| data.")]
    assert len(rows) == 2 and all("| coco | 3      | 2      | 1          | 4                | 6" in r for r in rows)
    assert "data.val: unreadable: image " in out and "002.png (image id 2): cannot decode" in out
    assert "data.val: " + str(tmp_path / "ann.json") + ": annotation 10: degenerate bbox" in out
    assert out.strip().endswith("FAILED: 2 unreadable image(s), 12 dropped annotation(s)")
    png.unlink()
    write_coco(tmp_path, GOOD)
    assert main(["data", "check", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok: 0 unreadable image(s), 0 dropped annotation(s)")


def test_exif_rotated_image_annotated_in_the_rotated_frame_loads(tmp_path, caplog):
    """Finding 9: a JPEG stored 64x32 with EXIF orientation 6 (rotate 90) displays 32x64; annotations made on
    the displayed image say 32x64. It loads rotated (with a warning) instead of failing on the size."""
    from PIL import Image

    pixels = torch.zeros((32, 64, 3), dtype=torch.uint8)
    pixels[:, :8] = 255  # a white band on the stored image's left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "img").mkdir()
    Image.fromarray(pixels.numpy()).save(tmp_path / "img" / "001.jpg", exif=exif, quality=95)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "001.jpg", "height": 64, "width": 32}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 20, 30],
                                                "area": 600, "iscrowd": 0}],
                               "categories": [{"id": 1, "name": "box"}]}))
    cfg = CocoDatasetConfig(root=str(tmp_path), ann_file="ann.json", img_dir="img")
    ds = build_coco(cfg, root=tmp_path, train=False, task="bbox")
    with caplog.at_level(logging.WARNING, logger="lsvr_data"):
        image = ds.load_image(ds.records[0])
    assert tuple(image.shape) == (3, 64, 32)
    assert image[:, :8].float().mean() > 200 and image[:, -8:].float().mean() < 50  # rotated 90 clockwise: top
    assert "has an EXIF orientation and its annotations are in the rotated frame" in caplog.text
    ann.write_text(ann.read_text().replace('"height": 64, "width": 32', '"height": 50, "width": 50'))
    ds = build_coco(cfg, root=tmp_path, train=False, task="bbox")
    with pytest.raises(DataError, match=r"is 64x32 but .* says 50x50 \(its EXIF orientation tag rotates it to 32x64"):
        ds.load_image(ds.records[0])
