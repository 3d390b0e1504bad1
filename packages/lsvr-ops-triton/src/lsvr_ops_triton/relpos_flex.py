"""Relative-position attention through PyTorch FlexAttention with a ``score_mod`` (LESA spec §6).

The score modifier adds ``rel_h[b, h, q, kv // W] + rel_w[b, h, q, kv % W]`` to each ``q . k`` score, so the
(L, L) bias is never stored. On CUDA the call is compiled (``torch.compile``, cached per process); on CPU it
runs FlexAttention's eager implementation, which materialises the scores and is meant for tests only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


@functools.lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., Any]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_available() -> str | None:
    """``None`` when FlexAttention can be imported, else the reason it cannot."""
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {err}"
    return None


def decomposed_attention_flex(q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor,
                              compile: bool | None = None) -> Tensor:
    """``softmax(q k^T + rel_h[..., row_j] + rel_w[..., col_j]) v`` by FlexAttention (scale 1).

    Args:
        q, k: (B, G, L, Dqk); v: (B, G, L, Dv) (same dtype); rel_h (B, G, L, H), rel_w (B, G, L, W), L = H * W.
        compile: compile the call (default: on CUDA only).
    Returns:
        (B, G, L, Dv) in v's dtype; differentiable in all five inputs.
    Raises:
        RuntimeError: FlexAttention is unavailable in this PyTorch (message says why).
    """
    reason = flex_available()
    if reason is not None:
        raise RuntimeError(f"FlexAttention is unavailable: {reason}")
    from torch.nn.attention.flex_attention import flex_attention

    width = rel_w.shape[-1]

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return score + rel_h[b, h, q_idx, kv_idx // width] + rel_w[b, h, q_idx, kv_idx % width]

    use_compile = q.is_cuda if compile is None else compile
    fn = _compiled_flex() if use_compile else flex_attention
    return fn(q, k, v, score_mod=score_mod, scale=1.0)
