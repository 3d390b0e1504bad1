"""CLI verbs: the discovery/config verbs never import torch; help and error paths."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_dists import run_lsvr  # noqa: E402

# lsvr:fcos_r18_synthetic uses lsvr-data's synthetic dataset and coco evaluator: checked once, up front.
HAVE_LSVR_DATA = importlib.util.find_spec("lsvr_data") is not None
NEEDS_LSVR_DATA = pytest.mark.skipif(not HAVE_LSVR_DATA, reason="lsvr-data is not installed: the recipe "
                                     "lsvr:fcos_r18_synthetic needs its 'synthetic' dataset and 'coco' evaluator")

TORCH_FREE_VERBS = [
    ["plugins"],
    ["plugins", "--json"],
    ["components"],
    ["components", "head"],
    ["recipes"],
    ["schema"],
    pytest.param(["validate", "lsvr:fcos_r18_synthetic"], marks=NEEDS_LSVR_DATA),
    pytest.param(["config", "show", "lsvr:fcos_r18_synthetic"], marks=NEEDS_LSVR_DATA),
]


@pytest.mark.parametrize("argv", TORCH_FREE_VERBS, ids=lambda a: " ".join(a))
def test_verbs_do_not_import_torch(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from lsvr_core.cli.main import main\n"
        f"rc = main({argv!r})\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'triton') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY=\n" in res.stderr, res.stderr[-2000:]
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    if argv[0] == "validate":
        assert "lsvr:fcos_r18_synthetic: ok (task bbox, resnet -> fpn -> fcos)" in res.stdout, res.stdout


def test_help_and_unknown_kind() -> None:
    res = run_lsvr(["--help"])
    assert res.returncode == 0 and "run" in res.stdout and "new-plugin" in res.stdout
    res = run_lsvr(["components", "gadget"])
    assert res.returncode == 2 and "unknown kind 'gadget'" in res.stderr


@NEEDS_LSVR_DATA
def test_config_show_resolves_defaults() -> None:
    res = run_lsvr(["config", "show", "lsvr:fcos_r18_synthetic", "-o", "optim.lr=0.5"])
    assert res.returncode == 0, res.stderr[-2000:]
    import yaml

    shown = yaml.safe_load(res.stdout)
    assert shown["optim"]["lr"] == 0.5
    assert shown["model"]["head"]["nms_thresh"] == 0.6  # default filled in
    assert shown["runtime"]["work_dir"] == "work_dirs/fcos_r18_synthetic"
