"""``tools/gpu_check.sh --dry-run``: the GPU check's steps (a)-(e) on CPU (Triton interpreter, tiny shapes, a few
iterations) in the current environment, installing nothing; the report files it writes (issue 15)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_report(tmp_path: Path) -> None:
    pytest.importorskip("triton")
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout (the script's time boxes)")
    out = tmp_path / "report"
    proc = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), "--dry-run", "--out", str(out),
                           "--budget-s", "230", "--python", sys.executable], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    env = report["environment"]
    assert env["mode"].startswith("dry run") and env["torch"] and env["commit"]
    steps = {s["key"]: s for s in report["steps"]}
    assert list(steps) == ["a", "b", "c", "d", "e"]
    assert all(s["status"] == "passed" for s in steps.values()), {k: (s["status"], s.get("tail")) for k, s in
                                                                  steps.items()}
    assert steps["b"]["results"]["rows"] and all(r["speedup_fwd"] > 0 for r in steps["b"]["results"]["rows"])
    backends = {row["backend"] for row in steps["c"]["results"]["runs"]["float32"]["rows"] if "fwd_ms" in row}
    assert {"triton", "reference"} <= backends
    variants = steps["d"]["results"]["variants"]
    assert [v["name"] for v in variants] == ["fp32 + torchvision DCN", "bf16 + Triton"]
    assert all(v["images_per_s"] > 0 for v in variants)
    assert steps["e"]["results"]["metrics"] and len(steps["e"]["results"]["logged_losses"]) >= 2
    md = (out / "report.md").read_text()
    assert "GPU check (dry run" in md and "| e |" in md and env["commit"] in md
    assert "lsvr-ops-triton" in (out / "lsvr_env.txt").read_text()
