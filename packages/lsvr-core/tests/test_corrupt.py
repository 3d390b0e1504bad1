"""Unreadable images during a run (finding 2): the checkpoint is written before evaluation, a crash writes
an emergency checkpoint, ``data.on_corrupt: skip`` skips and lists the files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def _run(tmp_path, capsys, name, *extra, **sections):
    from lsvr_core.cli.main import main

    work = tmp_path / name
    path = common.write_yaml(tmp_path / f"{name}.yaml", common.config_dict(work, **sections))
    code = main(["--plugin", str(common.PLUGIN), "run", str(path), *extra])
    return code, capsys.readouterr().err, work


def test_corrupt_val_image_keeps_the_epoch_checkpoint(tmp_path, capsys):
    code, err, work = _run(tmp_path, capsys, "val", data={"val": {"type": "tiny_shapes", "num_images": 6,
                                                                  "corrupt": [3]}}, schedule={"epochs": 1})
    assert code == 2
    assert "lsvr: error: image shapes/003.png (image id 4): cannot decode (truncated file); set data.on_corrupt: " \
           "skip" in err
    assert "Traceback" not in err
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)  # written before the evaluation
    assert ckpt["iter"] == 4 and "emergency" not in ckpt
    assert not (work / "checkpoints" / "emergency.pt").exists()
    assert f"{work / 'checkpoints' / 'last.pt'} holds that iteration" in (work / "log.txt").read_text()


def test_corrupt_train_image_writes_an_emergency_checkpoint_and_resume_with_skip_finishes(tmp_path, capsys):
    """16 images, batch 4: item 9 is met at iteration 2 (the epoch's permutation); nothing had been saved."""
    train = {"type": "tiny_shapes", "num_images": 16, "corrupt": [9]}
    code, err, work = _run(tmp_path, capsys, "train", data={"train": train}, eval={"num_draw": 0})
    assert code == 2 and "image shapes/009.png" in err and "Traceback" not in err
    emergency = torch.load(work / "checkpoints" / "emergency.pt", weights_only=True)
    assert emergency["emergency"]["reason"].startswith("DataError: image shapes/009.png")
    assert emergency["iter"] == emergency["emergency"]["iter"] == 1 and emergency["batch_in_epoch"] == 1
    assert not (work / "checkpoints" / "last.pt").exists()
    log = (work / "log.txt").read_text()
    assert f"wrote the emergency checkpoint {work / 'checkpoints' / 'emergency.pt'}" in log

    code, err, again = _run(tmp_path, capsys, "train", "--resume", data={"train": train, "on_corrupt": "skip"},
                            eval={"num_draw": 0})
    assert code == 0 and again == work and not (tmp_path / "train2").exists()
    assert f"resumed from {work / 'checkpoints' / 'emergency.pt'}" in err
    assert torch.load(work / "checkpoints" / "last.pt", weights_only=True)["iter"] == 8
    records = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in records if "skipped_images" in r]
    assert len(skipped) == 1 and skipped[0]["skipped_images"] == [
        "image shapes/009.png (image id 10): cannot decode (truncated file)"]
    assert "data.on_corrupt=skip: skipped image shapes/009.png" in err


def test_skip_drops_a_corrupt_val_image_from_scoring(tmp_path, capsys):
    code, err, work = _run(tmp_path, capsys, "skip", data={"on_corrupt": "skip", "val": {
        "type": "tiny_shapes", "num_images": 6, "corrupt": [0, 5]}}, schedule={"epochs": 1}, eval={"num_draw": 0})
    assert code == 0, err
    records = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["bbox/num_images"] == 4  # 6 val images, 2 unreadable
    assert records[1]["skipped_images"] == ["image shapes/000.png (image id 1): cannot decode (truncated file)",
                                            "image shapes/005.png (image id 6): cannot decode (truncated file)"]


def test_error_from_a_loader_worker_is_one_line(tmp_path, capsys):
    code, err, work = _run(tmp_path, capsys, "workers", data={"num_workers": 1, "train": {
        "type": "tiny_shapes", "num_images": 16, "corrupt": [9]}}, eval={"num_draw": 0})
    assert code == 2
    line = next(x for x in err.splitlines() if x.startswith("lsvr: error:"))
    assert line.startswith("lsvr: error: image shapes/009.png (image id 10): cannot decode (truncated file); set ")
    assert "Traceback" not in err and "Caught" not in err
