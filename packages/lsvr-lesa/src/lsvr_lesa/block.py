"""The LESA block (Locally Enhanced Self-Attention), the drop-in replacement of a Bottleneck's 3x3 conv2 and
its norm2 (LESA spec §2, §3).

``out = unary + gate * binary``, then a 2x2 average pool when strided:

* unary (§3.1): grouped 3x3 conv (G groups, stride 1; deformable in detection) -> 1x1 conv -> BN;
* binary (§3.2): :class:`lsvr_lesa.attention.RelPosSelfAttention`;
* gate (§3.3): sigmoid(BN(conv1x1(ReLU(BN(conv1x1(ReLU(cat[unary, binary]))))))), per pixel and channel;
* stride 2 (§3.4): everything runs at the input resolution, then AvgPool2d(2, 2). We pool with
  ``ceil_mode=True`` (partial windows averaged over their valid pixels) so odd sizes give ceil(H / 2) like
  the block's strided shortcut; on even sizes this equals the reference.
* ``with_cp`` (§3.5): the unary and binary terms are each recomputed in backward (activation checkpointing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lsvr_lesa.attention import RelPosSelfAttention


def deformable_conv(kind: str, channels: int, groups: int, stride: int = 1) -> nn.Module:
    """A 3x3 deformable conv (padding 1, no bias, offset groups 1, zero-initialised offsets) from lsvr-ops-triton.

    Args:
        kind: ``dcn_v1`` (``DeformConv2d``, the reference's mmcv ``DCN``) or ``dcn_v2`` (modulated).
    Raises:
        ValueError: unknown ``kind``.
    """
    from lsvr_ops_triton import DeformConv2d, ModulatedDeformConv2d

    layers = {"dcn_v1": DeformConv2d, "dcn_v2": ModulatedDeformConv2d}
    if kind not in layers:
        raise ValueError(f"unknown deformable conv {kind!r}; use one of {', '.join(layers)}")
    return layers[kind](channels, channels, 3, stride=stride, padding=1, groups=groups, bias=False, offset_groups=1)


class UnaryBranch(nn.Module):
    """Local term ``(N, C, H, W) -> (N, C, H, W)``: grouped 3x3 conv (or DCN) -> 1x1 conv -> BN (LESA §3.1)."""

    def __init__(self, channels: int, groups: int, dcn: str | None = None) -> None:
        super().__init__()
        if dcn:
            self.conv = deformable_conv(dcn, channels, groups)
        else:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1, groups=groups, bias=False)
        self.mix = nn.Conv2d(channels, channels, 1, bias=False) if groups != 1 else nn.Identity()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.mix(self.conv(x)))


class DynamicFusion(nn.Module):
    """Gate ``(N, C, H, W) x 2 -> (N, C, H, W)`` in (0, 1) from the concatenated [unary, binary] (LESA §3.3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, unary: Tensor, binary: Tensor) -> Tensor:
        x = torch.cat([unary, binary], dim=1).relu()
        x = self.bn1(self.conv1(x)).relu()
        return self.bn2(self.conv2(x)).sigmoid()


class LESA(nn.Module):
    """``(N, C, H, W) -> (N, C, ceil(H / stride), ceil(W / stride))`` (LESA spec §3).

    Args:
        channels: C (in = out), divisible by 2 ``heads``.
        max_size: (S_h, S_w) largest input height and width of this block, feature-map positions; the
            relative-position tables cover them and are indexed by the actual size (any H <= S_h, W <= S_w).
        heads: G (also the unary conv's groups).
        stride: 1 or 2 (2: attend at full resolution, then 2x2 average pool).
        dcn: None for a plain grouped conv in the unary branch, or ``dcn_v1`` / ``dcn_v2``.
        with_cp: checkpoint the unary and binary terms in training.
        backend: ``relpos_attention`` backend.
    Raises:
        ValueError: bad stride or channels.
    """

    def __init__(self, channels: int, max_size: tuple[int, int], heads: int = 8, stride: int = 1,
                 dcn: str | None = None, with_cp: bool = False, backend: str = "auto") -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"LESA: stride must be 1 or 2, got {stride}")
        self.unary = UnaryBranch(channels, heads, dcn)
        self.binary = RelPosSelfAttention(channels, heads, max_size, backend)
        self.fusion = DynamicFusion(channels)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if stride == 2 else nn.Identity()
        self.with_cp = with_cp
        self.stride = stride
        # kaiming (fan_out) like the ResNet trunk; a deformable conv's offset conv keeps its zero init
        for weight in (self.unary.conv.weight, getattr(self.unary.mix, "weight", None), self.fusion.conv1.weight,
                       self.fusion.conv2.weight):
            if weight is not None:
                nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and self.training and x.requires_grad:
            unary = checkpoint(self.unary, x, use_reentrant=False)
            binary = checkpoint(self.binary, x, use_reentrant=False)
        else:
            unary, binary = self.unary(x), self.binary(x)
        out = unary + self.fusion(unary, binary) * binary
        return self.pool(out)
