"""The example's tests run against the installed plugin, as a third party's would (``pip install -e
examples/lsvr-centernet``; the repository's requirements.txt does it). Without the installed distribution the
lsvr registry cannot see the plugin and ``lsvr_centernet`` cannot be imported, so the folder is not collected
(the report header says so) instead of failing to import."""

from __future__ import annotations

import importlib.metadata as md

INSTALLED = any(ep.name == "centernet" for ep in md.entry_points(group="lsvr"))
collect_ignore_glob = [] if INSTALLED else ["test_*.py"]


def pytest_report_header() -> str | None:
    return None if INSTALLED else "examples/lsvr-centernet: not installed, its tests are not collected"
