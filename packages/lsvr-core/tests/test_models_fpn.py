"""FPN neck: level names, channels and strides at odd sizes; equality with torchvision's RetinaNet FPN."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from lsvr_core.builtin.configs import FPNConfig, ResNetConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.fpn import build_fpn
from lsvr_core.models.resnet import build_resnet

torch.set_num_threads(1)
R18 = {"c2": ShapeSpec(64, 4), "c3": ShapeSpec(128, 8), "c4": ShapeSpec(256, 16), "c5": ShapeSpec(512, 32)}


def _features(shape, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(1, s.channels, math.ceil(h / s.stride), math.ceil(w / s.stride), generator=g)
            for k, s in shape.items()}


def test_levels_and_sizes_on_resnet18_at_odd_size():
    backbone = build_resnet(ResNetConfig(depth=18)).eval()
    neck = build_fpn(FPNConfig(out_channels=32), backbone.output_shape()).eval()
    h, w = 97, 203
    with torch.no_grad():
        out = neck(backbone(torch.randn(1, 3, h, w)))
    shape = neck.output_shape()
    assert list(out) == list(shape) == ["p3", "p4", "p5", "p6", "p7"]
    for level, stride in zip(out, (8, 16, 32, 64, 128), strict=True):
        assert shape[level] == ShapeSpec(32, stride)
        assert tuple(out[level].shape) == (1, 32, math.ceil(h / stride), math.ceil(w / stride))


def test_names_follow_input_levels_and_extra_levels_continue():
    neck = build_fpn(FPNConfig(out_channels=32, in_levels=("c2", "c3", "c4", "c5"), num_extra=1), R18)
    assert neck.output_shape() == {"p2": ShapeSpec(32, 4), "p3": ShapeSpec(32, 8), "p4": ShapeSpec(32, 16),
                                   "p5": ShapeSpec(32, 32), "p6": ShapeSpec(32, 64)}
    assert list(neck(_features(R18, 64, 64))) == ["p2", "p3", "p4", "p5", "p6"]
    plain = build_fpn(FPNConfig(out_channels=32, num_extra=0), R18)
    assert list(plain.output_shape()) == ["p3", "p4", "p5"]


@pytest.mark.parametrize("source", ["p5", "c5"])
def test_equals_torchvision_fpn_with_p6p7(source):
    """Oracle: torchvision's FeaturePyramidNetwork + LastLevelP6P7 (RetinaNet), same weights."""
    shape = {k: R18[k] for k in ("c3", "c4", "c5")}
    neck = build_fpn(FPNConfig(out_channels=64, extra_source=source), shape)
    extra_in = 64 if source == "p5" else 512
    reference = FeaturePyramidNetwork([128, 256, 512], 64, extra_blocks=LastLevelP6P7(extra_in, 64))
    state = {k.replace("extra_blocks.convs.0", "extra_blocks.p6").replace("extra_blocks.convs.1", "extra_blocks.p7"): v
             for k, v in neck.fpn.state_dict().items()}
    reference.load_state_dict(state)
    feats = _features(shape, 100, 70)
    ours = neck(feats)
    theirs = reference({"p3": feats["c3"], "p4": feats["c4"], "p5": feats["c5"]})
    assert list(ours) == list(theirs)
    for level in ours:
        torch.testing.assert_close(ours[level], theirs[level])


def test_group_norm_and_errors():
    neck = build_fpn(FPNConfig(out_channels=64, norm="gn"), R18)
    assert sum(isinstance(m, nn.GroupNorm) for m in neck.modules()) == 6  # lateral + output conv per level
    with pytest.raises(ConfigError, match="divisible by 32"):
        build_fpn(FPNConfig(out_channels=48, norm="gn"), R18)
    with pytest.raises(ConfigError, match=r"\['c6'\] not produced by the backbone"):
        build_fpn(FPNConfig(in_levels=("c4", "c5", "c6")), R18)
