"""LESA's binary branch: global multi-head self-attention with 2-D relative-position logits, BatchNorm on
the content and position logits, no ``1/sqrt(d)`` scaling, output BatchNorm (LESA spec §3.2).

The logit BatchNorm (``bn_similarity``, BatchNorm2d over 2G channels of (N, HW, HW) logits) is never applied
to an HW x HW tensor. Its per-channel shift is constant along each softmax row and cancels, so it reduces to
per-head scales ``a_g = w_g / sqrt(var_g + eps)`` (content) and ``c_g = w_{G+g} / sqrt(var_{G+g} + eps)``
(position) that :func:`lsvr_ops_triton.relpos_attention.relpos_attention` applies (LESA spec §6):

* eval mode (detection fine-tuning, ``norm_eval``): ``var`` is the running variance, a frozen per-head affine;
* train mode: the exact batch statistics over (N, HW, HW), from closed forms that never build the logits:
  content ``mean = mean_n(qbar . kbar)``, ``E[S^2] = mean_n <Q^T Q, K^T K>_F / L^2`` (spec §6); position,
  with ``rel_h[i, r] = q_i . R_h[r - r_i]`` and ``rel_w[i, c] = q_i . R_w[c - c_i]``,
  ``sum_j S_r = W sum_r rel_h + H sum_c rel_w`` and
  ``sum_j S_r^2 = W sum_r rel_h^2 + H sum_c rel_w^2 + 2 (sum_r rel_h)(sum_c rel_w)`` (O(L (H + W)), our
  derivation). Running statistics are updated like ``nn.BatchNorm2d`` (unbiased variance, ``momentum``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lsvr_ops_triton.relpos_attention import relpos_attention
from lsvr_ops_triton.relpos_reference import crop_table, relative_logits


def logit_moments(q: Tensor, k: Tensor, rel_h: Tensor, rel_w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per (image, head) mean and mean square of the content and position logits over all L x L pairs.

    Args:
        q, k: (B, G, L, D); rel_h (B, G, L, H), rel_w (B, G, L, W) unscaled relative logits, L = H * W.
    Returns:
        ``mean_c, sq_c, mean_r, sq_r``, each (B, G): E[q.k], E[(q.k)^2], E[S_r], E[S_r^2] over (i, j).
    """
    length, height, width = q.shape[2], rel_h.shape[-1], rel_w.shape[-1]
    mean_c = (q.mean(2) * k.mean(2)).sum(-1)
    gram_q = q.transpose(-1, -2) @ q  # (B, G, D, D)
    gram_k = k.transpose(-1, -2) @ k
    sq_c = (gram_q * gram_k).sum((-1, -2)) / length**2
    sum_h, sum_w = rel_h.sum(-1), rel_w.sum(-1)  # (B, G, L)
    mean_r = (width * sum_h + height * sum_w).sum(-1) / length**2
    sq_r = (width * rel_h.square().sum(-1) + height * rel_w.square().sum(-1) + 2 * sum_h * sum_w).sum(-1) / length**2
    return mean_c, sq_c, mean_r, sq_r


class LogitBatchNorm(nn.BatchNorm2d):
    """``bn_similarity``: BatchNorm2d over the 2G channels [content logits of heads 0..G-1, position logits],
    evaluated as per-head softmax scales (see the module docstring). State-dict compatible with the
    reference's ``nn.BatchNorm2d(2G)``. Its ``bias`` cancels in the softmax (zero gradient), so it is frozen.

    Args:
        heads: G.
    """

    def __init__(self, heads: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__(2 * heads, eps=eps, momentum=momentum)
        self.heads = heads
        self.bias.requires_grad_(False)

    def forward(self, *args: Tensor) -> Tensor:  # noqa: D401 - not a plain BatchNorm
        raise RuntimeError("LogitBatchNorm is applied through head_scales(), never to a logit tensor")

    def head_scales(self, q: Tensor, k: Tensor, table_h: Tensor, table_w: Tensor, height: int,
                    width: int) -> tuple[Tensor, Tensor]:
        """Per-head factors of the content and position logits.

        Args:
            q, k: (B, G, L, Dqk) post-``bn_qkv`` queries and keys; tables (2S-1, Dqk) uncropped.
        Returns:
            ``(a, c)``, each (G,) float32: ``softmax(BN(concat(S_c, S_r)) summed per head) ==
            softmax(a_g S_c + c_g S_r)``. In train mode they carry gradients through the batch variance and
            the running statistics are updated.
        """
        g = self.heads
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            acc = torch.promote_types(q.dtype, torch.float32)
            qf, kf = q.to(acc), k.to(acc)
            rel_h, rel_w = relative_logits(qf, crop_table(table_h, height, "rel_h").to(acc),
                                           crop_table(table_w, width, "rel_w").to(acc), height, width)
            mean_c, sq_c, mean_r, sq_r = logit_moments(qf, kf, rel_h, rel_w)
            mean = torch.cat([mean_c.mean(0), mean_r.mean(0)])  # (2G,)
            var = (torch.cat([sq_c.mean(0), sq_r.mean(0)]) - mean.square()).clamp_min(0)  # biased, (2G,)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), q.shape[0] * q.shape[2] ** 2)
        else:
            var = self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)  # (2G,)
        return scale[:g].float(), scale[g:].float()

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: int) -> None:
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / max(count - 1, 1)
        self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean.dtype))
        self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var.dtype))


