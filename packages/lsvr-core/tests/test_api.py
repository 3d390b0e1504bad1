"""``lsvr_core.api``: importing it stays torch-free; every public name resolves."""

from __future__ import annotations

import subprocess
import sys


def test_api_import_does_not_import_torch() -> None:
    code = "import sys, lsvr_core.api; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_every_public_name_resolves() -> None:
    import lsvr_core.api as api

    missing = [name for name in api.__all__ if getattr(api, name, None) is None]
    assert missing == []


def test_unknown_name_lists_public_names() -> None:
    import pytest

    import lsvr_core.api as api

    with pytest.raises(AttributeError, match="public names: "):
        api.get_plugin_manager  # noqa: B018  (private on purpose)
