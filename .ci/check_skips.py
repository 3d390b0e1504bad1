"""Summarise the skip report the root conftest writes (LSVR_SKIP_REPORT) and fail on non-gpu skips.

Usage: python .ci/check_skips.py REPORT.jsonl. A skip counts as ``gpu`` when the test carries the ``gpu``
marker or its reason names CUDA or a GPU (e.g. ``skipif(not torch.cuda.is_available(), reason="needs CUDA")``).
Prints the counts and every other skip; exit code 1 when there is any other skip, 0 otherwise.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

GPU_REASON = re.compile(r"\b(cuda|gpu)\b", re.IGNORECASE)


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    gpu = [r for r in records if r["gpu_marker"] or GPU_REASON.search(r["reason"])]
    other = [r for r in records if r not in gpu]
    print(f"skipped tests: {len(records)} (gpu: {len(gpu)}, other: {len(other)})")
    for r in other:
        print(f"  NOT ALLOWED IN CI: {r['nodeid']}: {r['reason']}")
    return 1 if other else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
