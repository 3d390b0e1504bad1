"""Each package's pyproject lists every subpackage (so non-editable installs are complete) and declares
its entry point; recipes ship as package data."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_pyproject_lists_all_subpackages(pkg: Path) -> None:
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    listed = set(meta["tool"]["setuptools"]["packages"])
    src = pkg / "src"
    found = {str(d.relative_to(src)).replace("/", ".") for d in src.rglob("*") if (d / "__init__.py").exists()}
    import_name = pkg.name.replace("-", "_")
    found.add(f"{import_name}.recipes")
    assert found <= listed, f"{pkg.name}: add {sorted(found - listed)} to [tool.setuptools] packages"
    assert listed <= found, f"{pkg.name}: {sorted(listed - found)} listed but not on disk"
    assert any(ver.startswith(("torch>=", "torch==")) for ver in meta["project"]["dependencies"])


@pytest.mark.parametrize("pkg", [p for p in PACKAGES if p.name != "lsvr-core"], ids=lambda p: p.name)
def test_plugins_declare_entry_point_and_recipes(pkg: Path) -> None:
    meta = tomllib.loads((pkg / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["lsvr"]
    assert len(eps) == 1 and next(iter(eps.values())).endswith(".plugin")
    assert (pkg / "recipes").is_dir() and (pkg / "tests").is_dir()


def test_requirements_pin_torch() -> None:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in lines and "torchvision==0.29.1" in lines
    for pkg in PACKAGES:
        assert any(line.startswith(f"-e packages/{pkg.name}") for line in lines), pkg.name
