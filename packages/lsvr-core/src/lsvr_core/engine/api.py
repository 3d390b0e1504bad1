"""What the ``lsvr run / eval / predict`` verbs call. Each function returns the process exit code.

User mistakes raise :class:`~lsvr_core.errors.LsvrError` (the CLI prints the message, no traceback).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lsvr_core.engine import checkpoint as C
from lsvr_core.engine import distributed as D
from lsvr_core.errors import LsvrError

if TYPE_CHECKING:
    from lsvr_core.config.sections import RunConfigBase
    from lsvr_core.plugins import PluginManager



def run(cfg: RunConfigBase, manager: PluginManager, *, resume: str | None = None, nproc_per_node: int = 1,
        source: str = "", overrides: list[str] | None = None, plugin_files: list[str] | None = None) -> int:
    """Train (and evaluate) ``cfg``.

    Args:
        cfg: the validated run config.
        manager: the plugin manager.
        resume: a checkpoint path, ``"auto"`` (the latest run's checkpoint) or None. Without ``resume`` a
            work dir that already holds a run is never reused: see :mod:`lsvr_core.engine.rundir`.
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
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="lsvr_launch_", delete=False) as fh:
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


def _load_model(cfg: RunConfigBase, manager: PluginManager, checkpoint: str, device: torch.device,
                ckpt: Any = None) -> torch.nn.Module:
    from lsvr_core.engine.build import build_model

    model = build_model(cfg, manager)
    C.load_model_state(model, C.model_state(C.load(checkpoint) if ckpt is None else ckpt, checkpoint), checkpoint)
    model.to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def evaluate(cfg: RunConfigBase, manager: PluginManager, *, checkpoint: str) -> int:
    """Evaluate ``checkpoint`` on ``data.val`` (first ``eval.max_images``) and print the metrics table.

    Runs on every process of a torchrun job (predictions are gathered to rank 0).
    """
    from lsvr_core.engine.build import build_dataset, build_evaluator, setup_runtime
    from lsvr_core.engine.corrupt import SkipLog
    from lsvr_core.engine.data import shutdown_workers
    from lsvr_core.engine.evaluate import eval_subset, predict_dataset, score
    from lsvr_core.engine.optim import resolve_precision
    from lsvr_core.engine.progress import console_logger, metrics_table

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
                                    channels_last=cfg.runtime.channels_last,
                                    skip_log=SkipLog(logging.getLogger("lsvr.engine")), log=console_logger())
        if dist.is_main:
            metrics = score(evaluator, preds)
            print(f"{checkpoint}: {len(preds)} images")
            print(metrics_table(metrics))
        return 0
    finally:
        shutdown_workers()
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


@torch.no_grad()
def predict(cfg: RunConfigBase, manager: PluginManager, *, checkpoint: str | None, images: list[str],
            out_dir: str | None = None, score_thresh: float = 0.3, model: Any = None) -> int:
    """Draw the predictions on ``images`` as PNGs and write ``results.json`` (COCO results format, written by
    :func:`lsvr_core.results.predictions_to_results`: boxes, and segmentation RLEs / keypoints when the model
    predicts them).

    Output names, image ids and class names: :mod:`lsvr_core.engine.predict_io` (distinct per input path;
    class names from the checkpoint, so no annotation file is needed). An input that is missing or cannot be
    decoded (including images too large to decode safely) is reported and skipped; ``results.json`` is
    always written.

    ``model`` replaces the checkpoint's detector by any callable with its inference interface
    (``model(batch) -> list[Predictions]``, original frame), e.g. an exported model
    (:class:`lsvr_core.export.runtime.ExportedDetector`, whose ``class_names`` / ``category_ids`` are used).

    Returns:
        0, or 1 when some inputs were skipped.
    """
    from lsvr_core.engine.build import setup_runtime
    from lsvr_core.engine.evaluate import to_cpu_fp32
    from lsvr_core.engine.optim import resolve_precision
    from lsvr_core.engine.predict_io import checkpoint_classes, image_ids, output_names, predict_dataset_for
    from lsvr_core.results import predictions_to_results
    from lsvr_core.structures import collate
    from lsvr_core.visualize import draw_predictions, read_image, save_png

    setup_runtime(cfg)
    device = D.resolve_device(cfg.runtime.device)
    if model is None:
        if checkpoint is None:
            raise LsvrError("predict needs --checkpoint (or an exported model with --engine)")
        ckpt = C.load(checkpoint)
        names, category_ids = checkpoint_classes(ckpt)
    else:  # an exported model (lsvr_core.export.runtime.ExportedDetector) carries its class names
        ckpt, device = None, torch.device("cpu")
        names, category_ids = getattr(model, "class_names", None), getattr(model, "category_ids", None)
    dataset = predict_dataset_for(cfg, manager, need_annotations=names is None)
    if names is None:
        names = getattr(dataset, "classes", None)
        cat = getattr(dataset, "label_to_cat_id", None)
        category_ids = list(cat) if cat is not None else None
    if ckpt is not None and checkpoint is not None:
        model = _load_model(cfg, manager, checkpoint, device, ckpt=ckpt)
    precision = resolve_precision(cfg.runtime.precision, device)
    out = Path(out_dir) if out_dir else Path(cfg.runtime.work_dir) / "predict"
    ids, id_source = image_ids(images)
    if id_source == "positions" and len(images) > 1:
        print("image ids are the inputs' positions (1, 2, ...): their file names do not give distinct ids",
              file=sys.stderr)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    for name, png, image_id in zip(images, output_names(images), ids, strict=True):
        path = Path(name)
        try:
            if not path.is_file():
                raise OSError("file not found")
            image = read_image(path)
        except Exception as err:  # OSError, PIL's DecompressionBombError, ...: report, skip, go on
            reason = str(err) if isinstance(err, OSError) else f"{type(err).__name__}: {err}"
            failed.append(f"{path}: {reason}")
            print(f"lsvr: skipped {path}: cannot read it: {reason}", file=sys.stderr)
            continue
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
              f"{save_png(drawn, out / png)} (image id {image_id})")
        results += predictions_to_results(pred, (int(image.shape[-2]), int(image.shape[-1])),
                                          category_ids=list(category_ids) if category_ids is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results))
    skipped = f"; {len(failed)} of {len(images)} inputs skipped" if failed else ""
    print(f"wrote {out / 'results.json'} ({len(results)} detections{skipped})", file=sys.stderr)
    return 1 if failed else 0
