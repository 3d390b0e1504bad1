"""The centernet plugin: registers its neck, head, heatmap loss, target field and recipe (torch-free).

Everything comes from ``lsvr_core.api``, the public API of lsvr-core; nothing else of lsvr is imported.
"""

from __future__ import annotations

from lsvr_centernet import config as c
from lsvr_centernet.fields import CENTERS
from lsvr_core.api import ComponentSpec, RecipeSpec, TargetFieldSpec, hookimpl, recipes_from_dir

_P = "lsvr_centernet"


@hookimpl
def lsvr_necks() -> list[ComponentSpec]:
    return [ComponentSpec("neck", "centernet_upsample", c.UpsampleNeckConfig, f"{_P}.neck:build_upsample_neck",
                          "CenterNet's ResNet neck: c5 up-sampled x8 to stride 4 (optional lateral skips)")]


@hookimpl
def lsvr_heads() -> list[ComponentSpec]:
    return [ComponentSpec("head", "centernet", c.CenterNetHeadConfig, f"{_P}.head:build_centernet_head",
                          "CenterNet: Gaussian centre heatmap + size + offset, 3x3 max-pool peaks", ("bbox",))]


@hookimpl
def lsvr_losses() -> list[ComponentSpec]:
    return [ComponentSpec("loss", "centernet_focal", c.CenterNetFocalLossConfig, f"{_P}.losses:build_centernet_focal",
                          "penalty-reduced focal loss on a Gaussian heatmap (CenterNet eq. 1)",
                          implements=("heatmap_loss",))]


@hookimpl
def lsvr_target_fields() -> list[TargetFieldSpec]:
    return [CENTERS]


@hookimpl
def lsvr_recipes() -> list[RecipeSpec]:
    return recipes_from_dir("centernet", f"{_P}.recipes", {
        "synthetic": "CenterNet, ResNet-18 + up-sampling neck (stride 4), synthetic shapes, CPU in minutes",
    })
