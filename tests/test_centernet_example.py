"""The third-party proof (issue #12 item 7): examples/lsvr-centernet pip-installs into a fresh target, shows up in
``lsvr plugins`` with its own distribution, and trains briefly through the public plugin contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lsvr-centernet"
# A shorter schedule than the recipe's (12 epochs on 256 images reach bbox AP >= 0.3, see the example's README):
# 4 epochs on 96 images of 96 px, 48 iterations. Measured on one thread: bbox AP 0.216 (seeded, so repeatable on
# the same torch build); the floor leaves room for other CPUs / torch versions.
SHORT = ["-o", "data.train.num_images=96", "-o", "data.train.image_size=96", "-o", "data.val.num_images=32",
         "-o", "data.val.image_size=96", "-o", "schedule.epochs=4", "-o", "schedule.warmup_iters=8",
         "-o", "eval.interval=4"]
FLOOR = 0.1


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, cwd=env["LSVR_TEST_CWD"])


@pytest.mark.slow
def test_centernet_example_installs_lists_and_trains(tmp_path: Path) -> None:
    site = tmp_path / "site"
    pip = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-t", str(site),
                str(EXAMPLE)], {**os.environ, "LSVR_TEST_CWD": str(tmp_path)})
    assert pip.returncode == 0, pip.stderr
    assert (site / "lsvr_centernet" / "recipes" / "synthetic.yaml").is_file()  # package data shipped
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "LSVR_TEST_CWD": str(tmp_path)}

    where = _run([sys.executable, "-c", "import lsvr_centernet; print(lsvr_centernet.__file__)"], env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # the pip-installed copy

    plugins = _run([sys.executable, "-m", "lsvr_core.cli.main", "plugins", "--json"], env)
    assert plugins.returncode == 0, plugins.stderr
    record = {r["name"]: r for r in json.loads(plugins.stdout)}["centernet"]
    assert record["distribution"] == "lsvr-centernet" and record["status"] == "ok", record

    work = tmp_path / "run"
    run = _run([sys.executable, "-m", "lsvr_core.cli.main", "run", "centernet:synthetic", *SHORT,
                "-o", f"runtime.work_dir={work}"], env, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    metrics = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    ap = [m["bbox/AP"] for m in metrics if "bbox/AP" in m][-1]
    print(f"centernet short schedule: bbox AP {ap:.3f}")
    assert ap >= FLOOR
