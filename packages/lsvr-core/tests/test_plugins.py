"""Plugin discovery: conflicts, broken plugins, LSVR_DISABLE_PLUGINS, --plugin files, tracing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_dists import loss_plugin, make_dist, run_lsvr  # noqa: E402

from lsvr_core.errors import PluginError  # noqa: E402
from lsvr_core.plugins import PluginManager  # noqa: E402
from lsvr_core.specs import ComponentSpec, LossConfig  # noqa: E402


def test_conflict_names_both_distributions(tmp_path: Path) -> None:
    loss_plugin("lsvr-alpha", "alpha_plugin", "dup_loss", tmp_path)
    loss_plugin("lsvr-beta", "beta_plugin", "dup_loss", tmp_path)
    res = run_lsvr(["components", "loss"], site=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "loss 'dup_loss' is registered twice" in res.stderr
    assert "lsvr-alpha" in res.stderr and "lsvr-beta" in res.stderr
    assert "Traceback" not in res.stderr


def test_conflict_with_builtin_is_detected(tmp_path: Path) -> None:
    loss_plugin("lsvr-gamma", "gamma_plugin", "focal", tmp_path)
    res = run_lsvr(["components"], site=tmp_path)
    assert res.returncode == 2
    assert "lsvr-core" in res.stderr and "lsvr-gamma" in res.stderr


def test_disable_plugins_resolves_conflict(tmp_path: Path) -> None:
    loss_plugin("lsvr-alpha", "alpha_plugin", "dup_loss", tmp_path)
    loss_plugin("lsvr-beta", "beta_plugin", "dup_loss", tmp_path)
    res = run_lsvr(["plugins", "--json"], site=tmp_path, env={"LSVR_DISABLE_PLUGINS": "beta_plugin"})
    assert res.returncode == 0, res.stderr
    records = {r["name"]: r for r in json.loads(res.stdout)}
    assert records["beta_plugin"]["status"] == "disabled"
    assert records["alpha_plugin"]["status"] == "ok"
    assert records["alpha_plugin"]["components"] == {"loss": ["dup_loss"]}


def test_broken_plugin_is_listed_and_blocks_run(tmp_path: Path) -> None:
    make_dist(tmp_path, "lsvr-broken", "broken_plugin", "import not_a_real_module_xyz\n")
    res = run_lsvr(["plugins"], site=tmp_path)
    assert res.returncode == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("broken_plugin"))
    assert "failed" in line and "lsvr-broken" in line
    assert "No module named 'not_a_real_module_xyz'" in res.stdout
    run = run_lsvr(["run", "lsvr:fcos_r18_synthetic"], site=tmp_path)
    assert run.returncode == 2
    assert "broken_plugin" in run.stderr and "LSVR_DISABLE_PLUGINS=broken_plugin" in run.stderr
    assert "Traceback" not in run.stderr


def test_plugin_file_and_trace(tmp_path: Path) -> None:
    plugin = tmp_path / "my_losses.py"
    plugin.write_text(
        "from typing import Literal\n"
        "from lsvr_core.hookspecs import hookimpl\n"
        "from lsvr_core.specs import ComponentSpec, LossConfig\n"
        "class C(LossConfig):\n    type: Literal['file_loss'] = 'file_loss'\n"
        "@hookimpl\ndef lsvr_losses():\n    return [ComponentSpec('loss', 'file_loss', C, 'x:y', 'from a file')]\n"
    )
    res = run_lsvr(["--plugin", str(plugin), "components", "loss"], env={"LSVR_TRACE_PLUGINS": "1"})
    assert res.returncode == 0, res.stderr
    assert "file_loss" in res.stdout and "from a file" in res.stdout
    assert "[lsvr-plugins]" in res.stderr  # pluggy tracing went to stderr
    missing = run_lsvr(["--plugin", str(tmp_path / "nope.py"), "plugins"])
    assert "plugin file" in missing.stdout and "does not exist" in missing.stdout


def test_spec_record_validates_config_model() -> None:
    class Wrong(LossConfig):
        type: str = "other"

    with pytest.raises(TypeError, match="Literal"):
        ComponentSpec("loss", "mine", Wrong, "m:f", "x")
    with pytest.raises(ValueError, match="unknown kind"):
        ComponentSpec("gizmo", "mine", None, "m:f", "x")


def test_manager_lookup_errors_list_valid_names() -> None:
    manager = PluginManager(entry_points=False)
    with pytest.raises(PluginError, match="unknown loss 'nope'; valid: .*focal"):
        manager.get("loss", "nope")
    assert manager.get("head", "fcos").distribution == "lsvr-core"


def test_plugin_calling_sys_exit_at_import_is_reported_not_fatal(tmp_path: Path) -> None:
    """Finding 6: a plugin that calls sys.exit() (or raises any BaseException) at import is a broken plugin."""
    make_dist(tmp_path, "lsvr-exiting", "exiting_plugin", "import sys\nsys.exit('bye from exiting_plugin')\n")
    res = run_lsvr(["plugins"], site=tmp_path)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("exiting_plugin"))
    assert "failed" in line
    assert "SystemExit: bye from exiting_plugin" in res.stdout
    assert "builtin" in res.stdout  # the other plugins are still listed
    run = run_lsvr(["run", "lsvr:fcos_r18_synthetic"], site=tmp_path)
    assert run.returncode == 2 and "exiting_plugin" in run.stderr and "Traceback" not in run.stderr


def test_duplicate_names_are_listed_by_plugins_and_help_works(tmp_path: Path) -> None:
    """Finding 6: a duplicate component name no longer blocks `lsvr plugins` or `--help`; `run` still refuses."""
    loss_plugin("lsvr-alpha", "alpha_plugin", "dup_loss", tmp_path)
    loss_plugin("lsvr-beta", "beta_plugin", "dup_loss", tmp_path)
    res = run_lsvr(["plugins"], site=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "loss 'dup_loss' is registered twice: by lsvr-alpha (plugin 'alpha_plugin') and by lsvr-beta" in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("beta_plugin"))
    assert "failed" in line
    helped = run_lsvr(["--help"], site=tmp_path)
    assert helped.returncode == 0 and "usage: lsvr" in helped.stdout
    run = run_lsvr(["run", "lsvr:fcos_r18_synthetic"], site=tmp_path)
    assert run.returncode == 2 and "registered twice" in run.stderr and "Traceback" not in run.stderr


def test_keyboard_interrupt_at_import_still_interrupts(tmp_path: Path) -> None:
    make_dist(tmp_path, "lsvr-ctrlc", "ctrlc_plugin", "raise KeyboardInterrupt\n")
    res = run_lsvr(["plugins"], site=tmp_path)
    assert res.returncode == 130 and "interrupted" in res.stderr
