"""Public 2-D relative-position attention op with backend dispatch (LESA spec §3.2, §6).

``relpos_attention(q, k, v, table_h, table_w, height, width, content_scale, position_scale)`` computes, per
image and head ``g``, ``softmax_j(a_g q_i.k_j + c_g q_i.(R_h[row_j - row_i] + R_w[col_j - col_i])) v_j`` with no
``1/sqrt(d)`` factor. Every backend first computes the decomposed relative logits ``rel_h (L, H)`` and
``rel_w (L, W)`` with small PyTorch ops (O(L (H + W) D)); the backends differ in the attention itself:

========== ==========================================================================================
backend    attention
========== ==========================================================================================
triton     fused flash-style kernels, forward and backward (:mod:`lsvr_ops_triton.relpos_triton`)
torch      PyTorch SDPA with the (L, L) bias materialised as ``attn_mask``
flex       FlexAttention with a ``score_mod`` (:mod:`lsvr_ops_triton.relpos_flex`)
reference  the fully materialised oracle (:func:`relpos_attention_reference`)
========== ==========================================================================================

``backend=None`` asks :func:`lsvr_ops_triton.dispatch.choose_backend` (``LSVR_KERNEL_BACKEND``): ``triton`` on
CUDA tensors of a dtype the kernels compute (float32/float16/bfloat16), ``torch`` otherwise (e.g. float64).
An explicit ``backend="triton"`` with a dtype the kernels cannot compute raises ``ValueError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lsvr_ops_triton.relpos_reference import (
    crop_table,
    decomposed_attention_sdpa,
    relative_logits,
    relpos_attention_reference,
)

BACKENDS = ("triton", "torch", "flex", "reference")


def relpos_attention(q: Tensor, k: Tensor, v: Tensor, table_h: Tensor, table_w: Tensor, height: int, width: int,
                     content_scale: Tensor | None = None, position_scale: Tensor | None = None,
                     backend: str | None = None) -> Tensor:
    """Multi-head global self-attention with 2-D relative-position logits.

    Args:
        q, k: (B, G, L, Dqk) queries and keys, L = height * width positions in row-major order.
        v: (B, G, L, Dv) values (Dv may differ from Dqk; LESA uses Dv = 2 Dqk).
        table_h: (2 * S_h - 1, Dqk) row-offset table shared by all heads, S_h >= height; row ``S_h - 1`` is
            offset 0 and the offset is key row minus query row (LESA spec §3.2 step 5).
        table_w: (2 * S_w - 1, Dqk) column-offset table, S_w >= width.
        height, width: the feature map's actual size (positions).
        content_scale: (G,) per-head factor a_g of the content logits (None: 1).
        position_scale: (G,) per-head factor c_g of the relative logits (None: 1).
        backend: ``triton``, ``torch``, ``flex``, ``reference`` or None (dispatch by device, dtype and
            ``LSVR_KERNEL_BACKEND``).
    Returns:
        (B, G, L, Dv) in v's dtype, differentiable in q, k, v, both tables and both scales.
    Raises:
        ValueError: inconsistent shapes, a table too small for the side, or an unknown backend.
        lsvr_core.errors.ConfigError: ``LSVR_KERNEL_BACKEND`` asks for an unusable backend.
    """
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"relpos_attention: q, k must be (B, G, L, Dqk) and v (B, G, L, Dv); got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    b, g, length, dqk = q.shape
    if length != height * width:
        raise ValueError(f"relpos_attention: L={length} positions but height * width = {height} * {width}")
    if table_h.dim() != 2 or table_h.shape[1] != dqk or table_w.dim() != 2 or table_w.shape[1] != dqk:
        raise ValueError(f"relpos_attention: tables must be (2S-1, Dqk={dqk}); got {tuple(table_h.shape)}, "
                         f"{tuple(table_w.shape)}")
    for name, scale in (("content_scale", content_scale), ("position_scale", position_scale)):
        if scale is not None and scale.shape != (g,):
            raise ValueError(f"relpos_attention: {name} must have shape ({g},), got {tuple(scale.shape)}")
    th = crop_table(table_h, height, "table_h")
    tw = crop_table(table_w, width, "table_w")
    if backend is None:
        from lsvr_ops_triton.dispatch import choose_backend

        backend = choose_backend(q, k, v)
    if backend == "reference":
        return relpos_attention_reference(q, k, v, th, tw, height, width, content_scale, position_scale)
    if backend not in BACKENDS:
        raise ValueError(f"relpos_attention: unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    acc = torch.promote_types(q.dtype, torch.float32)  # relative logits in fp32 (fp64 for gradcheck)
    rel_h, rel_w = relative_logits(q.to(acc), th.to(acc), tw.to(acc), height, width)  # (B, G, L, H|W)
    if position_scale is not None:
        c = position_scale.to(acc).view(1, g, 1, 1)
        rel_h, rel_w = rel_h * c, rel_w * c
    qa = q if content_scale is None else q * content_scale.to(q.dtype).view(1, g, 1, 1)
    if backend == "triton":
        from lsvr_ops_triton.relpos_triton import decomposed_attention_triton

        return decomposed_attention_triton(qa, k, v, rel_h, rel_w)
    if backend == "flex":
        from lsvr_ops_triton.relpos_flex import decomposed_attention_flex

        return decomposed_attention_flex(qa, k, v, rel_h, rel_w)
    return decomposed_attention_sdpa(qa, k, v, rel_h, rel_w)
