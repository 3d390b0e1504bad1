"""Built-in TensorBoard logger (``logging.tensorboard: true``), wired through the lifecycle hooks.

Writes event files to ``work_dir/tensorboard`` on rank 0 with :class:`torch.utils.tensorboard.SummaryWriter`:
training scalars as ``train/<name>`` every ``logging.interval`` iterations, evaluation metrics as
``val/<name>`` at each evaluated epoch (x axis: global iteration), and the drawn galleries / curves sent
through ``lsvr_log_images`` as images. ``tensorboard --logdir work_dirs`` shows every run. The imports happen
inside the hooks, so registration stays torch-free.
"""

from __future__ import annotations

from typing import Any

from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import RunInfo

_KEY = "tensorboard"


def _enabled(run: RunInfo) -> bool:
    return bool(getattr(getattr(run.config, "logging", None), "tensorboard", False)) and run.is_main_process


@hookimpl
def lsvr_run_start(run: RunInfo) -> None:
    if not _enabled(run):
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from lsvr_core.errors import ConfigError

        raise ConfigError("logging.tensorboard is true but tensorboard is not installed: "
                          "pip install tensorboard (or lsvr-core[tensorboard])") from None
    run.extras[_KEY] = SummaryWriter(log_dir=str(run.work_dir / "tensorboard"))


@hookimpl
def lsvr_log_metrics(run: RunInfo, step: int, metrics: dict[str, float]) -> None:
    writer = run.extras.get(_KEY)
    if writer is not None:
        for name, value in metrics.items():
            writer.add_scalar(f"train/{name}", float(value), global_step=step)


@hookimpl
def lsvr_epoch_end(run: RunInfo, epoch: int, iteration: int, metrics: dict[str, float]) -> None:
    writer = run.extras.get(_KEY)
    if writer is not None and metrics:
        for name, value in metrics.items():
            writer.add_scalar(f"val/{name}", float(value), global_step=iteration)
        writer.flush()


@hookimpl
def lsvr_log_images(run: RunInfo, step: int, images: dict[str, Any]) -> None:
    writer = run.extras.get(_KEY)
    if writer is None:
        return
    import numpy as np
    from PIL import Image

    for caption, img in images.items():
        arr = np.asarray(Image.open(img).convert("RGB")) if not hasattr(img, "shape") else np.asarray(img)
        writer.add_image(caption, arr, global_step=step, dataformats="HWC")
    writer.flush()


@hookimpl
def lsvr_run_end(run: RunInfo, status: str) -> None:
    writer = run.extras.pop(_KEY, None)
    if writer is not None:
        writer.close()
