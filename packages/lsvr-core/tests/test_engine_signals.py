"""SIGTERM during ``lsvr run`` (a real subprocess with 2 loader workers, the signal sent to the whole process
group as schedulers do): a checkpoint is written, the process exits cleanly with 128 + 15 and no
traceback, and ``--resume`` finishes the run from that checkpoint."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("engine_common", Path(__file__).parent / "engine_fixtures" / "common.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def test_sigterm_writes_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    work = tmp_path / "run"
    data = common.config_dict(work, schedule={"epochs": 100, "max_iters": 30}, eval={"num_draw": 0},
                              data={"num_workers": 2})
    cfg_file = common.write_yaml(tmp_path / "run.yaml", data)
    env = {**os.environ, "TINY_SLEEP": "0.3", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lsvr_core.cli.main", "--plugin", str(common.PLUGIN), "run",
                             str(cfg_file)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(common.losses(work)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        os.killpg(proc.pid, signal.SIGTERM)  # the main process and its loader workers
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "stopped by SIGTERM" in err
    ckpt = torch.load(work / "checkpoints" / "last.pt", weights_only=True)
    done = len(common.losses(work))
    assert ckpt["iter"] == done and 2 <= done < 30
    assert (work / "status.txt").read_text() == "interrupted"

    from lsvr_core.engine import api

    mgr = common.manager()
    assert api.run(common.config(mgr, work, **{k: data[k] for k in ("schedule", "eval", "data")}), mgr,
                   resume="auto") == 0
    assert [r["step"] for r in common.losses(work)] == list(range(1, 31))
    assert (work / "status.txt").read_text() == "completed"