class RelPosSelfAttention(nn.Module):
    """The binary (context) branch of LESA: ``(N, C, H, W) -> (N, C, H, W)``.

    qkv projection (1x1, C -> 2C, no bias) + ``bn_qkv``; per head g the channels [g (2dqk + dv), ...) are
    q (dqk), k (dqk), v (dv) with dqk = C / G / 2 and dv = C / G; logits ``q.k`` and
    ``q.(R_h[row_j - row_i] + R_w[col_j - col_i])`` normalised by ``bn_similarity`` and summed; softmax over
    keys; ``P V`` re-assembled as channel ``g dv + c``; ``bn_output``. Source: LESA spec §3.2.

    Args:
        channels: C, divisible by 2 G.
        heads: G.
        max_size: (S_h, S_w) largest feature-map height and width; the tables are (2 S - 1, dqk), initialised
            N(0, 1) / sqrt(dqk) and shared by all heads.
        backend: ``relpos_attention`` backend (``auto`` dispatches by device and ``LSVR_KERNEL_BACKEND``).
    Raises:
        ValueError: channels not divisible by 2 G; at run time, a feature map larger than ``max_size``.
    """

    def __init__(self, channels: int, heads: int, max_size: tuple[int, int], backend: str = "auto") -> None:
        super().__init__()
        if channels % (2 * heads):
            raise ValueError(f"LESA: channels {channels} must be divisible by 2 * heads = {2 * heads}")
        self.channels, self.heads = channels, heads
        self.d_qk, self.d_v = channels // heads // 2, channels // heads
        self.backend = None if backend == "auto" else backend
        self.qkv = nn.Conv1d(channels, 2 * channels, 1, bias=False)
        self.bn_qkv = nn.BatchNorm1d(2 * channels)
        self.rel_h = nn.Parameter(torch.randn(2 * max_size[0] - 1, self.d_qk) * self.d_qk**-0.5)
        self.rel_w = nn.Parameter(torch.randn(2 * max_size[1] - 1, self.d_qk) * self.d_qk**-0.5)
        self.bn_similarity = LogitBatchNorm(heads)
        self.bn_output = nn.BatchNorm1d(channels)
        nn.init.normal_(self.qkv.weight, 0.0, channels**-0.5)  # N(0, 1 / C_in), LESA spec §3.6

    def split_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C, H, W) -> q, k (N, G, L, dqk) and v (N, G, L, dv), after the projection and ``bn_qkv``."""
        n, c, h, w = x.shape
        qkv = self.bn_qkv(self.qkv(x.reshape(n, c, h * w)))  # (N, 2C, L)
        qkv = qkv.reshape(n, self.heads, 2 * self.d_qk + self.d_v, h * w).transpose(2, 3)  # (N, G, L, 2dqk+dv)
        q, k, v = qkv.split([self.d_qk, self.d_qk, self.d_v], dim=-1)
        return q, k, v

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.split_qkv(x)
        a, pos = self.bn_similarity.head_scales(q, k, self.rel_h, self.rel_w, h, w)
        if torch.is_autocast_enabled(x.device.type):  # run the attention in the autocast dtype (fp32 softmax)
            dtype = torch.get_autocast_dtype(x.device.type)
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            out = relpos_attention(q, k, v, self.rel_h, self.rel_w, h, w, a, pos, backend=self.backend)
        out = out.transpose(2, 3).reshape(n, c, h * w)  # (N, C, L), channel g * dv + c
        return self.bn_output(out).reshape(n, c, h, w)
