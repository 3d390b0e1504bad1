"""COCO evaluation backends: pycocotools (the reference), faster-coco-eval and hotcoco.

All three implement the COCOeval protocol (``COCO(dataset_dict)``, ``loadRes``, ``COCOeval(gt, dt, iou_type)``,
``params.imgIds``, ``evaluate``/``accumulate``/``summarize``, ``stats``, ``eval["precision"]``) and give the same
12 (keypoints: 10) stats; ``tests/test_coco_backends.py`` checks that on coco_mini and on imperfect synthetic
detections, and ``tools/bench_eval.py`` measures the speed at COCO-val scale.

``auto`` picks the fastest installed backend: hotcoco, then faster-coco-eval, then pycocotools.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from lsvr_core.api import ConfigError

BACKENDS = ("pycocotools", "faster_coco_eval", "hotcoco")
AUTO_ORDER = ("hotcoco", "faster_coco_eval", "pycocotools")
_MODULES = {"pycocotools": "pycocotools", "faster_coco_eval": "faster_coco_eval", "hotcoco": "hotcoco"}


def available_backends() -> list[str]:
    """The installed backends, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if importlib.util.find_spec(_MODULES[b]) is not None]


def resolve_backend(name: str) -> str:
    """``auto`` -> the fastest installed backend; an explicit name must be installed.

    Raises:
        ConfigError: unknown name, or the named backend is not installed (says how to install it).
    """
    if name == "auto":
        installed = available_backends()
        return next(b for b in AUTO_ORDER if b in installed)
    if name not in BACKENDS:
        raise ConfigError(f"eval.evaluator.backend={name!r}: valid backends are auto, {', '.join(BACKENDS)}")
    if name not in available_backends():
        raise ConfigError(f"eval.evaluator.backend={name!r} is not installed (pip install {name.replace('_', '-')})")
    return name


def _classes(backend: str) -> tuple[Any, Any]:
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO as FCOCO
        from faster_coco_eval import COCOeval_faster

        return FCOCO, COCOeval_faster
    import hotcoco

    return hotcoco.COCO, hotcoco.COCOeval


def load_gt(dataset: dict[str, Any], backend: str) -> Any:
    """The backend's ground-truth object for a COCO-format annotation dict (``images``, ``annotations``,
    ``categories``), built quietly."""
    coco_cls, _ = _classes(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            gt = coco_cls()
            gt.dataset = dataset
            gt.createIndex()
            return gt
        return coco_cls(dataset)


def evaluate(gt: Any, results: list[dict] | str, iou_type: str, backend: str,
             img_ids: Sequence[int] | None = None) -> tuple[list[float], Any]:
    """Run one COCOeval with ``backend`` on ``gt`` (from :func:`load_gt` of the same backend).

    Args:
        results: COCO result dicts (non-empty) or the path of a results JSON.
        iou_type: ``bbox``, ``segm`` or ``keypoints``.
        img_ids: restrict scoring to these image ids (default: every image of ``gt``).
    Returns:
        (the ``stats`` list: 12 values, 10 for keypoints; the evaluator object, whose ``eval["precision"]`` is
        ``[T, R, K, A, M]`` as in pycocotools).
    """
    _, eval_cls = _classes(backend)
    if backend == "hotcoco" and iou_type == "bbox" and isinstance(results, list):
        results = _bbox_array(results)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = eval_cls(gt, dt, iou_type)
        if img_ids is not None:
            params = ev.params
            params.imgIds = sorted(int(i) for i in img_ids)
            ev.params = params
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats], ev


def _bbox_array(results: list[dict]) -> np.ndarray:
    """Box results as hotcoco's (N, 7) float64 ``[image_id, x, y, w, h, score, category_id]`` array.

    hotcoco converts a list of dicts field by field (about 3 s for 410k detections) but reads this array in
    0.1 s; the stats are the same (``tests/test_coco_backends.py``). Only for bbox: with an array hotcoco takes a
    segmentation's area from its box, where pycocotools takes the mask's.
    """
    return np.array([(r["image_id"], *r["bbox"], r["score"], r["category_id"]) for r in results], dtype=np.float64)
