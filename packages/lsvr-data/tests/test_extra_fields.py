"""A plugin's declared field reaches a dataset through ``extra_fields`` and follows the transforms; lsvr-data
declares the fields its readers fill; undeclared names are config errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lsvr_core.api import ConfigError, TargetFieldSpec
from lsvr_core.plugins import PluginManager
from lsvr_data.config import PipelineConfig, SyntheticDatasetConfig
from lsvr_data.synthetic import build_synthetic

# top-left corner of each box, as a one-point "points" field
CORNER = TargetFieldSpec("corner", "points", derive=f"{__name__}:box_corner")


def box_corner(targets):  # noqa: ANN001, ANN201
    return targets.boxes[:, None, :2]


def _registry(*specs: TargetFieldSpec) -> SimpleNamespace:
    return SimpleNamespace(target_fields=lambda: {s.name: s for s in specs})


def test_derived_field_follows_resize_and_flip() -> None:
    cfg = SyntheticDatasetConfig(num_images=4, image_size=64, extra_fields=["corner"],
                                 pipeline=PipelineConfig(resize="square", square_size=96, flip_prob=1.0))
    ds = build_synthetic(cfg, root=".", train=True, task="bbox", registry=_registry(CORNER))
    ds.set_epoch(0)
    for i in range(len(ds)):
        _, t = ds[i]
        assert t.flipped and t.scale == (1.5, 1.5)
        # the original top-left corner (x, y) lands at (96 - 1.5 x, 1.5 y), which is now the box's top-right
        corner = t.extra("corner")[:, 0]
        torch.testing.assert_close(corner, torch.stack([t.boxes[:, 2], t.boxes[:, 1]], 1))
        orig = ds.targets(i)
        torch.testing.assert_close(corner, torch.stack([96 - 1.5 * orig.boxes[:, 0], 1.5 * orig.boxes[:, 1]], 1))


def test_unknown_or_underivable_fields_are_config_errors() -> None:
    cfg = SyntheticDatasetConfig(num_images=2, extra_fields=["cornr"])
    with pytest.raises(ConfigError, match=r"unknown target field 'cornr'; declared fields: corner"):
        build_synthetic(cfg, root=".", train=True, task="bbox", registry=_registry(CORNER))
    plain = TargetFieldSpec("flag", "scalar")
    with pytest.raises(ConfigError, match="'flag'.*declares no derive function"):
        build_synthetic(SyntheticDatasetConfig(num_images=2, extra_fields=["flag"]), root=".", train=True,
                        task="bbox", registry=_registry(plain))


def test_lsvr_data_declares_the_fields_its_readers_fill() -> None:
    fields = PluginManager().target_fields()
    assert fields["difficult"].kind == "scalar" and fields["difficult"].distribution == "lsvr-data"
    assert fields["extreme_points"].flip_perm == (0, 3, 2, 1)
    assert fields["contours"].flip_perm == (0, *range(35, 0, -1))


def test_landmark_derive_functions_match_the_readers() -> None:
    """``extra_fields: [extreme_points, contours]`` gives what ``landmarks: true`` computes from the polygons."""
    from lsvr_data.landmark_fields import derive_contours, derive_extreme_points

    ds = build_synthetic(SyntheticDatasetConfig(num_images=3, landmarks=True), root=".", train=False, task="bbox")
    for i in range(len(ds)):
        t = ds.targets(i)
        torch.testing.assert_close(derive_extreme_points(t), t.extra("extreme_points"))
        # Targets.polygons are float32 copies of the float64 annotation: the resampled ring may start a fraction
        # of a step later on a flat top (measured: up to 0.30 px on one of these 11 instances)
        torch.testing.assert_close(derive_contours(t), t.extra("contours"), atol=0.5, rtol=0)
