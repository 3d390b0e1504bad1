"""Pure-PyTorch references of the deformable ops: the test oracles (autograd through plain torch ops).

* :func:`deform_conv2d_reference` is ``torchvision.ops.deform_conv2d`` (DCN v1 / v2).
* :func:`pyramid_deform_conv2d_reference` is LSNet's PyramidDeformConv written as ``F.grid_sample`` of the
  nine taps followed by one matmul (LSNet spec §9 item 2, semantics §2.4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def deform_conv2d_reference(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> Tensor:
    """``torchvision.ops.deform_conv2d`` (groups and offset groups are read from the tensor shapes).

    Args: as :func:`lsvr_ops_triton.deform_conv2d`. Returns: (N, Cout, Ho, Wo).
    """
    import torchvision

    return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)


def pyramid_sampling_grid(offset: Tensor, feature_hw: Sequence[int], scale_hw: Sequence[float]) -> Tensor:
    """Normalised ``grid_sample`` coordinates of the 3×3 taps of the pyramid op.

    Args:
        offset: (N, 18, H, W) per-tap (dy, dx) offsets in feature-level pixels, channel 2k = dy, 2k+1 = dx of
            tap k = 3i + j (row-major).
        feature_hw: (H', W') size of the sampled feature map (or of its zero-padded version).
        scale_hw: (s_h, s_w) ratio of the feature's size to the offset's size (LSNet spec §2.3 step 2).
    Returns:
        (N, 9·H, W, 2) grid, last dim (x, y) normalised with align_corners=False: x_n = (2x + 1)/W' − 1.
    Source: LSNet spec §2.4 (sampling row (h − 1 + i)·s_h + dy, column (w − 1 + j)·s_w + dx) and §9 item 2.
    """
    n, _, h, w = offset.shape
    hf, wf = feature_hw
    s_h, s_w = float(scale_hw[0]), float(scale_hw[1])
    taps = torch.arange(3, device=offset.device, dtype=torch.float64)
    rows = torch.arange(h, device=offset.device, dtype=torch.float64)
    cols = torch.arange(w, device=offset.device, dtype=torch.float64)
    base_y = ((rows[None, :] - 1 + taps[:, None]) * s_h).repeat_interleave(3, dim=0)  # (9, H): tap k = 3i + j
    base_x = ((cols[None, :] - 1 + taps[:, None]) * s_w).repeat(3, 1)  # (9, W)
    off = offset.view(n, 9, 2, h, w)
    y = base_y.to(offset.dtype)[None, :, :, None] + off[:, :, 0]  # (N, 9, H, W)
    x = base_x.to(offset.dtype)[None, :, None, :] + off[:, :, 1]
    grid = torch.stack(((2 * x + 1) / wf - 1, (2 * y + 1) / hf - 1), dim=-1)  # (N, 9, H, W, 2)
    return grid.view(n, 9 * h, w, 2)


def pyramid_deform_conv2d_reference(
    feature: Tensor, offset: Tensor, weight: Tensor, scale_hw: Sequence[float], bias: Tensor | None = None
) -> Tensor:
    """LSNet's pyramid deformable conv by ``F.grid_sample`` + matmul (autograd through both).

    Args:
        feature: (N, C, H', W') features of the sampled pyramid level, float.
        offset: (N, 18, H, W) per-tap (dy, dx) offsets, feature-level pixels.
        weight: (Cout, C, 3, 3).
        scale_hw: (s_h, s_w) = (H'/H, W'/W) as floats.
        bias: optional (Cout,).
    Returns:
        (N, Cout, H, W), the output at the offset's resolution.
    The feature is zero-padded at the bottom/right to power-of-two sizes (same samples): the normalised
    coordinates are then exact for integer positions, where the offset gradient takes the floor side as in
    torchvision's DCN.
    Source: LSNet spec §2.4, §9 item 2.
    """
    n, c, hf, wf = feature.shape
    h, w = offset.shape[-2:]
    hp, wp = 1 << (hf - 1).bit_length(), 1 << (wf - 1).bit_length()
    padded = F.pad(feature, (0, wp - wf, 0, hp - hf))
    grid = pyramid_sampling_grid(offset.to(feature.dtype), (hp, wp), scale_hw)
    sampled = F.grid_sample(padded, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cols = sampled.view(n, c * 9, h * w)  # (N, C·9, H·W), index c·9 + k matches weight (Cout, C, 3, 3)
    out = torch.matmul(weight.reshape(weight.shape[0], c * 9), cols).view(n, -1, h, w)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out
