"""The sections of a run config (``task``, ``model``, ``data``, ``optim``, ``schedule``, ``runtime``, ``eval``,
``logging``).

Fields annotated with a slot base (``BackboneConfig``, ``HeadConfig``, ``DatasetConfig``, ...) are replaced at
start-up by a discriminated union of the registered components (:mod:`lsvr_core.config.resolve`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lsvr_core.specs import BackboneConfig, DatasetConfig, EvaluatorConfig, HeadConfig, NeckConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(Section):
    """Detector = backbone -> neck -> head; images are normalised by ``pixel_mean``/``pixel_std`` (0-255 RGB)."""

    backbone: BackboneConfig
    neck: NeckConfig | None = None
    head: HeadConfig
    num_classes: int = Field(gt=0, description="number of foreground classes")
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    init_from: str | None = Field(None, description="checkpoint path, or 'torchvision' for ImageNet backbone weights")
    init_from_min_fraction: float = Field(0.5, ge=0, le=1, description="init_from: least fraction of the model's "
                                          "values that must load (else exit 2)")
    init_from_strict: bool = Field(True, description="false: loading too little from init_from only warns")


class DataSection(Section):
    """Datasets and loaders. ``root`` is the default root of both splits; relative paths in dataset configs
    are taken relative to it."""

    root: Path = Path("data/coco")
    train: DatasetConfig
    val: DatasetConfig | None = None
    batch_size: int = Field(2, gt=0, le=4096, description="images per process per iteration")
    val_batch_size: int = Field(1, gt=0, le=4096)
    num_workers: int = Field(2, ge=0, le=256)
    pin_memory: bool = True
    aspect_ratio_grouping: bool = True
    size_divisor: int = Field(32, gt=0, le=4096, description="batched images are padded to a multiple of this")
    on_corrupt: Literal["error", "skip"] = Field(
        "error", description="an image that cannot be loaded: stop the run, or skip it (logged, in metrics.jsonl)")


class OptimSection(Section):
    """Optimizer with parameter groups. ``lr`` is for the whole (global) batch as written."""

    type: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(1e-4, ge=0)
    no_decay_norm_bias: bool = False
    grad_clip: float | None = Field(None, gt=0, description="max global L2 norm of gradients")


class ScheduleSection(Section):
    """LR schedule: linear warm-up, then ``step`` (multi-step) or ``cosine`` decay, per iteration."""

    epochs: int = Field(12, gt=0)
    max_iters: int | None = Field(None, gt=0, description="stop after this many iterations (a cap)")
    policy: Literal["step", "cosine", "constant"] = "step"
    milestones: list[int] = Field(default_factory=lambda: [8, 11], description="epochs at which lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    warmup_iters: int = Field(500, ge=0)
    warmup_ratio: float = Field(0.001, gt=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")


class EMASection(Section):
    """Exponential moving average of the weights (:mod:`lsvr_core.engine.ema`): the averaged weights are what
    is evaluated and saved as ``model``."""

    decay: float = Field(0.9998, gt=0, lt=1, description="decay after the ramp-up")
    tau: float = Field(2000.0, gt=0, description="ramp-up: decay * (1 - exp(-updates / tau))")


class CheckpointSection(Section):
    """What a run keeps in ``work_dir/checkpoints`` (``last.pt`` is always written and is always the newest)."""

    keep_last: int = Field(1, ge=1, le=1000, description="most recent checkpoints kept, last.pt included: "
                           "1 keeps last.pt only; N > 1 also keeps the N-1 newest epoch_N.pt")
    save_best: bool = Field(True, description="keep best.pt, the checkpoint with the best eval.metric")


class RuntimeSection(Section):
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$",
                        description="'auto', 'cpu', 'cuda' or 'cuda:N' (also 'mps', 'xpu', 'xpu:N')")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    seed: int = 0
    deterministic: bool = False
    work_dir: Path = Path("work_dirs/run")
    channels_last: bool = False
    checkpoint_interval: int = Field(1, gt=0, description="epochs between numbered checkpoints (keep_last > 1)")
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    threads: int | None = Field(None, gt=0, le=1024, description="torch CPU threads (default: torch's choice)")
    ema: EMASection | None = Field(None, description="keep an EMA of the weights (evaluated and saved)")


class EvalSection(Section):
    evaluator: EvaluatorConfig | None = None
    interval: int = Field(1, gt=0, description="evaluate every N epochs (and always at the end)")
    metric: str = Field("bbox/AP", description="main metric, used to keep the best checkpoint")
    max_images: int | None = Field(None, gt=0, description="evaluate on the first N val images only")
    num_draw: int = Field(4, ge=0, description="drawn predictions saved per evaluation")


class WandbSection(Section):
    enabled: bool = False
    mode: Literal["online", "offline"] = "offline"
    project: str = "lsvr"
    entity: str | None = None
    name: str | None = None


class LoggingSection(Section):
    interval: int = Field(20, gt=0, description="iterations between log lines")
    wandb: WandbSection = WandbSection()
    tensorboard: bool = Field(False, description="write TensorBoard event files to work_dir/tensorboard")


class RunConfigBase(Section):
    """The root of a run config; resolved against the registry by :func:`lsvr_core.config.build_config_model`."""

    task: str = Field("bbox", description="bbox, segm, pose_bbox, pose_kbox, ... (heads list what they support)")
    model: ModelSection
    data: DataSection
    optim: OptimSection = OptimSection()
    schedule: ScheduleSection = ScheduleSection()
    runtime: RuntimeSection = RuntimeSection()
    eval: EvalSection = EvalSection()
    logging: LoggingSection = LoggingSection()

    @model_validator(mode="after")
    def _milestones_within_epochs(self) -> RunConfigBase:
        bad = [m for m in self.schedule.milestones if m > self.schedule.epochs]
        if bad and self.schedule.policy == "step":
            raise ValueError(f"schedule.milestones {bad} exceed schedule.epochs={self.schedule.epochs}")
        return self
