"""2-D relative-position attention in plain PyTorch: the decomposed relative logits shared by every backend,
the SDPA path with a materialised bias, and the fully materialised reference (the test oracle).

Conventions (LESA spec §3.2 step 5 and §6): a feature map of ``height x width`` positions is flattened row
major, position ``i = row * width + col``. The relative logit of query ``i`` and key ``j`` is
``q_i . (R_h[row_j - row_i + height - 1] + R_w[col_j - col_i + width - 1])`` (key minus query), with tables
``R_h: (2 * height - 1, D)`` and ``R_w: (2 * width - 1, D)`` shared by all heads. The attention is
``softmax_j(a_g * q_i . k_j + c_g * relative_ij) @ v`` with per-head scalars ``a_g``, ``c_g`` (the folded
eval-mode or exact train-mode BatchNorm of the logits) and no ``1/sqrt(d)`` factor (LESA spec §7.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def crop_table(table: Tensor, size: int, name: str = "table") -> Tensor:
    """The rows of a relative-position table that a side of ``size`` positions uses.

    Args:
        table: (2 * S - 1, D) table for sides up to ``S`` (row ``S - 1`` is offset 0).
        size: the actual side length, 1 <= size <= S.
        name: used in the error message.
    Returns:
        (2 * size - 1, D) view, row ``size - 1`` is offset 0 (differentiable slice).
    Raises:
        ValueError: the table has an even number of rows or is too small for ``size``.
    Source: LESA spec §7.1 (any input size: tables sized for the largest side, indexed by the actual side).
    """
    rows = table.shape[0]
    if rows % 2 == 0:
        raise ValueError(f"{name} must have an odd number of rows (2*S-1), got shape {tuple(table.shape)}")
    max_side = (rows + 1) // 2
    if not 1 <= size <= max_side:
        raise ValueError(f"{name} covers sides up to {max_side} positions but the feature map side is {size}; "
                         f"raise the block's max size (the backbone's max_input_size)")
    return table[max_side - size : max_side + size - 1]


def relative_logits(q: Tensor, table_h: Tensor, table_w: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Decomposed relative logits of every query against every key row and key column.

    Args:
        q: (B, G, L, D) queries, L = height * width, row-major positions.
        table_h: (2 * height - 1, D) row-offset table (already cropped).
        table_w: (2 * width - 1, D) column-offset table (already cropped).
    Returns:
        ``rel_h`` (B, G, L, height) with ``rel_h[..., i, r] = q_i . table_h[r - row_i + height - 1]`` and
        ``rel_w`` (B, G, L, width) with ``rel_w[..., i, c] = q_i . table_w[c - col_i + width - 1]``, in q's dtype.
        The full relative logit is ``rel_h[i, row_j] + rel_w[i, col_j]``.
    Source: LESA spec §6 (efficient bias form).
    """
    b, g, length, d = q.shape
    if length != height * width:
        raise ValueError(f"q has {length} positions but height * width = {height} * {width}")
    dev = q.device
    idx_h = torch.arange(height, device=dev)[None, :] - torch.arange(height, device=dev)[:, None] + height - 1
    idx_w = torch.arange(width, device=dev)[None, :] - torch.arange(width, device=dev)[:, None] + width - 1
    rh = table_h.to(q.dtype)[idx_h]  # (H_query, H_key, D)
    rw = table_w.to(q.dtype)[idx_w]  # (W_query, W_key, D)
    q5 = q.reshape(b, g, height, width, d)
    rel_h = torch.einsum("bghwd,hrd->bghwr", q5, rh).reshape(b, g, length, height)
    rel_w = torch.einsum("bghwd,wcd->bghwc", q5, rw).reshape(b, g, length, width)
    return rel_h, rel_w


def expand_bias(rel_h: Tensor, rel_w: Tensor) -> Tensor:
    """Materialise ``bias[i, j] = rel_h[i, row_j] + rel_w[i, col_j]``: (B, G, L, height) and (B, G, L, width)
    -> (B, G, L, L) (O(L^2) memory)."""
    b, g, length, height = rel_h.shape
    width = rel_w.shape[-1]
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, g, length, height * width)


def decomposed_attention_sdpa(q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor) -> Tensor:
    """``softmax(q k^T + bias) v`` through PyTorch SDPA with the bias materialised as ``attn_mask``.

    Args:
        q, k: (B, G, L, Dqk); v: (B, G, L, Dv); rel_h (B, G, L, height), rel_w (B, G, L, width) as from
            :func:`relative_logits` (already scaled).
    Returns:
        (B, G, L, Dv) in v's dtype. The softmax scale is 1 (no 1/sqrt(d)).
    """
    bias = expand_bias(rel_h, rel_w).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def relpos_attention_reference(q: Tensor, k: Tensor, v: Tensor, table_h: Tensor, table_w: Tensor, height: int,
                               width: int, content_scale: Tensor | None = None,
                               position_scale: Tensor | None = None) -> Tensor:
    """Fully materialised relative-position attention (the oracle for the kernels; O(L^2) memory).

    Unlike the kernels it does not decompose the bias: it builds the (L, L) map of (row, column) offsets
    and gathers ``q . R`` for every pair, then runs an fp32 softmax.

    Args:
        q, k: (B, G, L, Dqk); v: (B, G, L, Dv); L = height * width, row-major.
        table_h: (2 * height - 1, Dqk); table_w: (2 * width - 1, Dqk) (already cropped).
        content_scale: (G,) per-head factor ``a_g`` of ``q . k`` (None: 1).
        position_scale: (G,) per-head factor ``c_g`` of the relative logit (None: 1).
    Returns:
        (B, G, L, Dv) in v's dtype.
    Source: LESA spec §3.2 steps 4-8 with §6's per-head affine.
    """
    g = q.shape[1]
    acc = torch.promote_types(q.dtype, torch.float32)  # fp32, or fp64 for gradcheck
    qf, kf, vf = q.to(acc), k.to(acc), v.to(acc)
    dev = q.device
    rows = torch.arange(height, device=dev).repeat_interleave(width)  # (L,) row of each position
    cols = torch.arange(width, device=dev).repeat(height)  # (L,)
    d_row = rows[None, :] - rows[:, None] + height - 1  # (L_query, L_key) key minus query
    d_col = cols[None, :] - cols[:, None] + width - 1
    qh = qf @ table_h.to(acc).t()  # (B, G, L, 2H-1)
    qw = qf @ table_w.to(acc).t()  # (B, G, L, 2W-1)
    length = q.shape[2]
    idx_row = d_row.expand(q.shape[0], g, length, length)
    idx_col = d_col.expand(q.shape[0], g, length, length)
    s_pos = qh.gather(-1, idx_row) + qw.gather(-1, idx_col)  # (B, G, L, L)
    s_con = qf @ kf.transpose(-1, -2)  # (B, G, L, L)
    a = torch.ones(g, device=dev, dtype=acc) if content_scale is None else content_scale.to(acc)
    c = torch.ones(g, device=dev, dtype=acc) if position_scale is None else position_scale.to(acc)
    z = a.view(1, g, 1, 1) * s_con + c.view(1, g, 1, 1) * s_pos
    return (z.softmax(-1) @ vf).to(v.dtype)
