"""Fixtures shared by every test folder of the monorepo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
