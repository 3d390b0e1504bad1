"""Directional corner pooling (CornerNet, Law & Deng 2018) and the corner-pooling block of CPV (LSNet spec §5).

Each pool is a cumulative maximum along one axis, computed with ``torch.cummax`` (on a flipped tensor for the
reverse directions), as the reference does for torch >= 1.5 (``mmdet/ops/corner_pool/corner_pool.py`` L93-116).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# direction -> (dim of an (N, C, H, W) tensor, scan from the far end)
_DIRECTIONS = {"top": (2, True), "left": (3, True), "bottom": (2, False), "right": (3, False)}


def corner_pool(x: Tensor, direction: str) -> Tensor:
    """Cumulative max of ``x`` (N, C, H, W) along one axis; output has the same shape and dtype.

    ``top``: out[h] = max(x[h:]) over rows at or below; ``left``: max over columns at or to the right;
    ``bottom``: max over rows at or above; ``right``: max over columns at or to the left. Gradients flow to the
    arg-max element (``torch.cummax``).

    Raises:
        ValueError: unknown ``direction``.
    Source: LSNet spec §5 "Pools".
    """
    if direction not in _DIRECTIONS:
        raise ValueError(f"corner pool direction must be one of {sorted(_DIRECTIONS)}, got {direction!r}")
    dim, reverse = _DIRECTIONS[direction]
    if reverse:
        return torch.cummax(x.flip(dim), dim=dim).values.flip(dim)
    return torch.cummax(x, dim=dim).values


class ConvGNReLU(nn.Sequential):
    """k x k conv (no bias) -> GroupNorm -> ReLU; conv kaiming-normal (fan_out, relu), as mmcv's ConvModule."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, norm_groups: int) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        super().__init__(conv, nn.GroupNorm(norm_groups, out_channels), nn.ReLU(inplace=True))


class CornerPoolBlock(nn.Module):
    """Top-left (``top`` + ``left`` pools) or bottom-right (``bottom`` + ``right``) corner feature block.

    ``out = ConvGNReLU_k(ReLU(GN(Conv3x3(pool_1(ConvGNReLU_k1(x)) + pool_2(ConvGNReLU_k1(x)))) + GN(Conv1x1(x))))``
    (all convs without bias).

    Args:
        channels: C of the input and the output.
        corner_dim: channels of the two pooled branches (64 in the reference configs).
        directions: the two pools, ``("top", "left")`` or ``("bottom", "right")``.
        first_kernel_size: kernel of the two pre-pool convs (3).
        kernel_size: kernel of the output conv (1 in the reference configs).
        norm_groups: GroupNorm groups.
    Shapes: (N, C, H, W) -> (N, C, H, W).
    Source: LSNet spec §5 "Corner branch" (``CornerPoolPack``, ``TLPool``, ``BRPool``).
    """

    def __init__(self, channels: int, corner_dim: int, directions: tuple[str, str], first_kernel_size: int = 3,
                 kernel_size: int = 1, norm_groups: int = 32) -> None:
        super().__init__()
        self.directions = directions
        self.pre1 = ConvGNReLU(channels, corner_dim, first_kernel_size, norm_groups)
        self.pre2 = ConvGNReLU(channels, corner_dim, first_kernel_size, norm_groups)
        self.pooled_conv = nn.Conv2d(corner_dim, channels, 3, padding=1, bias=False)
        self.pooled_norm = nn.GroupNorm(norm_groups, channels)
        self.skip_conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.skip_norm = nn.GroupNorm(norm_groups, channels)
        self.out = ConvGNReLU(channels, channels, kernel_size, norm_groups)

    def forward(self, x: Tensor) -> Tensor:
        pooled = corner_pool(self.pre1(x), self.directions[0]) + corner_pool(self.pre2(x), self.directions[1])
        y = self.pooled_norm(self.pooled_conv(pooled)) + self.skip_norm(self.skip_conv(x))
        return self.out(F.relu(y))
