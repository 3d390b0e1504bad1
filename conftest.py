"""Fixtures shared by every test folder of the monorepo."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test data (coco_mini, voc2012_sample); skips the test when it is absent."""
    root = shared_data_root()
    if not (root / "coco_mini").is_dir():
        pytest.skip(f"real test data not found at {root}")
    return root


@pytest.fixture(scope="session")
def coco_mini(shared_data: Path) -> Path:
    return shared_data / "coco_mini"


@pytest.fixture(scope="session")
def voc_sample(shared_data: Path) -> Path:
    return shared_data / "voc2012_sample"


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    """Reset torch to the suite's thread count before every test (a test may still raise it itself)."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
