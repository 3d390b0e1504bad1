"""``lsvr predict`` inputs: output names and image ids per input path, class names, the test-time dataset.

* Output names: ``<stem>.png``; inputs whose stems collide get their parent folders prefixed until the names
  differ (``a/frame_001.jpg`` -> ``a_frame_001.png``, ``b/frame_001.jpg`` -> ``b_frame_001.png``); the same
  path given twice gets ``_2``, ``_3``, ...
* Image ids (``results.json``): the digits of each file name (COCO names such as ``000000000139.jpg`` keep
  their COCO id) when every input has digits and no two inputs share an id; otherwise the 1-based position
  of each input, for all of them.
* Class names and category ids come from the checkpoint (``meta.classes``, ``meta.category_ids``, written
  by training), so no annotation file is needed: the dataset is then built with ``annotations=False`` when
  its factory accepts that keyword (it only provides the test-time resize, ``prepare(image)``). Without them
  in the checkpoint, the config's val (or train) dataset is built as usual and provides them.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Any

from lsvr_core.errors import LsvrError


def output_names(paths: list[str]) -> list[str]:
    """A distinct PNG file name per input path (see the module docstring)."""
    parts = [list(Path(p).parent.parts) + [Path(p).stem] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["_".join(q for q in p[-d:] if q not in ("/", "")) for p, d in zip(parts, depth, strict=True)]
        counts = Counter(names)
        grow = [i for i, n in enumerate(names) if counts[n] > 1 and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}.png" if seen[name] == 1 else f"{name}_{seen[name]}.png")
    return out


def image_ids(paths: list[str]) -> tuple[list[int], str]:
    """Image ids per input path, and how they were chosen (``"file names"`` or ``"positions"``)."""
    digits = ["".join(ch for ch in Path(p).stem if ch.isdigit()) for p in paths]
    if all(digits):
        ids = [int(d) for d in digits]
        if len(set(ids)) == len(ids):
            return ids, "file names"
    return list(range(1, len(paths) + 1)), "positions"


def checkpoint_classes(ckpt: Any) -> tuple[list[str] | None, list[int] | None]:
    """``(class names, category ids)`` stored in a checkpoint's ``meta`` by training, or Nones."""
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict):
        return None, None
    names, cat_ids = meta.get("classes"), meta.get("category_ids")
    return (list(names) if names else None), (list(cat_ids) if cat_ids else None)


def predict_dataset_for(cfg: Any, manager: Any, *, need_annotations: bool) -> Any:
    """The dataset whose ``prepare(image)`` gives the test-time input (and, if needed, class names)."""
    section = cfg.data.val if cfg.data.val is not None else cfg.data.train
    kwargs: dict[str, Any] = {"root": cfg.data.root, "train": False, "task": cfg.task}
    if not need_annotations:
        params = inspect.signature(manager.get("dataset", section.type).load()).parameters
        if "annotations" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs["annotations"] = False
    try:
        return manager.build("dataset", section, **kwargs)
    except LsvrError as err:
        if need_annotations:
            raise LsvrError(f"{err} (predict reads class names from the dataset because the checkpoint holds "
                            f"none; checkpoints written by `lsvr run` hold them)") from None
        raise


def checkpoint_meta(dataset: Any) -> dict[str, Any]:
    """What training stores in a checkpoint's ``meta`` for predict: class names and category ids."""
    out: dict[str, Any] = {}
    names = getattr(dataset, "classes", None)
    if names:
        out["classes"] = [str(n) for n in names]
    cat_ids = getattr(dataset, "label_to_cat_id", None)
    if cat_ids is not None and len(cat_ids):
        out["category_ids"] = [int(c) for c in cat_ids]
    return out
