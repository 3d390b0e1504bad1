"""`lsvr predict` inputs (finding 4): distinct output names and image ids per input path, per-file errors
reported and skipped with results.json always written, class names from the checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_output_names_and_image_ids_are_distinct_per_path():
    from lsvr_core.engine.predict_io import image_ids, output_names

    paths = ["a/frame_001.jpg", "b/frame_001.jpg", "x/a/cat.png", "y/a/cat.png", "dog.png", "dog.png"]
    assert output_names(paths) == ["a_frame_001.png", "b_frame_001.png", "x_a_cat.png", "y_a_cat.png", "dog.png",
                                   "dog_2.png"]
    assert image_ids(["v/000000000139.jpg", "v/000000000285.jpg"]) == ([139, 285], "file names")
    assert image_ids(["a/frame_001.jpg", "b/frame_001.jpg"]) == ([1, 2], "positions")
    assert image_ids(["a/1.jpg", "cat.jpg"]) == ([1, 2], "positions")


def test_predict_skips_bad_files_and_always_writes_results(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from lsvr_core.cli.main import main
    from lsvr_core.visualize import save_png

    work = tmp_path / "run"
    cfg = common.write_yaml(tmp_path / "c.yaml", common.config_dict(work, schedule={"epochs": 1},
                                                                     eval={"num_draw": 0}))
    assert main(["--plugin", str(common.PLUGIN), "run", str(cfg)]) == 0
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["meta"]["classes"] == ["shape0", "shape1", "shape2"]  # stored for predict
    img = torch.randint(0, 255, (3, 40, 56), dtype=torch.uint8)
    a, b = save_png(img, tmp_path / "a" / "frame_001.png"), save_png(img, tmp_path / "b" / "frame_001.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(a.read_bytes()[:30])
    big = save_png(torch.zeros((3, 64, 64), dtype=torch.uint8), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # 4096 px > 2 x 1500 > 40 x 56: a decompression bomb for PIL
    capsys.readouterr()
    out = tmp_path / "pred"
    code = main(["--plugin", str(common.PLUGIN), "predict", str(cfg), "--checkpoint",
                 str(work / "checkpoints" / "last.pt"), str(a), str(b), str(tmp_path / "missing.png"), str(broken),
                 str(big), "--out", str(out), "--score-thresh", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"skipped {tmp_path / 'missing.png'}: cannot read it: file not found" in err
    assert f"skipped {broken}: cannot read it" in err
    assert f"skipped {big}: cannot read it: DecompressionBombError" in err
    assert "3 of 5 inputs skipped" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["a_frame_001.png", "b_frame_001.png"]
    results = json.loads((out / "results.json").read_text())
    assert sorted({r["image_id"] for r in results}) == [1, 2]  # positions: the file names give the same id
