"""Build fake installed distributions (dist-info + module) in a folder, for plugin-discovery tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN_TEMPLATE = '''
from typing import Literal
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import ComponentSpec, LossConfig

class {cls}(LossConfig):
    type: Literal["{loss}"] = "{loss}"
    weight: float = 1.0

@hookimpl
def lsvr_losses():
    return [ComponentSpec("loss", "{loss}", {cls}, "{module}:build", "a test loss")]
'''


def make_dist(site: Path, dist: str, module: str, body: str, entry_name: str | None = None) -> None:
    """Write ``<module>.py`` and a ``<dist>-0.1.dist-info`` whose ``lsvr`` entry point loads it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lsvr]\n{entry_name or module} = {module}\n")


def loss_plugin(dist: str, module: str, loss: str, site: Path) -> None:
    make_dist(site, dist, module, PLUGIN_TEMPLATE.format(cls=f"Cfg{module}", loss=loss, module=module))


def run_lsvr(args: list[str], site: Path | None = None, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lsvr_core.cli.main ARGS`` in a subprocess with ``site`` on PYTHONPATH."""
    full_env = dict(os.environ)
    full_env.pop("LSVR_DISABLE_PLUGINS", None)
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), full_env.get("PYTHONPATH", "")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lsvr_core.cli.main", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=300)
