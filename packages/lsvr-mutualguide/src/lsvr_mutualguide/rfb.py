"""The ``rfb`` neck: the RFBNet pyramid of MutualGuide's first commit (spec §1 "RFB" rows, §2 notes;
``a24bbe4:models/rfbnet.py``).

From the backbone's stride-s map ``c3`` and stride-2s map ``c4`` (VGG16: conv4_3 and conv5_3, 512 each):

- level 0 (stride s): ``reduce`` (1x1 on c3) and ``up_reduce`` (1x1 on c4, nearest x2 up) concatenated, then
  ``norm``, an RFB-a block (7 branches of 1x1 / 1x3 / 3x1 convs and 3x3 convs dilated 1, 3, 5, 7);
- level 1 (stride 2s): an RFB block (4 branches, dilations 1, 3, 5, 7) at stride 1 on c4 itself;
- levels 2.. (stride 2^k s): stride-2 RFB blocks, each on the previous level; from the fourth extra block on
  (level 4, the 512 px model's last level) the 3-branch RFB-c variant, which the reference picks for 256-channel
  inputs (``add_extras``: ``in_channels == 256``), i.e. exactly that block in its two configurations.

Level widths default to the reference's (512, 512, 512, 256, 256). Every conv is :class:`RFBConv`
(conv with bias, BN eps 1e-5 momentum 0.01, optional ReLU); each block returns
ReLU(scale * linear(concat(branches)) + shortcut(x)) with scale 1. Module names follow the reference's (``branch0``,
``conv``/``bn``) so that its checkpoints map by renaming only (:mod:`lsvr_mutualguide.convert`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import ConfigError, Registry, ShapeSpec
from lsvr_mutualguide.config import RFBNeckConfig
from lsvr_mutualguide.necks import fine_and_coarse

Pair = int | tuple[int, int]


class RFBConv(nn.Module):
    """Conv2d (with bias) -> BatchNorm (eps 1e-5, momentum 0.01) -> ReLU if ``relu``
    (``a24bbe4:models/base_blocks.py``). Input (B, in, H, W) -> (B, out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Pair, stride: int = 1, padding: Pair = 0,
                 dilation: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=True)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.01)
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


def _branch(*convs: tuple) -> nn.Sequential:
    """A branch: (in, out, kernel, stride, padding, dilation, relu) per conv."""
    return nn.Sequential(*[RFBConv(*c) for c in convs])


