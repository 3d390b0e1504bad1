"""The built-in wandb logger in offline mode (no network): the run folder holds the config, the training
scalars and the evaluation metrics; disabled by default."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def _wandb_records(path: Path, block: int = 32768):
    """Records of a ``.wandb`` file: a 7-byte ``:W&B`` header, then LevelDB-log chunks (crc32, length,
    type; FULL=1, FIRST=2, MIDDLE=3, LAST=4) in 32 KiB blocks, each payload a ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def _offline_env(monkeypatch, root: Path) -> None:
    for key, value in {"WANDB_DIR": str(root), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                       "WANDB_CONSOLE": "off", "WANDB_DISABLE_GIT": "true", "WANDB_CACHE_DIR": str(root / "cache"),
                       "WANDB_CONFIG_DIR": str(root / "config"), "WANDB_DATA_DIR": str(root / "data")}.items():
        monkeypatch.setenv(key, value)


def test_wandb_offline_run_holds_logged_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lsvr_core.engine import api

    root = tmp_path / "wandb_root"
    root.mkdir()
    _offline_env(monkeypatch, root)
    mgr = common.manager()
    cfg = common.config(mgr, tmp_path / "run", schedule={"epochs": 1},
                        logging={"interval": 2, "wandb": {"enabled": True, "mode": "offline", "name": "tiny"}})
    assert api.run(cfg, mgr) == 0
    runs = list((root / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log_file,) = runs[0].glob("run-*.wandb")
    deadline = time.monotonic() + 30  # wandb's service process may still be flushing the file
    while time.monotonic() < deadline and "exit" not in {r.WhichOneof("record_type") for r in _wandb_records(log_file)}:
        time.sleep(0.1)
    history: dict[int, dict] = {}
    config: dict[str, str] = {}
    for record in _wandb_records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
        elif kind in ("config", "run"):
            updates = record.config.update if kind == "config" else record.run.config.update
            config.update({i.key: i.value_json for i in updates})
    assert sorted(history) == [2, 4]  # logging.interval 2, 4 iterations
    for row in common.losses(tmp_path / "run"):
        assert history[row["step"]]["train/loss"] == pytest.approx(row["loss"], rel=1e-7)
        assert history[row["step"]]["train/lr"] == pytest.approx(row["lr"], rel=1e-7)
    want = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert history[4]["val/bbox/AP"] == pytest.approx(want["bbox/AP"])
    assert history[4]["val/bbox/mIoU"] == pytest.approx(want["bbox/mIoU"], rel=1e-7)
    assert history[4]["predictions/count"] == 1  # one image per call: the gallery, then curves.png
    assert len(list(runs[0].glob("files/media/images/*.png"))) == 2  # gallery (1 evaluation) + curves
    assert "tiny_head" in config["model"] and "tiny_shapes" in config["data"]


def test_wandb_is_off_by_default(tmp_path, monkeypatch):
    root = tmp_path / "wandb_root"
    root.mkdir()
    _offline_env(monkeypatch, root)
    from lsvr_core.engine import api

    mgr = common.manager()
    assert api.run(common.config(mgr, tmp_path / "run", schedule={"epochs": 1}), mgr) == 0
    assert not (root / "wandb").exists() and not (tmp_path / "run" / "wandb").exists()


def test_wandb_resume_continues_the_same_run_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lsvr_core.engine import api

    root = tmp_path / "wandb_root"
    root.mkdir()
    _offline_env(monkeypatch, root)
    mgr = common.manager()
    cfg = common.config(mgr, tmp_path / "run", schedule={"epochs": 1}, eval={"num_draw": 0},
                        logging={"wandb": {"enabled": True, "mode": "offline"}})
    assert api.run(cfg, mgr) == 0
    run_id = (tmp_path / "run" / "wandb_run_id.txt").read_text().strip()
    assert api.run(cfg, mgr, resume="auto") == 0
    folders = sorted(p.name for p in (root / "wandb").glob("offline-run-*"))
    # offline-run-<time>-<id>, with "-1" appended when both runs started within the same second
    assert len(folders) == 2 and all(re.fullmatch(rf"offline-run-\d+_\d+-{run_id}(-\d+)?", n) for n in folders)
