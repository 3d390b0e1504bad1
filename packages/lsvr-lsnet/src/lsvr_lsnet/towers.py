"""Building blocks of the LSNet head: conv towers and the 3-level pyramid sampling + fusion (spec §2.2-§2.4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_ops_triton import ModulatedDeformConv2d, pyramid_deform_conv2d


def normal_init(module: nn.Module, std: float = 0.01, bias: float = 0.0) -> None:
    """``weight ~ N(0, std)``, ``bias = bias`` (the head's default init, spec §2.2 "Initialisation")."""
    nn.init.normal_(module.weight, 0.0, std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def tower(in_channels: int, channels: int, num_convs: int, conv_module: str, norm_groups: int) -> nn.Sequential:
    """``num_convs`` blocks of [3x3 conv (DCNv2 or plain, with bias) -> GroupNorm -> ReLU], C_in -> C -> ... C.

    DCNv2 blocks are ``lsvr_ops_triton.ModulatedDeformConv2d``, whose offset/mask conv starts at zero (so each
    block starts as a plain conv with mask sigmoid(0) = 0.5). Conv weights N(0, 0.01), bias 0.

    Args:
        in_channels: input channels of the first block.
        channels: output channels of every block.
        num_convs: number of blocks (0 gives an identity and needs ``in_channels == channels``).
        conv_module: ``dcn`` or ``plain``.
        norm_groups: GroupNorm groups.
    Raises:
        ValueError: unknown ``conv_module``, or no block while ``in_channels != channels``.
    Source: LSNet spec §2.2 "Towers" (``DCNConvModule``) and issue #1 (``plain`` = the reference's ``norm``).
    """
    if num_convs == 0 and in_channels != channels:
        raise ValueError(f"a tower without convs cannot map {in_channels} to {channels} channels")
    layers: list[nn.Module] = []
    for i in range(num_convs):
        c_in = in_channels if i == 0 else channels
        if conv_module == "dcn":
            conv: nn.Module = ModulatedDeformConv2d(c_in, channels, 3, padding=1, bias=True)
        elif conv_module == "plain":
            conv = nn.Conv2d(c_in, channels, 3, padding=1)
        else:
            raise ValueError(f"conv_module must be 'dcn' or 'plain', got {conv_module!r}")
        normal_init(conv)
        layers += [conv, nn.GroupNorm(norm_groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def pyramid_levels(level: int, num_levels: int) -> list[int]:
    """The 3 levels sampled for base level ``level`` (0 = finest): [0, 1, 2] for the finest, [L-1, L-2, L-3]
    for the coarsest, otherwise [l, l-1, l+1] (spec §2.3 stage 2 step 1).

    Raises:
        ValueError: fewer than 3 levels.
    """
    if num_levels < 3:
        raise ValueError(f"pyramid sampling needs at least 3 levels, got {num_levels}")
    if level == 0:
        return [0, 1, 2]
    if level == num_levels - 1:
        return [level, level - 1, level - 2]
    return [level, level - 1, level + 1]


class PyramidFusion(nn.Module):
    """Sample a tower's features at the landmarks on 3 adjacent levels, then fuse.

    ``out = ReLU(GN(ReLU(Conv1x1(cat_3 PyramidDeformConv(f_l', offset · s_l'))) + Conv3x3(f_l)))``.

    Args:
        channels: output channels C (and input channels unless ``in_channels`` is given).
        norm_groups: GroupNorm groups.
        faithful_offset_scaling: reproduce the reference's compounding scale on the 3rd visited level
            (offsets x s_2 x s_3 instead of x s_3; spec §11.1). False applies each level's own scale.
        in_channels: input channels of the pyramid conv and the 3x3 skip (CPV: C + 6 corner channels, §5).
        pyramid_init: ``kaiming`` (kaiming-normal fan_out relu, ``LSHead``) or ``normal`` (N(0, 0.01), ``LSCPVHead``).
    Source: LSNet spec §2.2 (``pts_*_refine_conv`` / ``pts_cls_conv``, ``*_af_dcn_conv``, ``*_feat_conv``,
        ``*_GN``), §2.3 stage 2, §2.4, §5. The pyramid conv has no bias.
    """

    def __init__(self, channels: int, norm_groups: int, faithful_offset_scaling: bool = False,
                 in_channels: int | None = None, pyramid_init: str = "kaiming") -> None:
        super().__init__()
        in_channels = in_channels or channels
        self.faithful_offset_scaling = faithful_offset_scaling
        self.weight = nn.Parameter(torch.empty(channels, in_channels, 3, 3))
        if pyramid_init == "normal":
            nn.init.normal_(self.weight, 0.0, 0.01)
        else:
            nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.fuse = nn.Conv2d(3 * channels, channels, 1)
        self.skip = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(norm_groups, channels)
        normal_init(self.fuse)
        normal_init(self.skip)

    def offset_scales(self, level: int,
                      sizes: list[tuple[int, int]]) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Per visited level: ((s_h, s_w) of the kernel's base grid, (m_h, m_w) applied to the offsets).

        ``s = size(l') / size(l)`` from the actual feature sizes (spec §11.2); ``m = s`` unless faithful, where
        ``m`` is the running product over the visits (1, s_2, s_2·s_3).
        """
        base_h, base_w = sizes[level]
        out, run_h, run_w = [], 1.0, 1.0
        for lv in pyramid_levels(level, len(sizes)):
            s_h, s_w = sizes[lv][0] / base_h, sizes[lv][1] / base_w
            run_h, run_w = (run_h * s_h, run_w * s_w) if self.faithful_offset_scaling else (s_h, s_w)
            out.append(((s_h, s_w), (run_h, run_w)))
        return out

    def forward(self, feats: list[Tensor], level: int, offset: Tensor) -> Tensor:
        """Args:
            feats: the tower's output on every level, [(N, C, H_l, W_l)] fine to coarse.
            level: index of the base level in ``feats``.
            offset: (N, 18, H, W) per-tap (dy, dx) DCN offsets on the base level, base-level cells.
        Returns:
            (N, C, H, W) fused features at the base level's resolution.
        """
        sizes = [tuple(f.shape[-2:]) for f in feats]
        samples = []
        levels_scales = zip(pyramid_levels(level, len(feats)), self.offset_scales(level, sizes), strict=True)
        for lv, ((s_h, s_w), (m_h, m_w)) in levels_scales:
            scale = offset.new_tensor([m_h, m_w]).repeat(9).view(1, 18, 1, 1)  # y channels x m_h, x channels x m_w
            samples.append(pyramid_deform_conv2d(feats[lv], offset * scale, self.weight, (s_h, s_w)))
        fused = F.relu(self.fuse(torch.cat(samples, dim=1))) + self.skip(feats[level])
        return F.relu(self.norm(fused))


def prior_bias(prior_prob: float) -> float:
    """Classifier bias ``-log((1 - p) / p)`` (-4.595 for p = 0.01)."""
    return -math.log((1 - prior_prob) / prior_prob)
