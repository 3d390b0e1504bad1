"""The ``rfb`` neck (first commit's RFBNet, spec §1 "RFB" rows): conformance, levels and strides, and the
receptive-field blocks' branch structure."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.api import ConfigError, ShapeSpec
from lsvr_core.testing.suites import check_neck
from lsvr_mutualguide import config as c
from lsvr_mutualguide.rfb import RFBBlock, RFBNeck

torch.set_num_threads(1)


@pytest.mark.parametrize("levels", [4, 5])
def test_rfb_neck_conformance_and_levels(levels: int) -> None:
    cfg = c.RFBNeckConfig(num_levels=levels, reduce_channels=16, level_channels=(64, 64, 64, 32, 32))
    shape = {"c3": ShapeSpec(48, 8), "c4": ShapeSpec(64, 16)}
    neck = check_neck("lsvr_mutualguide.rfb:build_rfb", cfg, shape, image_size=(128, 128))
    out = neck.output_shape()
    assert [s.stride for s in out.values()] == [8 * 2**k for k in range(levels)]
    assert [s.channels for s in out.values()] == [64, 64, 64, 32, 32][:levels]
    assert list(out)[0] == "p3"
    # the 512 px model's last block is the 3-branch variant (the reference's BasicRFB_c on 256 channels)
    assert [b.num_branches for b in neck.extras] == [4, 4, 4, 3][: levels - 1]
    assert neck.norm.num_branches == 7


def test_rfb_block_dilations_and_output_size() -> None:
    """Each branch ends in a 3x3 conv dilated 1, 3, 5, 7 (RFB-b) with padding = dilation; stride 2 halves."""
    block = RFBBlock(64, 32, stride=2, variant="b")
    last = [getattr(block, f"branch{k}")[-1].conv for k in range(4)]
    assert [m.dilation[0] for m in last] == [1, 3, 5, 7] and [m.padding[0] for m in last] == [1, 3, 5, 7]
    assert block(torch.randn(1, 64, 11, 11)).shape == (1, 32, 6, 6)
    a = RFBBlock(64, 64, variant="a")
    assert [getattr(a, f"branch{k}")[-1].conv.dilation[0] for k in range(7)] == [1, 3, 3, 5, 5, 7, 7]


def test_rfb_rejects_too_narrow_inputs() -> None:
    with pytest.raises(ConfigError, match="must have >= 32 channels"):
        RFBNeck({"c3": ShapeSpec(48, 8), "c4": ShapeSpec(16, 16)}, ("c3", "c4"), 4, 16, (64, 64, 64, 32))
