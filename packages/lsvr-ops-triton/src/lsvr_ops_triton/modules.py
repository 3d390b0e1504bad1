"""Deformable convolution layers that are drop-ins for ``nn.Conv2d`` (they predict their own offsets).

Both own a zero-initialised offset conv (mmcv's ``DeformConvPack`` / ``ModulatedDeformConvPack``), so at
initialisation :class:`DeformConv2d` equals a plain conv and :class:`ModulatedDeformConv2d` equals a plain
conv times 0.5 (mask = sigmoid(0)). Source: LSNet spec §2.1 (DCN c3–c5), §2.2 (head towers), §9 item 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from lsvr_ops_triton.functional import deform_conv2d


class DeformConv2d(nn.Module):
    """DCN v1: a conv whose taps move by offsets predicted from the input by a zero-initialised conv.

    Args:
        in_channels, out_channels: channel counts (divisible by ``groups``; ``in_channels`` by ``offset_groups``).
        kernel_size, stride, padding, dilation: as ``nn.Conv2d`` (int or pair, pixels).
        groups: convolution groups. bias: learnable bias. offset_groups: channel groups sharing offsets.
    Shapes: input (N, Cin, H, W) → output (N, Cout, Ho, Wo) exactly as ``nn.Conv2d`` with the same arguments.
    Attributes: ``weight`` (Cout, Cin/groups, kh, kw), ``bias`` (Cout,) or None, ``conv_offset`` (the offset
    conv, 2·offset_groups·kh·kw output channels, interleaved (dy, dx) per tap).
    """

    mask_channels_per_tap = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 offset_groups: int = 1) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups or in_channels % offset_groups:
            raise ValueError(f"{type(self).__name__}: in_channels={in_channels}, out_channels={out_channels} "
                             f"must be divisible by groups={groups} (and in_channels by offset_groups={offset_groups})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.groups, self.offset_groups = groups, offset_groups
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        per_tap = 2 + self.mask_channels_per_tap
        self.conv_offset = nn.Conv2d(in_channels, per_tap * offset_groups * kh * kw, self.kernel_size, self.stride,
                                     self.padding, self.dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for the weight and bias; zeros for the offset conv."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def _offset_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.conv_offset(x), None

    def forward(self, x: Tensor) -> Tensor:
        """(N, Cin, H, W) → (N, Cout, Ho, Wo)."""
        offset, mask = self._offset_and_mask(x)
        return deform_conv2d(x, offset, self.weight, self.bias, mask, self.stride, self.padding, self.dilation,
                             self.groups, self.offset_groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"offset_groups={self.offset_groups}, bias={self.bias is not None}")


class ModulatedDeformConv2d(DeformConv2d):
    """DCN v2: :class:`DeformConv2d` plus a per-tap modulation mask, sigmoid of the offset conv's last third.

    The offset conv predicts 3·offset_groups·kh·kw channels split as ``[o1, o2, m]`` (mmcv's channel order);
    the offset is ``cat(o1, o2)`` read as interleaved (dy, dx) pairs and the mask is ``sigmoid(m)``
    (LSNet spec §9 item 1). Arguments and shapes as :class:`DeformConv2d`.
    """

    mask_channels_per_tap = 1

    def _offset_and_mask(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        o1, o2, m = torch.chunk(self.conv_offset(x), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(m)


def build_dcn_v1(*, registry: Any = None, **kwargs: Any) -> DeformConv2d:
    """Factory of the ``dcn_v1`` layer: ``DeformConv2d(**kwargs)`` (``registry`` is unused: no nested parts)."""
    del registry
    return DeformConv2d(**kwargs)


def build_dcn_v2(*, registry: Any = None, **kwargs: Any) -> ModulatedDeformConv2d:
    """Factory of the ``dcn_v2`` layer: ``ModulatedDeformConv2d(**kwargs)`` (``registry`` is unused)."""
    del registry
    return ModulatedDeformConv2d(**kwargs)
