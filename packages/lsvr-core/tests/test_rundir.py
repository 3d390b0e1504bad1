"""Run folders: a second run never overwrites the first; ``--resume`` finds the latest run (finding 1)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_second_run_goes_to_a_numbered_folder_and_resume_finds_the_latest(tmp_path):
    from lsvr_core.engine import api

    mgr = common.manager()
    work = tmp_path / "exp"
    cfg = common.config(mgr, work, schedule={"epochs": 1}, eval={"num_draw": 0})
    assert api.run(cfg, mgr) == 0
    first = _snapshot(work)
    assert "checkpoints/last.pt" in first
    assert api.run(cfg, mgr) == 0
    assert _snapshot(work) == first  # nothing of the first run changed
    second = tmp_path / "exp2"
    assert (second / "checkpoints" / "last.pt").is_file()
    assert len((second / "metrics.jsonl").read_text().splitlines()) == 1
    assert "already holds a run: this run writes to" in (second / "log.txt").read_text()
    assert str(second) in (second / "config.resolved.yaml").read_text()
    assert api.run(cfg, mgr) == 0
    assert (tmp_path / "exp3" / "checkpoints" / "last.pt").is_file()

    # --resume (no path) continues the latest run of the family: exp3, in place
    longer = common.config(mgr, work, schedule={"epochs": 2}, eval={"num_draw": 0})
    before = _snapshot(second)
    assert api.run(longer, mgr, resume="auto") == 0
    assert not (tmp_path / "exp4").exists()
    assert torch.load(tmp_path / "exp3" / "checkpoints" / "last.pt", weights_only=True)["iter"] == 8
    assert _snapshot(second) == before
    records = [json.loads(x) for x in (tmp_path / "exp3" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [4, 8]

    # --resume PATH continues in the run folder holding PATH
    assert api.run(longer, mgr, resume=str(second / "checkpoints" / "last.pt")) == 0
    assert torch.load(second / "checkpoints" / "last.pt", weights_only=True)["iter"] == 8
    assert _snapshot(work) == first


def test_resume_without_any_run_is_a_one_line_error(tmp_path):
    from lsvr_core.engine.rundir import choose_run_dir
    from lsvr_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--resume: no checkpoint .* in .*nothing or its numbered runs"):
        choose_run_dir(tmp_path / "nothing", "auto")


def test_empty_or_unrelated_folder_is_used_as_it_is(tmp_path):
    from lsvr_core.engine.rundir import choose_run_dir, next_run_dir

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert next_run_dir(tmp_path / "a") == tmp_path / "a"
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b7").mkdir()
    (tmp_path / "b7" / "log.txt").write_text("")
    assert choose_run_dir(tmp_path / "b", None) == (tmp_path / "b8", None)
    assert choose_run_dir(tmp_path / "b7", None)[0] == tmp_path / "b72"  # b7's own family
