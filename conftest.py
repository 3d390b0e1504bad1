"""Fixtures shared by every test folder of the monorepo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# One intra-op thread for the whole suite (subprocesses inherit it): on a 2-core machine with anything else
# running, two OpenMP threads wait on a descheduled peer at every barrier and a tiny conv takes ~30 ms
# instead of ~0.1 ms (measured: a [4, 32, 4, 4] 3x3 conv, 30.6 ms with 2 threads vs 0.11 ms with 1).
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent


def shared_data_root() -> Path:
    """``../shared/data`` beside the repository (override with ``LSVR_SHARED_DATA``)."""
    return Path(os.environ.get("LSVR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


def require_data() -> bool:
    """True when ``LSVR_REQUIRE_DATA=1`` (set by ``.ci/run``): a missing data set fails the test, never skips."""
    return os.environ.get("LSVR_REQUIRE_DATA", "") == "1"


def data_set(name: str) -> Path:
    """The real data set ``name`` under :func:`shared_data_root`.

    Skips the calling test when the folder is missing, or fails it (naming the data set and the path) when
    ``LSVR_REQUIRE_DATA=1``.
    """
    path = shared_data_root() / name
    if not path.is_dir():
        message = f"real data set {name!r} not found at {path} (set LSVR_SHARED_DATA to the folder holding it)"
        if require_data():
            pytest.fail(f"LSVR_REQUIRE_DATA=1: {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test data; needs both data sets (skip or fail as :func:`data_set`)."""
    data_set("coco_mini")
    data_set("voc2012_sample")
    return shared_data_root()


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    return data_set("coco_mini")


@pytest.fixture(scope="session")
def voc_sample() -> Path:
    return data_set("voc2012_sample")


# --- skip report for CI: LSVR_SKIP_REPORT=<file> gets one JSON line per skipped test ----------------------------

_GPU_TESTS: set[str] = set()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _GPU_TESTS.update(item.nodeid for item in items if item.get_closest_marker("gpu") is not None)


def _record_skip(report: pytest.TestReport | pytest.CollectReport, when: str) -> None:
    out = os.environ.get("LSVR_SKIP_REPORT")
    if not out or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    record = {"nodeid": report.nodeid, "when": when, "reason": reason, "gpu_marker": report.nodeid in _GPU_TESTS}
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report, report.when)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A whole module skipped at import (``pytest.importorskip`` at module level) is a skip too."""
    _record_skip(report, "collect")


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    """Reset torch to the suite's thread count before every test (a test may still raise it itself)."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
