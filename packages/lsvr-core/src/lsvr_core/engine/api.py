"""What the ``lsvr run / eval / predict`` verbs call. Each function returns the process exit code.

User mistakes raise :class:`~lsvr_core.errors.LsvrError` (the CLI prints the message, no traceback).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from lsvr_core.engine import checkpoint as C
from lsvr_core.engine import distributed as D
from lsvr_core.errors import LsvrError


def run(cfg: Any, manager: Any, *, resume: str | None = None, nproc_per_node: int = 1, source: str = "",
        overrides: list[str] | None = None, plugin_files: list[str] | None = None) -> int:
    """Train (and evaluate) ``cfg``.

    Args:
        cfg: the validated run config.
        manager: the plugin manager.
        resume: a checkpoint path, ``"auto"`` (``work_dir/checkpoints/last.pt``) or None.
        nproc_per_node: > 1 (and not already inside a launched job) starts that many local processes that
            run the resolved config with DDP.
        source, overrides: how the config was given (logged).
        plugin_files: ``--plugin`` files, passed on to launched processes.
    Returns:
        0 when training finished, 128 + signal number when stopped by SIGINT/SIGTERM (checkpoint saved).
    """
    from lsvr_core.config import config_to_yaml
    from lsvr_core.engine.trainer import Trainer

    if nproc_per_node > 1 and D.env_world_size() <= 1:
        work_dir = Path(cfg.runtime.work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="launch_", dir=work_dir, delete=False) as fh:
            fh.write(config_to_yaml(cfg))
        try:
            return D.launch(Path(fh.name), nproc_per_node, resume=resume, plugin_files=list(plugin_files or []))
        finally:
            Path(fh.name).unlink(missing_ok=True)
    dist, device = D.setup(cfg.runtime.device)
    try:
        label = source + ("" if not overrides else " " + " ".join(f"-o {o}" for o in overrides))
        return Trainer(cfg, manager, dist=dist, device=device, resume=resume, source=label).fit()
    finally:
        D.cleanup()


def _load_model(cfg: Any, manager: Any, checkpoint: str, device: torch.device) -> torch.nn.Module:
    from lsvr_core.engine.build import build_model

    model = build_model(cfg, manager)
    state = C.model_state(C.load(checkpoint), checkpoint)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise LsvrError(f"{checkpoint}: does not match the config's model: {str(err).splitlines()[0]}") from None
    model.to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def evaluate(cfg: Any, manager: Any, *, checkpoint: str) -> int:
    """Evaluate ``checkpoint`` on ``data.val`` (first ``eval.max_images``) and print the metrics table.

    Runs on every process of a torchrun job (predictions are gathered to rank 0).
    """
    from lsvr_core.engine.build import build_dataset, build_evaluator, setup_runtime
    from lsvr_core.engine.evaluate import eval_subset, predict_dataset, score
    from lsvr_core.engine.optim import resolve_precision
    from lsvr_core.engine.progress import metrics_table

    if cfg.eval.evaluator is None:
        raise LsvrError("eval.evaluator is not set: nothing to score the predictions with")
    dist, device = D.setup(cfg.runtime.device)
    try:
        setup_runtime(cfg)
        val_ds = build_dataset(cfg, manager, train=False)
        evaluator = build_evaluator(cfg, manager, val_ds) if dist.is_main else None
        model = _load_model(cfg, manager, checkpoint, device)
        precision = resolve_precision(cfg.runtime.precision, device)
        if cfg.eval.test_time_aug.enabled:
            from lsvr_core.engine.tta import predict_dataset_tta

            preds = predict_dataset_tta(model, eval_subset(val_ds, cfg.eval.max_images), cfg.eval.test_time_aug,
                                        device=device, precision=precision, dist=dist,
                                        size_divisor=cfg.data.size_divisor)
        else:
            preds = predict_dataset(model, eval_subset(val_ds, cfg.eval.max_images), device=device,
                                    precision=precision, dist=dist, batch_size=cfg.data.val_batch_size,
                                    num_workers=cfg.data.num_workers, size_divisor=cfg.data.size_divisor,
                                    channels_last=cfg.runtime.channels_last)
        if dist.is_main:
            metrics = score(evaluator, preds)
            print(f"{checkpoint}: {len(preds)} images")
            print(metrics_table(metrics))
        return 0
    finally:
        D.cleanup()


def _prepare(dataset: Any, image: torch.Tensor, image_id: int) -> tuple[torch.Tensor, Any]:
    """The model input for one decoded image: the dataset's ``prepare(image)`` when it has one, else the
    image as is (scale 1)."""
    from lsvr_core.structures import Targets

    prepare = getattr(dataset, "prepare", None)
    if callable(prepare):
        out, meta = prepare(image)
        meta.image_id = image_id
        return out, meta
    h, w = image.shape[-2:]
    return image, Targets(boxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.int64), image_id=image_id,
                          orig_size=(h, w), image_size=(h, w))


def coco_results(pred: Any, category_ids: list[int] | None) -> list[dict[str, Any]]:
    """COCO results records (``bbox`` xywh, ``score``, ``category_id``, optional ``keypoints`` and RLE
    ``segmentation``) of one image's original-frame predictions."""
    out = []
    for i in range(len(pred)):
        x0, y0, x1, y1 = pred.boxes[i].tolist()
        label = int(pred.labels[i])
        rec: dict[str, Any] = {"image_id": pred.image_id,
                               "category_id": category_ids[label] if category_ids else label + 1,
                               "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                               "score": round(float(pred.scores[i]), 5)}
        if pred.keypoints is not None:
            rec["keypoints"] = [round(v, 2) for v in pred.keypoints[i].flatten().tolist()]
        if pred.masks is not None and len(pred.masks):
            import numpy as np
            from pycocotools import mask as mask_util

            rle = mask_util.encode(np.asfortranarray((pred.masks[i] > 0.5).numpy().astype(np.uint8)))
            rec["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        out.append(rec)
    return out


@torch.no_grad()
def predict(cfg: Any, manager: Any, *, checkpoint: str, images: list[str], out_dir: str | None = None,
            score_thresh: float = 0.3) -> int:
    """Draw the predictions on ``images`` as PNGs and write ``results.json`` (COCO results format).

    Image ids are the file names' digits when they have some (COCO names), else the position in ``images``.
    Category ids come from the val dataset's ``label_to_cat_id`` when it has them, else label + 1.
    """
    from lsvr_core.engine.build import setup_runtime
    from lsvr_core.engine.evaluate import to_cpu_fp32
    from lsvr_core.engine.optim import resolve_precision
    from lsvr_core.structures import collate
    from lsvr_core.visualize import draw_predictions, read_image, save_png

    setup_runtime(cfg)
    device = D.resolve_device(cfg.runtime.device)
    section = cfg.data.val if cfg.data.val is not None else cfg.data.train
    dataset = manager.build("dataset", section, root=cfg.data.root, train=False, task=cfg.task)
    names = getattr(dataset, "classes", None)
    category_ids = getattr(dataset, "label_to_cat_id", None)
    model = _load_model(cfg, manager, checkpoint, device)
    precision = resolve_precision(cfg.runtime.precision, device)
    out = Path(out_dir) if out_dir else Path(cfg.runtime.work_dir) / "predict"
    results: list[dict[str, Any]] = []
    for pos, name in enumerate(images):
        path = Path(name)
        if not path.is_file():
            raise LsvrError(f"image not found: {path}")
        try:
            image = read_image(path)
        except OSError as err:
            raise LsvrError(f"cannot decode image {path}: {err}") from None
        digits = "".join(ch for ch in path.stem if ch.isdigit())
        image_id = int(digits) if digits else pos
        if cfg.eval.test_time_aug.enabled:
            from lsvr_core.engine.tta import predict_tta

            pred = predict_tta(model, image, image_id, cfg.eval.test_time_aug, device=device, precision=precision,
                               size_divisor=cfg.data.size_divisor)
        else:
            batch = collate([_prepare(dataset, image, image_id)], cfg.data.size_divisor).to(device)
            with precision.autocast():
                pred = to_cpu_fp32(model(batch)[0])
        drawn = draw_predictions(image, pred, names, score_thresh)
        print(f"{path}: {int((pred.scores >= score_thresh).sum())} detections >= {score_thresh} -> "
              f"{save_png(drawn, out / f'{path.stem}.png')}")
        results += coco_results(pred, list(category_ids) if category_ids is not None else None)
    (out / "results.json").write_text(json.dumps(results))
    print(f"wrote {out / 'results.json'} ({len(results)} detections)", file=sys.stderr)
    return 0
