#!/usr/bin/env bash
# Lint and type-check the repository: ruff (config in pyproject.toml), mypy (scope: [tool.mypy] files) and
# import-linter when pyproject.toml has a [tool.importlinter] section. Runs every tool, then exits 1 if any
# failed. Needs the tools of requirements-dev.txt on PATH (.ci/run puts .venv/bin first).
set -uo pipefail
cd "$(dirname "$0")/.."
rc=0
echo "== ruff check ."
ruff check . || rc=1
echo "== mypy"
mypy || rc=1
if grep -q '^\[tool\.importlinter\]' pyproject.toml; then
  echo "== lint-imports"
  lint-imports --no-cache || rc=1
fi
exit "$rc"
