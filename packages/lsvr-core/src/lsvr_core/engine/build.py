"""Building what a run needs from the validated config: runtime settings, datasets, model, evaluator."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lsvr_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lsvr_core.config.sections import RunConfigBase
    from lsvr_core.plugins import PluginManager



def setup_runtime(cfg: RunConfigBase) -> None:
    """Apply ``runtime.threads``, seed every RNG with ``runtime.seed`` and honour ``runtime.deterministic``."""
    rt = cfg.runtime
    if rt.threads is not None:
        torch.set_num_threads(rt.threads)
    seed_everything(rt.seed)
    if rt.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def build_dataset(cfg: RunConfigBase, manager: PluginManager, *, train: bool) -> Any:
    """The train split (``train=True``, augmented) or the val split (``data.val``; ``train=False``).

    Raises:
        ConfigError: ``data.val`` is needed but not set.
        DataError: the dataset holds no image.
    """
    section = cfg.data.train if train else cfg.data.val
    if section is None:
        raise ConfigError("data.val is not set: evaluation needs a validation dataset")
    dataset = manager.build("dataset", section, root=cfg.data.root, train=train, task=cfg.task)
    if len(dataset) == 0:
        split = "train" if train else "val"
        raise DataError(f"data.{split} ({section.type}): the dataset is empty after loading and filtering; check its "
                        f"files, and the warnings above for what was dropped (on_bad_annotation, filter_empty)")
    if train and isinstance(getattr(dataset, "aug_seed", None), int):
        # augmentation follows runtime.seed as well as the dataset's own seed
        dataset.aug_seed = dataset.aug_seed * 1_000_003 + cfg.runtime.seed
    from lsvr_core.engine.corrupt import CorruptPolicy

    return CorruptPolicy(dataset, getattr(cfg.data, "on_corrupt", "error"), train=train)


def build_evaluator(cfg: RunConfigBase, manager: PluginManager, dataset: Any) -> Any | None:
    """The ``eval.evaluator`` over ``dataset``, or None when no evaluator is configured."""
    if cfg.eval.evaluator is None:
        return None
    return manager.build("evaluator", cfg.eval.evaluator, dataset=dataset, task=cfg.task)


def build_model(cfg: RunConfigBase, manager: PluginManager) -> nn.Module:
    """The detector (backbone -> neck -> head) of ``cfg.model``.

    ``model.init_from: torchvision`` turns on the backbone's ``pretrained`` option (ImageNet weights read
    from torch's cache; the backbone raises a clear error when they are not there offline).
    """
    from lsvr_core.models.detector import build_detector

    if cfg.model.init_from == "torchvision":
        backbone = cfg.model.backbone
        if "pretrained" not in type(backbone).model_fields:
            raise ConfigError(f"model.init_from=torchvision: backbone {backbone.type!r} has no 'pretrained' option")
        cfg = cfg.model_copy(deep=True)
        backbone = cfg.model.backbone.model_copy(update={"pretrained": True})  # the field exists (checked above)
        cfg.model.backbone = backbone
    return build_detector(cfg, manager)


def check_batch_size(cfg: RunConfigBase, num_images: int, world_size: int) -> None:
    """Refuse a global batch larger than the training set (the sampler would repeat images to fill it).

    Raises:
        ConfigError: ``data.batch_size * world_size > num_images``.
    """
    if cfg.data.batch_size * world_size > num_images:
        procs = f" x {world_size} processes" if world_size > 1 else ""
        raise ConfigError(f"data.batch_size={cfg.data.batch_size}{procs} is larger than the {num_images} training "
                          f"images; lower data.batch_size")
