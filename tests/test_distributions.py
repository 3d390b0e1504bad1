"""Cross-package checks: every distribution loads, every shipped recipe validates against `lsvr schema`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

EXPECTED = {"lsvr-core", "lsvr-ops-triton", "lsvr-data", "lsvr-lsnet", "lsvr-lesa", "lsvr-mutualguide"}


def lsvr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lsvr_core.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def test_plugins_json_lists_all_six_distributions_ok() -> None:
    res = lsvr("plugins", "--json")
    assert res.returncode == 0, res.stderr
    records = json.loads(res.stdout)
    by_dist = {r["distribution"]: r for r in records}
    assert EXPECTED <= set(by_dist), sorted(by_dist)
    bad = {r["name"]: r["error"] for r in records if r["status"] != "ok"}
    assert not bad, bad
    assert all(r["version"] == "0.1.0" for r in records if r["distribution"] in EXPECTED)


def _recipes() -> list[dict]:
    res = lsvr("recipes", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _merged(ref: str) -> dict:
    from lsvr_core.config import load_raw
    from lsvr_core.plugins import get_plugin_manager

    return load_raw(ref, get_plugin_manager())


def test_every_recipe_validates_against_the_json_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(lsvr("schema").stdout)
    recipes = _recipes()
    assert recipes, "no recipes registered"
    for recipe in recipes:
        jsonschema.validate(_merged(recipe["ref"]), schema)  # raises with the failing path


def test_schema_rejects_a_recipe_with_a_typo() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(lsvr("schema").stdout)
    data = _merged(_recipes()[0]["ref"])
    data["optim"] = {**data.get("optim", {}), "learning_rate": 0.1}
    with pytest.raises(jsonschema.ValidationError, match="learning_rate"):
        jsonschema.validate(data, schema)
    data = _merged(_recipes()[0]["ref"])
    data["model"]["backbone"]["type"] = "resnett"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)


def test_every_recipe_passes_lsvr_validate() -> None:
    for recipe in _recipes():
        res = lsvr("validate", recipe["ref"])
        assert res.returncode == 0, f"{recipe['ref']}: {res.stderr}"


def test_exactly_one_default_recipe_wins() -> None:
    defaults = [r for r in _recipes() if r["default"]]
    assert len(defaults) == 1
