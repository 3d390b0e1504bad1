"""The v2 (HEAD) ``pafpn_v2`` neck (spec §7 "Architecture"; ``HEAD:models/neck/{ssd,fpn,pafpn}_neck.py``).

Every conv is :class:`ConvBNSiLU` (conv without bias -> BN -> SiLU). From the backbone's stride-s map (``c4``)
and stride-2s map (``c5``):

1. context enhancement: 1x1 conv-BN on the fine map, plus 1x1 conv-BN on the coarse map upsampled x2 (bilinear),
   plus 1x1 conv-BN on the coarse map's global average pool (broadcast), summed, then SiLU -> level 0;
2. L - 1 stride-2 3x3 convs -> levels 1..L-1 (strides 2^k s);
3. a 3x3 "lateral" conv per level, a top-down bilinear x2 add, a 3x3 per level;
4. bottom-up: for k = 0..L-2, P[k+1] += stride-2 3x3 conv(P[k]) (sequential), then a 3x3 per level.

Module names follow the reference (``ft_module.conv1``, ``pyramid_ext``, ``lateral_convs``, ``fpn_convs``,
``downsample_convs``, ``pafpn_convs``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import Registry, ShapeSpec
from lsvr_mutualguide.config import PAFPNV2NeckConfig
from lsvr_mutualguide.necks import fine_and_coarse


class ConvBNSiLU(nn.Module):
    """Conv2d (no bias, padding k // 2) -> BatchNorm2d (torch defaults) -> SiLU unless ``act`` is False
    (``HEAD:models/base_blocks.py`` BasicConv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, act: bool = True
                 ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.SiLU(inplace=True) if act else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class ContextEnhancement(nn.Module):
    """Step 1 of the module docstring: (fine (B, Cf, H, W), coarse (B, Cc, H/2, W/2)) -> (B, C, H, W)."""

    def __init__(self, fine: int, coarse: int, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNSiLU(fine, channels, 1, act=False)
        self.conv2 = ConvBNSiLU(coarse, channels, 1, act=False)
        self.conv3 = ConvBNSiLU(coarse, channels, 1, act=False)
        self.act = nn.SiLU(inplace=True)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        x = self.conv1(fine)
        up = F.interpolate(self.conv2(coarse), size=x.shape[-2:], mode="bilinear", align_corners=False)
        context = self.conv3(F.adaptive_avg_pool2d(coarse, 1))  # (B, C, 1, 1)
        return self.act(x + up + context)


class PAFPNV2Neck(nn.Module):
    """``{c4, c5}`` -> L maps ``p{log2 stride}`` of ``out_channels`` at strides s * 2^k (s = the fine input's)."""

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str], out_channels: int,
                 num_levels: int) -> None:
        super().__init__()
        fine, coarse = fine_and_coarse(input_shape, in_levels)
        c, n = out_channels, num_levels
        self.in_levels, self.out_channels, self.num_levels, self.base_stride = in_levels, c, n, fine.stride
        self.ft_module = ContextEnhancement(fine.channels, coarse.channels, c)
        self.pyramid_ext = nn.ModuleList([ConvBNSiLU(c, c, 3, 2) for _ in range(n - 1)])
        self.lateral_convs = nn.ModuleList([ConvBNSiLU(c, c, 3) for _ in range(n)])
        self.fpn_convs = nn.ModuleList([ConvBNSiLU(c, c, 3) for _ in range(n)])
        self.downsample_convs = nn.ModuleList([ConvBNSiLU(c, c, 3, 2) for _ in range(n - 1)])
        self.pafpn_convs = nn.ModuleList([ConvBNSiLU(c, c, 3) for _ in range(n)])

    def output_shape(self) -> dict[str, ShapeSpec]:
        strides = [self.base_stride * 2**k for k in range(self.num_levels)]
        return {f"p{int(math.log2(s))}": ShapeSpec(self.out_channels, s) for s in strides}

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        fine, coarse = (features[lv] for lv in self.in_levels)
        maps = [self.ft_module(fine, coarse)]
        for conv in self.pyramid_ext:
            maps.append(conv(maps[-1]))
        maps = [conv(x) for conv, x in zip(self.lateral_convs, maps, strict=True)]
        for k in range(self.num_levels - 1, 0, -1):
            maps[k - 1] = maps[k - 1] + F.interpolate(maps[k], size=maps[k - 1].shape[-2:], mode="bilinear",
                                                      align_corners=False)
        maps = [conv(x) for conv, x in zip(self.fpn_convs, maps, strict=True)]
        for k, conv in enumerate(self.downsample_convs):  # sequential: step k uses the updated P[k]
            maps[k + 1] = maps[k + 1] + conv(maps[k])
        maps = [conv(x) for conv, x in zip(self.pafpn_convs, maps, strict=True)]
        return dict(zip(self.output_shape(), maps, strict=True))


def build_pafpn_v2(cfg: PAFPNV2NeckConfig, input_shape: dict[str, ShapeSpec], *, registry: Registry | None = None
                   ) -> PAFPNV2Neck:
    """Factory of the ``pafpn_v2`` neck."""
    return PAFPNV2Neck(input_shape, cfg.in_levels, cfg.out_channels, cfg.num_levels)
