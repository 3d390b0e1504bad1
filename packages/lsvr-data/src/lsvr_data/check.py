"""``lsvr data check CONFIG``: decode every image and validate every annotation of a run config's datasets.

For ``data.train`` and ``data.val`` the dataset is built the way a run builds it, except that bad annotations
are counted instead of raised (``on_bad_annotation: skip``) and missing image files are kept (``check_images:
false``) so that they show up as unreadable. Then every item is loaded without augmentation: the image is
decoded and checked against the annotated size, and the annotations are turned into targets (landmarks and
masks included). The summary table has one row per split; the problems are listed below it (the first 20 of
each kind). Exit code 0 when every image loads, 2 otherwise (annotations that would be skipped are reported
but do not fail the check).
"""

from __future__ import annotations

import sys
from typing import Any

from lsvr_core.api import ConfigError, DataError


def _relaxed(section: Any) -> Any:
    update = {k: v for k, v in (("on_bad_annotation", "skip"), ("check_images", False))
              if k in type(section).model_fields}
    return section.model_copy(update=update)


def check_split(dataset: Any) -> tuple[int, list[str]]:
    """Load every item of ``dataset`` (no augmentation); return (number of items, error messages)."""
    errors = []
    load = getattr(dataset, "original_sample", None)
    for i in range(len(dataset)):
        try:
            load(i) if callable(load) else dataset[i]
        except Exception as err:  # report every kind of failure, one line each
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            errors.append(text if isinstance(err, DataError) else f"item {i}: {type(err).__name__}: {text}")
    return len(dataset), errors


def data_check(cfg: Any, manager: Any, out: Any = sys.stdout, limit: int = 20) -> int:
    """Check ``cfg``'s train and val datasets; print the table and the problems; return the exit code."""
    rows, problems = [], []
    for split in ("train", "val"):
        section = getattr(cfg.data, split)
        if section is None:
            continue
        dataset = manager.build("dataset", _relaxed(section), root=cfg.data.root, train=False, task=cfg.task)
        n, errors = check_split(dataset)
        bad = getattr(getattr(dataset, "bad", None), "skipped", [])
        kept = sum(len(r) for r in getattr(dataset, "records", []))
        reasons = dataset.bad.reason_counts() if bad else ""
        rows.append((f"data.{split}", section.type, n, n - len(errors), len(errors), kept, len(bad), reasons))
        problems += [f"data.{split}: unreadable: {e}" for e in errors[:limit]]
        problems += [f"data.{split}: {src}: annotation {a}: {why}" for src, a, why in bad[:limit]]
        if len(errors) > limit or len(bad) > limit:
            problems.append(f"data.{split}: ... ({len(errors)} unreadable, {len(bad)} bad annotations in all)")
    if not rows:
        raise ConfigError("the config has neither data.train nor data.val")
    head = ("split", "type", "images", "loaded", "unreadable", "annotations kept", "annotations dropped", "why")
    table = [head] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for k, row in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |", file=out)
        if k == 0:
            print("|-" + "-|-".join("-" * w for w in widths) + "-|", file=out)
    for line in problems:
        print(line, file=out)
    unreadable = sum(r[4] for r in rows)
    print(f"{'FAILED' if unreadable else 'ok'}: {unreadable} unreadable image(s), "
          f"{sum(r[6] for r in rows)} dropped annotation(s)", file=out)
    return 2 if unreadable else 0