class RFBBlock(nn.Module):
    """Receptive-field block; ``variant`` ``"b"`` (BasicRFB, 4 branches), ``"c"`` (BasicRFB_c, 3 branches) or
    ``"a"`` (BasicRFB_a, 7 branches, the level-0 block). ``inter = in_channels // 8``.

    Input (B, in, H, W) -> (B, out, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, variant: str = "b",
                 scale: float = 1.0) -> None:
        super().__init__()
        i, s, c = in_channels // 8, stride, in_channels
        self.scale = scale
        if variant == "a":
            h, q = i // 2, (i // 4) * 3
            branches = [
                _branch((c, i, 1, 1, 0), (i, i, 3, 1, 1, 1, False)),
                _branch((c, i, 1, 1, 0), (i, i, (3, 1), 1, (1, 0)), (i, i, 3, 1, 3, 3, False)),
                _branch((c, i, 1, 1, 0), (i, i, (1, 3), s, (0, 1)), (i, i, 3, 1, 3, 3, False)),
                _branch((c, i, 1, 1, 0), (i, i, (3, 1), 1, (1, 0)), (i, i, 3, 1, 5, 5, False)),
                _branch((c, i, 1, 1, 0), (i, i, (1, 3), s, (0, 1)), (i, i, 3, 1, 5, 5, False)),
                _branch((c, h, 1, 1, 0), (h, q, (1, 3), 1, (0, 1)), (q, i, (3, 1), s, (1, 0)),
                        (i, i, 3, 1, 7, 7, False)),
                _branch((c, h, 1, 1, 0), (h, q, (3, 1), 1, (1, 0)), (q, i, (1, 3), s, (0, 1)),
                        (i, i, 3, 1, 7, 7, False)),
            ]
            linear_in = 7 * i
        else:
            q = (i // 2) * 3
            b0 = _branch((c, 2 * i, 1, s, 0), (2 * i, 2 * i, 3, 1, 1, 1, False))
            b1 = _branch((c, i, 1, 1, 0), (i, 2 * i, 3, s, 1), (2 * i, 2 * i, 3, 1, 3, 3, False))
            b2 = _branch((c, i, 1, 1, 0), (i, q, 3, 1, 1), (q, 2 * i, 3, s, 1), (2 * i, 2 * i, 3, 1, 5, 5, False))
            b3 = _branch((c, i, 1, 1, 0), (i, q, (1, 7), 1, (0, 3)), (q, 2 * i, (7, 1), s, (3, 0)),
                         (2 * i, 2 * i, 3, 1, 7, 7, False))
            branches = [b0, b1, b2, b3] if variant == "b" else [b0, b1, b3]
            linear_in = 2 * i * len(branches)
        for k, branch in enumerate(branches):
            self.add_module(f"branch{k}", branch)
        self.num_branches = len(branches)
        self.conv_linear = RFBConv(linear_in, out_channels, 1, relu=False)
        self.shortcut = RFBConv(in_channels, out_channels, 1, stride=s, relu=False)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([getattr(self, f"branch{k}")(x) for k in range(self.num_branches)], 1)
        return self.relu(self.conv_linear(out) * self.scale + self.shortcut(x))


class RFBNeck(nn.Module):
    """The RFBNet pyramid (module docstring): ``{c3, c4}`` -> ``num_levels`` maps ``p{log2 stride}``, finest
    first, with ``level_channels[k]`` channels at stride s * 2^k.

    Raises:
        ConfigError: missing backbone levels, strides not s and 2s, or a block input narrower than 32 channels
            (its quarter-width branches would have no channel).
    """

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str], num_levels: int,
                 reduce_channels: int, level_channels: tuple[int, ...]) -> None:
        super().__init__()
        fine, coarse = fine_and_coarse(input_shape, in_levels)
        if len(level_channels) < num_levels:
            raise ConfigError(f"model.neck.level_channels has {len(level_channels)} entries; num_levels "
                              f"{num_levels} needs as many")
        chans = tuple(level_channels[:num_levels])
        block_inputs = [2 * reduce_channels, coarse.channels, *chans[1:-1]]
        if min(block_inputs) < 32:
            raise ConfigError(f"model.neck: RFB block inputs {block_inputs} must have >= 32 channels "
                              f"(reduce_channels x 2, the backbone's {in_levels[1]}, level_channels)")
        self.in_levels, self.channels, self.base_stride = in_levels, chans, fine.stride
        self.reduce = RFBConv(fine.channels, reduce_channels, 1)
        self.up_reduce = RFBConv(coarse.channels, reduce_channels, 1)
        self.norm = RFBBlock(2 * reduce_channels, chans[0], 1, "a")
        extras = [RFBBlock(coarse.channels, chans[1], 1, "b")]
        for k in range(2, num_levels):
            extras.append(RFBBlock(chans[k - 1], chans[k], 2, "c" if k >= 4 else "b"))
        self.extras = nn.ModuleList(extras)

    def output_shape(self) -> dict[str, ShapeSpec]:
        strides = [self.base_stride * 2**k for k in range(len(self.channels))]
        return {f"p{int(math.log2(s))}": ShapeSpec(c, s) for s, c in zip(strides, self.channels, strict=True)}

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        fine, coarse = (features[lv] for lv in self.in_levels)
        x = self.reduce(fine)
        up = F.interpolate(self.up_reduce(coarse), size=x.shape[-2:], mode="nearest")  # the x2 nearest upsample
        maps = [self.norm(torch.cat([x, up], 1))]
        y = coarse
        for block in self.extras:
            y = block(y)
            maps.append(y)
        return dict(zip(self.output_shape(), maps, strict=True))


def build_rfb(cfg: RFBNeckConfig, input_shape: dict[str, ShapeSpec], *, registry: Registry | None = None) -> RFBNeck:
    """Factory of the ``rfb`` neck."""
    return RFBNeck(input_shape, cfg.in_levels, cfg.num_levels, cfg.reduce_channels, cfg.level_channels)
