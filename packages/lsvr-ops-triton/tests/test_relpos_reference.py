"""Relative-position attention: closed-form logits vs a direct loop, gradcheck of the reference, the SDPA
and FlexAttention paths vs the reference, dispatch (LESA spec §3.2 step 5, §6)."""

from __future__ import annotations

import pytest
import torch

from lsvr_ops_triton.relpos_attention import relpos_attention
from lsvr_ops_triton.relpos_flex import flex_available
from lsvr_ops_triton.relpos_reference import crop_table, relative_logits, relpos_attention_reference


def loop_logits(q: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor, height: int, width: int,
                max_h: int, max_w: int) -> torch.Tensor:
    """(B, G, L, L) relative logits by the definition: q_i . (R_h[r_j - r_i + S_h - 1] + R_w[c_j - c_i + S_w - 1])."""
    b, g, length, _ = q.shape
    out = torch.zeros(b, g, length, length, dtype=q.dtype)
    for i in range(length):
        ri, ci = divmod(i, width)
        for j in range(length):
            rj, cj = divmod(j, width)
            r = table_h[rj - ri + max_h - 1] + table_w[cj - ci + max_w - 1]
            out[:, :, i, j] = (q[:, :, i] * r).sum(-1)
    return out


def loop_attention(q, k, v, table_h, table_w, height, width, a, c):
    s = torch.einsum("bgid,bgjd->bgij", q, k) * a.view(1, -1, 1, 1)
    s = s + c.view(1, -1, 1, 1) * loop_logits(q, table_h, table_w, height, width, (table_h.shape[0] + 1) // 2,
                                              (table_w.shape[0] + 1) // 2)
    return s.softmax(-1) @ v


def _inputs(b=2, g=3, height=3, width=5, d=4, dv=6, max_h=6, max_w=7, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = height * width
    q = torch.randn(b, g, length, d, generator=gen, dtype=dtype)
    k = torch.randn(b, g, length, d, generator=gen, dtype=dtype)
    v = torch.randn(b, g, length, dv, generator=gen, dtype=dtype)
    th = torch.randn(2 * max_h - 1, d, generator=gen, dtype=dtype) * 0.5
    tw = torch.randn(2 * max_w - 1, d, generator=gen, dtype=dtype) * 0.5
    a = torch.rand(g, generator=gen, dtype=dtype) + 0.5
    c = torch.rand(g, generator=gen, dtype=dtype) + 0.5
    return q, k, v, th, tw, a, c


def test_decomposed_relative_logits_equal_direct_loop() -> None:
    q, _, _, th, tw, _, _ = _inputs(height=3, width=5, max_h=4, max_w=6)
    rel_h, rel_w = relative_logits(q, crop_table(th, 3), crop_table(tw, 5), 3, 5)
    dense = rel_h[..., :, :, None] + rel_w[..., :, None, :]  # (B, G, L, H, W)
    torch.testing.assert_close(dense.reshape(*q.shape[:3], 15), loop_logits(q, th, tw, 3, 5, 4, 6))


def test_reference_equals_direct_loop_with_scales() -> None:
    q, k, v, th, tw, a, c = _inputs(height=4, width=3, max_h=5, max_w=3)
    out = relpos_attention(q, k, v, th, tw, 4, 3, a, c, backend="reference")
    torch.testing.assert_close(out, loop_attention(q, k, v, th, tw, 4, 3, a, c))


def test_crop_table_rejects_a_side_larger_than_the_table() -> None:
    with pytest.raises(ValueError, match="sides up to 3 positions but the feature map side is 4"):
        crop_table(torch.zeros(5, 2), 4)
    with pytest.raises(ValueError, match="odd number of rows"):
        crop_table(torch.zeros(4, 2), 1)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_gradcheck_float64(backend: str) -> None:
    q, k, v, th, tw, a, c = _inputs(b=1, g=2, height=2, width=3, d=3, dv=4, max_h=3, max_w=3)
    args = [t.requires_grad_() for t in (q, k, v, th, tw, a, c)]

    def fn(q, k, v, th, tw, a, c):
        return relpos_attention(q, k, v, th, tw, 2, 3, a, c, backend=backend)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5)


def test_sdpa_path_matches_reference_outputs_and_grads() -> None:
    q, k, v, th, tw, a, c = _inputs(height=5, width=4, dtype=torch.float32, max_h=8, max_w=8)
    go = torch.randn(*q.shape[:3], v.shape[-1])
    results = []
    for backend in ("reference", "torch"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, th, tw, a, c)]
        out = relpos_attention(*leaves[:5], 5, 4, *leaves[5:], backend=backend)
        results.append([out, *torch.autograd.grad(out, leaves, go)])
    for ours, ref in zip(*results[::-1], strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(flex_available() is not None, reason=f"FlexAttention cannot be imported: {flex_available()}")
def test_flex_forward_matches_reference() -> None:
    q, k, v, th, tw, a, c = _inputs(height=4, width=5, dtype=torch.float32)
    ref = relpos_attention_reference(q, k, v, crop_table(th, 4), crop_table(tw, 5), 4, 5, a, c)
    out = relpos_attention(q, k, v, th, tw, 4, 5, a, c, backend="flex")  # eager FlexAttention on CPU
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_dispatch_uses_torch_on_cpu_and_rejects_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v, th, tw, a, c = _inputs(dtype=torch.float32)
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "auto")
    out = relpos_attention(q, k, v, th, tw, 3, 5, a, c)
    torch.testing.assert_close(out, relpos_attention(q, k, v, th, tw, 3, 5, a, c, backend="reference"),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="height \\* width"):
        relpos_attention(q, k, v, th, tw, 4, 5)
    with pytest.raises(ValueError, match="unknown backend"):
        relpos_attention(q, k, v, th, tw, 3, 5, backend="cuda")
    with pytest.raises(ValueError, match="content_scale must have shape"):
        relpos_attention(q, k, v, th, tw, 3, 5, content_scale=torch.ones(2))
