"""The v1 necks ``ssd`` (FSSD-style), ``fpn_mg`` and ``pafpn`` (spec §2 "Necks").

Each takes the backbone's two maps at strides s and 2s (``c3``/``c4``: 8 and 16) and returns L maps
``p{3+k}`` of ``out_channels`` channels at strides s * 2^k, k = 0..L-1. Every conv is a :class:`BasicConv`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_core.api import ConfigError, Registry, ShapeSpec
from lsvr_mutualguide.config import FPNMGNeckConfig, PAFPNNeckConfig, SSDNeckConfig


class BasicConv(nn.Sequential):
    """Conv2d (with bias) -> BatchNorm (eps 1e-5, momentum 0.01) -> ReLU (``V1:models/base_blocks.py``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=True),
            nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.01),
            nn.ReLU(inplace=True),
        )


def fine_and_coarse(input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str]) -> tuple[ShapeSpec, ShapeSpec]:
    """The two backbone levels a MutualGuide neck fuses, checked: both present, at strides s and 2s.

    Raises:
        ConfigError: a level the backbone does not return, or strides that are not s and 2s.
    """
    missing = [lv for lv in in_levels if lv not in input_shape]
    if missing:
        raise ConfigError(f"model.neck.in_levels {list(in_levels)}: the backbone has no {missing}; "
                          f"it returns {sorted(input_shape)}")
    fine, coarse = (input_shape[lv] for lv in in_levels)
    if coarse.stride != 2 * fine.stride:
        raise ConfigError(f"model.neck.in_levels {list(in_levels)} must be at strides s and 2s; got "
                          f"{fine.stride} and {coarse.stride}")
    return fine, coarse


def _resize_to(x: Tensor, ref: Tensor) -> Tensor:
    """Nearest resize of ``x`` to ``ref``'s spatial size (the x2 upsampling of the reference)."""
    return F.interpolate(x, size=ref.shape[-2:], mode="nearest")


class SSDNeck(nn.Module):
    """FSSD fusion: 1x1 convs on both maps (the coarse one upsampled), concat, a 3x3 conv (level 0), then
    L - 1 stride-2 3x3 convs (``V1:models/neck/ssd_neck.py``)."""

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str], out_channels: int,
                 num_levels: int) -> None:
        super().__init__()
        fine, coarse = fine_and_coarse(input_shape, in_levels)
        self.in_levels, self.num_levels, self.out_channels = in_levels, num_levels, out_channels
        self.base_stride = fine.stride
        self.reduce_fine = BasicConv(fine.channels, out_channels, 1)
        self.reduce_coarse = BasicConv(coarse.channels, out_channels, 1)
        self.fuse = BasicConv(2 * out_channels, out_channels, 3)
        self.downs = nn.ModuleList([BasicConv(out_channels, out_channels, 3, 2) for _ in range(num_levels - 1)])

    def output_shape(self) -> dict[str, ShapeSpec]:
        out = {}
        for k in range(self.num_levels):
            stride = self.base_stride * 2**k
            out[f"p{int(math.log2(stride))}"] = ShapeSpec(self.out_channels, stride)
        return out

    def fused(self, features: dict[str, Tensor]) -> Tensor:
        """(B, out_channels, H/s, W/s) level-0 map of the FSSD fusion."""
        fine, coarse = (features[lv] for lv in self.in_levels)
        x = self.reduce_fine(fine)
        return self.fuse(torch.cat([x, _resize_to(self.reduce_coarse(coarse), x)], 1))

    def pyramid(self, level0: Tensor) -> list[Tensor]:
        """Level 0 followed by the stride-2 convs: L maps, finest first."""
        maps = [level0]
        for down in self.downs:
            maps.append(down(maps[-1]))
        return maps

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return dict(zip(self.output_shape(), self.pyramid(self.fused(features)), strict=True))


