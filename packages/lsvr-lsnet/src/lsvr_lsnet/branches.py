"""An LSNet landmark branch: tower, stage-1 regressor, DCN sampling offsets and stage-2 refiner (spec §2.2-§2.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lsvr_lsnet.encoding import decode_cross_vectors
from lsvr_lsnet.layouts import BranchLayout
from lsvr_lsnet.towers import PyramidFusion, normal_init, tower

# (dy, dx) of the 3x3 taps in row-major order, flattened: the DCN base grid (spec §2.3 stage 1 step 6)
_BASE_GRID = [v for i in (-1, 0, 1) for j in (-1, 0, 1) for v in (i, j)]


def sampling_points(s_init: Tensor, raw_free: Tensor, layout: BranchLayout) -> Tensor:
    """The 9 DCN sampling points of each location, relative to it, in base-level cells.

    Args:
        s_init: (N, 4K, H, W) stage-1 cross vectors (Softplus output), cells.
        raw_free: (N, 2 * num_free, H, W) unconstrained (y, x) pairs of the free points.
        layout: the branch layout (which landmarks feed the taps).
    Returns:
        (N, 18, H, W) interleaved (y_k, x_k) for tap k = 0..8 (landmarks ``layout.dcn_index``, then the free points).
    Source: LSNet spec §2.3 stage 1 step 4 (``get_pred_reg``).
    """
    n, _, h, w = s_init.shape
    vec = s_init.view(n, layout.num_landmarks, 4, h, w).permute(0, 3, 4, 1, 2)  # (N, H, W, K, 4)
    dxdy = decode_cross_vectors(vec[..., list(layout.dcn_index), :])  # (N, H, W, 9 - f, 2) as (dx, dy)
    yx = dxdy.flip(-1).reshape(n, h, w, -1).permute(0, 3, 1, 2)  # (N, 2 (9 - f), H, W)
    return torch.cat([yx, raw_free], dim=1) if layout.num_free else yx


class LandmarkBranch(nn.Module):
    """One landmark branch of the LSNet head, shared over levels.

    Args:
        layout: which landmarks, DCN points and free points.
        in_channels: neck channels.
        channels: tower / fusion width (``feat_channels``).
        stacked_convs, conv_module, norm_groups: tower configuration (:func:`~lsvr_lsnet.towers.tower`).
        faithful_offset_scaling: see :class:`~lsvr_lsnet.towers.PyramidFusion`.
    Source: LSNet spec §2.2 table (``pts_B_init_conv``, ``pts_B_init_out``, ``pts_B_refine_conv``,
        ``B_af_dcn_conv``, ``B_feat_conv``, ``B_GN``, ``pts_B_refine_out``); all N(0, 0.01) except the pyramid conv.
    """

    def __init__(self, layout: BranchLayout, in_channels: int, channels: int, stacked_convs: int, conv_module: str,
                 norm_groups: int, faithful_offset_scaling: bool) -> None:
        super().__init__()
        self.layout = layout
        self.tower = tower(in_channels, channels, stacked_convs, conv_module, norm_groups)
        self.init_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.init_out = nn.Conv2d(channels, layout.init_channels, 1)
        self.fusion = PyramidFusion(channels, norm_groups, faithful_offset_scaling)
        self.refine_out = nn.Conv2d(channels, 4 * layout.num_landmarks, 1)
        for conv in (self.init_conv, self.init_out, self.refine_out):
            normal_init(conv)
        self.register_buffer("base_grid", torch.tensor(_BASE_GRID, dtype=torch.float32).view(1, 18, 1, 1), False)

    def stage1(self, x: Tensor, gradient_mul: float) -> tuple[Tensor, Tensor, Tensor]:
        """Args:
            x: (N, C_in, H, W) one level's neck features.
            gradient_mul: gradient factor on the sampling points (value unchanged, §2.3 stage 1 step 5).
        Returns:
            tower features (N, C, H, W); ``S_init`` (N, 4K, H, W) >= 0 cross vectors in cells;
            DCN offsets (N, 18, H, W) = damped sampling points - the regular 3x3 grid, base-level cells.
        """
        feat = self.tower(x)
        out = self.init_out(F.relu(self.init_conv(feat)))
        k4 = 4 * self.layout.num_landmarks
        s_init = F.softplus(out[:, :k4])
        points = sampling_points(s_init, out[:, k4:], self.layout)
        points = (1 - gradient_mul) * points.detach() + gradient_mul * points
        return feat, s_init, points - self.base_grid.to(points.dtype)

    def stage2(self, feats: list[Tensor], level: int, offset: Tensor, s_init: Tensor) -> Tensor:
        """``S_ref = Softplus(refine_out(fusion) + stopgrad(S_init))`` (§2.3 stage 2 step 3).

        Args:
            feats: this branch's tower features on every level.
            level: base level index.
            offset: (N, 18, H, W) this branch's DCN offsets on the base level.
            s_init: (N, 4K, H, W) the base level's stage-1 output.
        Returns:
            (N, 4K, H, W) refined cross vectors, cells.
        """
        return F.softplus(self.refine_out(self.fusion(feats, level, offset)) + s_init.detach())
