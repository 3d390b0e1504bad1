"""Built-in run loggers, wired through the lifecycle hooks of :mod:`lsvr_core.hookspecs`.

The wandb logger is off unless ``logging.wandb.enabled: true``. It acts on rank 0 only, ``import wandb``
happens inside the hooks (so registration stays torch- and wandb-free), and it logs the resolved config at
run start, training scalars (losses, lr) every ``logging.interval`` iterations, evaluation metrics at the
end of each evaluated epoch, and the drawn predictions. ``mode: offline`` writes the run under
``$WANDB_DIR`` (default: the work dir) for a later ``wandb sync``; no network is used. The wandb run id is
kept in ``work_dir/wandb_run_id.txt`` so that ``--resume`` continues the same wandb run.
"""

from __future__ import annotations

import os
from typing import Any

from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import RunInfo

_KEY = "wandb"


def _settings(run: RunInfo) -> Any:
    section = getattr(getattr(run.config, "logging", None), "wandb", None)
    return section if section is not None and section.enabled and run.is_main_process else None


def _handle(run: RunInfo) -> Any:
    return run.extras.get(_KEY)


@hookimpl
def lsvr_run_start(run: RunInfo) -> None:
    settings = _settings(run)
    if settings is None:
        return
    try:
        import wandb
    except ImportError:
        from lsvr_core.errors import ConfigError

        raise ConfigError("logging.wandb.enabled is true but wandb is not installed: pip install wandb") from None
    id_file = run.work_dir / "wandb_run_id.txt"  # a resumed lsvr run continues the same wandb run
    run_id = id_file.read_text().strip() if run.resumed and id_file.is_file() else None
    handle = wandb.init(
        id=run_id,
        project=settings.project,
        entity=settings.entity,
        name=settings.name or run.work_dir.name,
        mode=settings.mode,
        dir=os.environ.get("WANDB_DIR") or str(run.work_dir),
        config=run.config.model_dump(mode="json"),
        resume="allow" if run_id else None,
        reinit="finish_previous",
    )
    id_file.write_text(handle.id + "\n")
    run.extras[_KEY] = handle


@hookimpl
def lsvr_log_metrics(run: RunInfo, step: int, metrics: dict[str, float]) -> None:
    handle = _handle(run)
    if handle is not None:
        handle.log({f"train/{k}": v for k, v in metrics.items()}, step=step)


@hookimpl
def lsvr_epoch_end(run: RunInfo, epoch: int, iteration: int, metrics: dict[str, float]) -> None:
    handle = _handle(run)
    if handle is not None and metrics:
        handle.log({**{f"val/{k}": v for k, v in metrics.items()}, "epoch": epoch}, step=iteration)


@hookimpl
def lsvr_log_images(run: RunInfo, step: int, images: dict[str, Any]) -> None:
    handle = _handle(run)
    if handle is None or not images:
        return
    import wandb

    handle.log({"predictions": [wandb.Image(str(img) if not hasattr(img, "shape") else img, caption=caption)
                                for caption, img in images.items()]}, step=step)


@hookimpl
def lsvr_run_end(run: RunInfo, status: str) -> None:
    handle = run.extras.pop(_KEY, None)
    if handle is not None:
        handle.finish(exit_code=0 if status == "completed" else 1)