class FPNMGNeck(SSDNeck):
    """The ssd pyramid, then a 1x1 lateral per level, a top-down nearest-resize add and a 3x3 per level
    (``V1:models/neck/fpn_neck.py``)."""

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str], out_channels: int,
                 num_levels: int) -> None:
        super().__init__(input_shape, in_levels, out_channels, num_levels)
        self.laterals = nn.ModuleList([BasicConv(out_channels, out_channels, 1) for _ in range(num_levels)])
        self.smooth = nn.ModuleList([BasicConv(out_channels, out_channels, 3) for _ in range(num_levels)])

    def top_down(self, maps: list[Tensor]) -> list[Tensor]:
        lat = [conv(x) for conv, x in zip(self.laterals, maps, strict=True)]
        for k in range(len(lat) - 2, -1, -1):
            lat[k] = lat[k] + _resize_to(lat[k + 1], lat[k])
        return [conv(x) for conv, x in zip(self.smooth, lat, strict=True)]

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return dict(zip(self.output_shape(), self.top_down(self.pyramid(self.fused(features))), strict=True))


class PAFPNNeck(FPNMGNeck):
    """Context enhancement (CEM), a 3x3 conv, stride-2 convs, top-down path, a sequential bottom-up path and a
    final 3x3 per level (``V1:models/neck/pafpn_neck.py``)."""

    def __init__(self, input_shape: dict[str, ShapeSpec], in_levels: tuple[str, str], out_channels: int,
                 num_levels: int) -> None:
        super().__init__(input_shape, in_levels, out_channels, num_levels)
        coarse = input_shape[in_levels[1]]
        self.reduce_global = BasicConv(coarse.channels, out_channels, 1)
        self.fuse = BasicConv(out_channels, out_channels, 3)  # the CEM sum has out_channels channels
        self.bottom_up = nn.ModuleList([BasicConv(out_channels, out_channels, 3, 2) for _ in range(num_levels - 1)])
        self.final = nn.ModuleList([BasicConv(out_channels, out_channels, 3) for _ in range(num_levels)])

    def fused(self, features: dict[str, Tensor]) -> Tensor:
        fine, coarse = (features[lv] for lv in self.in_levels)
        x = self.reduce_fine(fine)
        x = x + _resize_to(self.reduce_coarse(coarse), x)
        x = x + self.reduce_global(F.adaptive_avg_pool2d(coarse, 1))  # (B, C, 1, 1) broadcast
        return self.fuse(x)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        maps = self.top_down(self.pyramid(self.fused(features)))
        for k, conv in enumerate(self.bottom_up):  # sequential: step k uses the updated P[k]
            maps[k + 1] = maps[k + 1] + _resize_to(conv(maps[k]), maps[k + 1])
        return dict(zip(self.output_shape(), [conv(x) for conv, x in zip(self.final, maps, strict=True)], strict=True))


def _build(cls: type[SSDNeck], cfg: SSDNeckConfig, input_shape: dict[str, ShapeSpec]) -> SSDNeck:
    return cls(input_shape, cfg.in_levels, cfg.out_channels, cfg.num_levels)


def build_ssd(cfg: SSDNeckConfig, input_shape: dict[str, ShapeSpec], *, registry: Registry | None = None) -> SSDNeck:
    """Factory of the ``ssd`` neck."""
    return _build(SSDNeck, cfg, input_shape)


def build_fpn_mg(cfg: FPNMGNeckConfig, input_shape: dict[str, ShapeSpec],
                 *, registry: Registry | None = None) -> FPNMGNeck:
    """Factory of the ``fpn_mg`` neck."""
    return _build(FPNMGNeck, cfg, input_shape)  # type: ignore[return-value]


def build_pafpn(cfg: PAFPNNeckConfig, input_shape: dict[str, ShapeSpec],
                *, registry: Registry | None = None) -> PAFPNNeck:
    """Factory of the ``pafpn`` neck."""
    return _build(PAFPNNeck, cfg, input_shape)  # type: ignore[return-value]
