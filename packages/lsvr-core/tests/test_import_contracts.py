"""The import-linter contracts of the root pyproject: complete, and kept by the installed packages."""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import lsvr_core

ROOT = Path(__file__).resolve().parents[3]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["type"]: c for c in config["contracts"]}


def test_forbidden_list_names_every_private_core_module() -> None:
    """A new top-level module of lsvr_core is private unless it is lsvr_core.api: the contract must name it."""
    forbidden = set(_contracts()["forbidden"]["forbidden_modules"])
    private = {f"lsvr_core.{m.name}" for m in pkgutil.iter_modules(lsvr_core.__path__) if m.name != "api"}
    assert private - forbidden == set(), "add these to [tool.importlinter] forbidden_modules in pyproject.toml"
    assert "lsvr_core.api" not in forbidden


def test_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (it comes with lsvr-core[test])")
    out = subprocess.run([exe, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert ", 0 broken" in out.stdout
