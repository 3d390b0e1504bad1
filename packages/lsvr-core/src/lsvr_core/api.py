"""The public API of lsvr-core: everything a plugin may import, and nothing else.

Plugins (ours and third parties') import core only from here::

    from lsvr_core.api import ComponentSpec, HeadConfig, hookimpl, Targets

Every other module of ``lsvr_core`` is private and may change without notice; import-linter contracts in CI
keep the plugins of this repository on this module.

Importing this module does not import torch: registration modules (``plugin.py``, config models) stay
torch-free. Names that need torch (structures, loss helpers, layers, the conformance suites) are loaded on
first access (PEP 562 module ``__getattr__``), so ``from lsvr_core.api import Targets`` imports torch only in
the module that asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lsvr_core.contracts import Backbone, Dataset, Evaluator, Head, Neck, Registry, ShapeSpec
from lsvr_core.errors import ConfigError, ConversionError, DataError, LsvrError, PluginError
from lsvr_core.fields import FIELD_KINDS, TargetFieldSpec, resolve_target_fields
from lsvr_core.hookspecs import hookimpl
from lsvr_core.specs import (
    KINDS,
    AssignerConfig,
    BackboneConfig,
    ComponentConfig,
    ComponentSpec,
    ConverterSpec,
    DatasetConfig,
    EvaluatorConfig,
    HeadConfig,
    LayerConfig,
    LossConfig,
    NeckConfig,
    RecipeSpec,
    RunInfo,
    Slot,
    recipes_from_dir,
)

if TYPE_CHECKING:  # the lazily loaded names, for type checkers and IDEs
    from lsvr_core.builtin.configs import FocalLossConfig, GIoULossConfig, L1LossConfig, SmoothL1LossConfig
    from lsvr_core.config import load_config
    from lsvr_core.export.postprocess import nms_keep, topk_pairs
    from lsvr_core.field_geometry import ExtraFields, field_affine, field_clip, field_hflip, field_select
    from lsvr_core.models.losses import weight_reduce
    from lsvr_core.models.norm import FrozenStagesMixin, batch_norm_layer, group_norm_layer, set_batch_norm_eval
    from lsvr_core.results import predictions_to_results
    from lsvr_core.structures import NUM_KEYPOINTS, Batch, Predictions, Targets, collate
    from lsvr_core.testing import (
        assert_gradients,
        check_assigner,
        check_backbone,
        check_config_roundtrip,
        check_head,
        check_loss,
        check_neck,
        feature_size,
        make_batch,
        make_features,
        make_targets,
    )

# name -> module that defines it; imported on first attribute access.
_LAZY: dict[str, str] = {
    # built-in loss configs that method configs reuse as defaults (torch-free, but kept off the eager path)
    "FocalLossConfig": "lsvr_core.builtin.configs",
    "GIoULossConfig": "lsvr_core.builtin.configs",
    "L1LossConfig": "lsvr_core.builtin.configs",
    "SmoothL1LossConfig": "lsvr_core.builtin.configs",
    # per-image records (torch)
    "Batch": "lsvr_core.structures",
    "Targets": "lsvr_core.structures",
    "Predictions": "lsvr_core.structures",
    "collate": "lsvr_core.structures",
    "NUM_KEYPOINTS": "lsvr_core.structures",
    # declared per-instance fields: the extras container and the geometry of each field kind (torch)
    "ExtraFields": "lsvr_core.field_geometry",
    "field_affine": "lsvr_core.field_geometry",
    "field_hflip": "lsvr_core.field_geometry",
    "field_clip": "lsvr_core.field_geometry",
    "field_select": "lsvr_core.field_geometry",
    # the one results writer (COCO results records: boxes, RLE masks / contours, keypoints)
    "predictions_to_results": "lsvr_core.results",
    # shared loss and layer helpers (torch)
    "weight_reduce": "lsvr_core.models.losses",
    "batch_norm_layer": "lsvr_core.models.norm",
    "group_norm_layer": "lsvr_core.models.norm",
    "set_batch_norm_eval": "lsvr_core.models.norm",
    "FrozenStagesMixin": "lsvr_core.models.norm",
    # export-traceable candidate selection and NMS for heads' export_postprocess (torch)
    "topk_pairs": "lsvr_core.export.postprocess",
    "nms_keep": "lsvr_core.export.postprocess",
    # reading run configs (torch-free; plugin commands such as `lsvr data check`)
    "load_config": "lsvr_core.config",
    # conformance suites and synthetic inputs for plugin tests (torch)
    "assert_gradients": "lsvr_core.testing",
    "check_assigner": "lsvr_core.testing",
    "check_backbone": "lsvr_core.testing",
    "check_config_roundtrip": "lsvr_core.testing",
    "check_head": "lsvr_core.testing",
    "check_loss": "lsvr_core.testing",
    "check_neck": "lsvr_core.testing",
    "feature_size": "lsvr_core.testing",
    "make_batch": "lsvr_core.testing",
    "make_features": "lsvr_core.testing",
    "make_targets": "lsvr_core.testing",
}

__all__ = [
    "KINDS",
    "AssignerConfig",
    "Backbone",
    "BackboneConfig",
    "ComponentConfig",
    "ComponentSpec",
    "ConfigError",
    "ConversionError",
    "ConverterSpec",
    "FIELD_KINDS",
    "DataError",
    "Dataset",
    "DatasetConfig",
    "Evaluator",
    "EvaluatorConfig",
    "Head",
    "HeadConfig",
    "LayerConfig",
    "LossConfig",
    "LsvrError",
    "Neck",
    "NeckConfig",
    "PluginError",
    "RecipeSpec",
    "Registry",
    "RunInfo",
    "ShapeSpec",
    "Slot",
    "TargetFieldSpec",
    "hookimpl",
    "recipes_from_dir",
    "resolve_target_fields",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"lsvr_core.api has no public name {name!r}; public names: {', '.join(__all__)}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
