"""The deformable ops LSNet uses, from lsvr-ops-triton (TEMPORARY fallback while that package lands)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

try:
    from lsvr_ops_triton import ModulatedDeformConv2d, pyramid_deform_conv2d  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - removed once lsvr-ops-triton exports its ops

    def pyramid_deform_conv2d(feature: Tensor, offset: Tensor, weight: Tensor, scale_hw: Sequence[float],
                              bias: Tensor | None = None) -> Tensor:
        n, c, hf, wf = feature.shape
        h, w = offset.shape[-2:]
        s_h, s_w = float(scale_hw[0]), float(scale_hw[1])
        taps = torch.arange(3, device=offset.device, dtype=offset.dtype)
        rows = torch.arange(h, device=offset.device, dtype=offset.dtype)
        cols = torch.arange(w, device=offset.device, dtype=offset.dtype)
        base_y = ((rows[None] - 1 + taps[:, None]) * s_h).repeat_interleave(3, dim=0)
        base_x = ((cols[None] - 1 + taps[:, None]) * s_w).repeat(3, 1)
        off = offset.view(n, 9, 2, h, w)
        y = base_y[None, :, :, None] + off[:, :, 0]
        x = base_x[None, :, None, :] + off[:, :, 1]
        grid = torch.stack(((2 * x + 1) / wf - 1, (2 * y + 1) / hf - 1), dim=-1).view(n, 9 * h, w, 2)
        sampled = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = torch.matmul(weight.reshape(weight.shape[0], c * 9), sampled.view(n, c * 9, h * w)).view(n, -1, h, w)
        return out if bias is None else out + bias.view(1, -1, 1, 1)

    class ModulatedDeformConv2d(nn.Module):  # type: ignore[no-redef]
        def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
            super().__init__()
            self.stride, self.padding, self.dilation = stride, padding, dilation
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size))
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
            self.conv_offset = nn.Conv2d(in_channels, 3 * kernel_size * kernel_size, kernel_size, stride, padding,
                                         dilation)
            nn.init.zeros_(self.conv_offset.weight)
            nn.init.zeros_(self.conv_offset.bias)

        def forward(self, x: Tensor) -> Tensor:
            o1, o2, mask = self.conv_offset(x).chunk(3, dim=1)
            offset = torch.cat([o1, o2], dim=1)
            return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                                                 self.dilation, mask.sigmoid())

__all__ = ["ModulatedDeformConv2d", "pyramid_deform_conv2d"]
