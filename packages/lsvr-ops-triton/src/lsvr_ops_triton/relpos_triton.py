"""Fused flash-style Triton kernels for attention with a decomposed 2-D relative-position bias.

Computes ``O = softmax(Q K^T + B) V`` with ``B[i, j] = RH[i, j // W] + RW[i, j % W]`` per (batch, head),
never materialising an (L, L) tensor: the forward keeps an online softmax (FlashAttention-2) and stores the
row log-sum-exp; the backward recomputes the probabilities block by block in two kernels (one over key
blocks for dK, dV; one over query blocks for dQ, dRH, dRW). ``dRH[i, r] = sum_{j in row r} dS[i, j]`` is a
product of the (BLOCK_M, BLOCK_N) block of dS with a one-hot (BLOCK_N, BLOCK_H) matrix of key rows (and
likewise for columns), so it runs on tensor cores; fp32 dS is split into two bf16 halves there so the
result keeps ~16 mantissa bits.

The per-head content scale and the relative logits ``RH = c * q . R_h``, ``RW = c * q . R_w`` are computed
by :mod:`lsvr_ops_triton.relpos_attention` with small PyTorch ops (O(L * (H + W) * D)), whose autograd
carries the kernels' dRH, dRW back to q, the tables and the scales. Source: LESA spec §6.

Shapes: Q, K (B, G, L, Dqk); V (B, G, L, Dv) with any Dqk, Dv <= 256; RH (B, G, L, H), RW (B, G, L, W) fp32;
L = H * W. Softmax and accumulation are fp32; fp32 matmuls follow ``torch.backends.cuda.matmul.allow_tf32``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from lsvr_ops_triton.dispatch import triton_interpret


@triton.jit
def _bias(RH, RW, offs_m, offs_n, mask, H, W):
    """(BLOCK_M, BLOCK_N) bias block RH[i, j // W] + RW[i, j % W] (RH/RW already offset to this head)."""
    rows = offs_n // W
    cols = offs_n % W
    bh = tl.load(RH + offs_m[:, None] * H + rows[None, :], mask=mask, other=0.0)
    bw = tl.load(RW + offs_m[:, None] * W + cols[None, :], mask=mask, other=0.0)
    return bh + bw


@triton.jit
def _mm(a, b, PRECISION: tl.constexpr):
    """``a @ b`` with fp32 accumulation; ``PRECISION`` (``ieee``/``tf32``) applies to fp32 operands only."""
    if PRECISION == "none":
        return tl.dot(a, b)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _onehot_dot(ds, idx, BLOCK_C: tl.constexpr, SPLIT: tl.constexpr, PRECISION: tl.constexpr):
    """``ds @ onehot(idx)``: (BLOCK_M, BLOCK_N) fp32 x (BLOCK_N, BLOCK_C) -> (BLOCK_M, BLOCK_C) fp32 sums of
    ds over the keys whose index is c."""
    onehot = idx[:, None] == tl.arange(0, BLOCK_C)[None, :]
    if SPLIT:
        hi = ds.to(tl.bfloat16)
        lo = (ds - hi.to(tl.float32)).to(tl.bfloat16)
        oh = onehot.to(tl.bfloat16)
        return tl.dot(hi, oh) + tl.dot(lo, oh)
    return _mm(ds, onehot.to(tl.float32), PRECISION)


@triton.jit
def _fwd_kernel(Q, K, V, RH, RW, O, LSE, L, H, W, DQK, DV,  # noqa: E741 (Q, K, V, O: attention's names)
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr,
                PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dq = tl.arange(0, BLOCK_DQK)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_mask = offs_m < L
    Q += bh * L * DQK
    K += bh * L * DQK
    V += bh * L * DV
    RH += bh * L * H
    RW += bh * L * W
    q = tl.load(Q + offs_m[:, None] * DQK + offs_dq[None, :], mask=m_mask[:, None] & (offs_dq[None, :] < DQK),
                other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < L
        k = tl.load(K + offs_n[:, None] * DQK + offs_dq[None, :], mask=n_mask[:, None] & (offs_dq[None, :] < DQK),
                    other=0.0)
        v = tl.load(V + offs_n[:, None] * DV + offs_dv[None, :], mask=n_mask[:, None] & (offs_dv[None, :] < DV),
                    other=0.0)
        s = _mm(q, tl.trans(k), PRECISION)  # (BLOCK_M, BLOCK_N) fp32
        s += _bias(RH, RW, offs_m, offs_n, m_mask[:, None] & n_mask[None, :], H, W)
        s = tl.where(n_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _mm(p.to(v.dtype), v, PRECISION)
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(O + bh * L * DV + offs_m[:, None] * DV + offs_dv[None, :], acc.to(O.dtype.element_ty),
             mask=m_mask[:, None] & (offs_dv[None, :] < DV))
    tl.store(LSE + bh * L + offs_m, m_i + tl.log(l_i), mask=m_mask)


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, RH, RW, DO, LSE, DELTA, DK, DVV, L, H, W, DQK, DV,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DQK: tl.constexpr,
                     BLOCK_DV: tl.constexpr, PRECISION: tl.constexpr):
    pid_n = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_dq = tl.arange(0, BLOCK_DQK)
    offs_dv = tl.arange(0, BLOCK_DV)
    n_mask = offs_n < L
    Q += bh * L * DQK
    K += bh * L * DQK
    V += bh * L * DV
    DO += bh * L * DV
    RH += bh * L * H
    RW += bh * L * W
    LSE += bh * L
    DELTA += bh * L
    kmask = n_mask[:, None] & (offs_dq[None, :] < DQK)
    vmask = n_mask[:, None] & (offs_dv[None, :] < DV)
    k = tl.load(K + offs_n[:, None] * DQK + offs_dq[None, :], mask=kmask, other=0.0)
    v = tl.load(V + offs_n[:, None] * DV + offs_dv[None, :], mask=vmask, other=0.0)
    dk = tl.zeros([BLOCK_N, BLOCK_DQK], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    for start_m in range(0, L, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        m_mask = offs_m < L
        q = tl.load(Q + offs_m[:, None] * DQK + offs_dq[None, :], mask=m_mask[:, None] & (offs_dq[None, :] < DQK),
                    other=0.0)
        do = tl.load(DO + offs_m[:, None] * DV + offs_dv[None, :], mask=m_mask[:, None] & (offs_dv[None, :] < DV),
                     other=0.0)
        lse = tl.load(LSE + offs_m, mask=m_mask, other=0.0)
        delta = tl.load(DELTA + offs_m, mask=m_mask, other=0.0)
        mn = m_mask[:, None] & n_mask[None, :]
        s = _mm(q, tl.trans(k), PRECISION) + _bias(RH, RW, offs_m, offs_n, mn, H, W)
        p = tl.where(mn, tl.exp(s - lse[:, None]), 0.0)  # (BLOCK_M, BLOCK_N)
        dv += _mm(tl.trans(p.to(do.dtype)), do, PRECISION)
        dp = _mm(do, tl.trans(v), PRECISION)
        ds = p * (dp - delta[:, None])
        dk += _mm(tl.trans(ds.to(q.dtype)), q, PRECISION)
    tl.store(DK + bh * L * DQK + offs_n[:, None] * DQK + offs_dq[None, :], dk.to(DK.dtype.element_ty), mask=kmask)
    tl.store(DVV + bh * L * DV + offs_n[:, None] * DV + offs_dv[None, :], dv.to(DVV.dtype.element_ty), mask=vmask)


@triton.jit
def _bwd_dq_kernel(Q, K, V, RH, RW, DO, LSE, DELTA, DQ, DRH, DRW, L, H, W, DQK, DV,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DQK: tl.constexpr, BLOCK_DV: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, SPLIT: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dq = tl.arange(0, BLOCK_DQK)
    offs_dv = tl.arange(0, BLOCK_DV)
    m_mask = offs_m < L
    Q += bh * L * DQK
    K += bh * L * DQK
    V += bh * L * DV
    DO += bh * L * DV
    RH += bh * L * H
    RW += bh * L * W
    qmask = m_mask[:, None] & (offs_dq[None, :] < DQK)
    q = tl.load(Q + offs_m[:, None] * DQK + offs_dq[None, :], mask=qmask, other=0.0)
    do = tl.load(DO + offs_m[:, None] * DV + offs_dv[None, :], mask=m_mask[:, None] & (offs_dv[None, :] < DV),
                 other=0.0)
    lse = tl.load(LSE + bh * L + offs_m, mask=m_mask, other=0.0)
    delta = tl.load(DELTA + bh * L + offs_m, mask=m_mask, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_DQK], tl.float32)
    drh = tl.zeros([BLOCK_M, BLOCK_H], tl.float32)
    drw = tl.zeros([BLOCK_M, BLOCK_W], tl.float32)
    for start_n in range(0, L, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < L
        k = tl.load(K + offs_n[:, None] * DQK + offs_dq[None, :], mask=n_mask[:, None] & (offs_dq[None, :] < DQK),
                    other=0.0)
        v = tl.load(V + offs_n[:, None] * DV + offs_dv[None, :], mask=n_mask[:, None] & (offs_dv[None, :] < DV),
                    other=0.0)
        mn = m_mask[:, None] & n_mask[None, :]
        s = _mm(q, tl.trans(k), PRECISION) + _bias(RH, RW, offs_m, offs_n, mn, H, W)
        p = tl.where(mn, tl.exp(s - lse[:, None]), 0.0)
        dp = _mm(do, tl.trans(v), PRECISION)
        ds = p * (dp - delta[:, None])  # (BLOCK_M, BLOCK_N) fp32, zero outside the valid block
        dq += _mm(ds.to(k.dtype), k, PRECISION)
        drh += _onehot_dot(ds, offs_n // W, BLOCK_H, SPLIT, PRECISION)
        drw += _onehot_dot(ds, offs_n % W, BLOCK_W, SPLIT, PRECISION)
    tl.store(DQ + bh * L * DQK + offs_m[:, None] * DQK + offs_dq[None, :], dq.to(DQ.dtype.element_ty), mask=qmask)
    offs_h = tl.arange(0, BLOCK_H)
    offs_w = tl.arange(0, BLOCK_W)
    tl.store(DRH + bh * L * H + offs_m[:, None] * H + offs_h[None, :], drh,
             mask=m_mask[:, None] & (offs_h[None, :] < H))
    tl.store(DRW + bh * L * W + offs_m[:, None] * W + offs_w[None, :], drw,
             mask=m_mask[:, None] & (offs_w[None, :] < W))


def _pow2(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


def _config(device: torch.device, dtype: torch.dtype) -> tuple[int, int, str, bool]:
    """(BLOCK_M, BLOCK_N, dot precision, split one-hot dots) for this device, mode and q/k/v dtype.

    The precision is ``none`` for 16-bit operands, else ``ieee`` (interpreter; CUDA unless
    ``torch.backends.cuda.matmul.allow_tf32``) or ``tf32``. Block sizes are untuned defaults.
    """
    if triton_interpret() or device.type != "cuda":
        return 16, 16, "ieee" if dtype == torch.float32 else "none", False
    if dtype != torch.float32:
        return 64, 64, "none", True
    return 64, 64, "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee", True


class _RelposAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor) -> Tensor:  # type: ignore[override]
        b, g, length, dqk = q.shape
        dv = v.shape[-1]
        height, width = rel_h.shape[-1], rel_w.shape[-1]
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        rel_h, rel_w = rel_h.contiguous(), rel_w.contiguous()
        out = torch.empty((b, g, length, dv), device=q.device, dtype=v.dtype)
        lse = torch.empty((b, g, length), device=q.device, dtype=torch.float32)
        block_m, block_n, precision, _ = _config(q.device, q.dtype)
        grid = (triton.cdiv(length, block_m), b * g)
        _fwd_kernel[grid](q, k, v, rel_h, rel_w, out, lse, length, height, width, dqk, dv,
                          BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_DQK=_pow2(dqk), BLOCK_DV=_pow2(dv),
                          PRECISION=precision, num_warps=4, num_stages=2)
        ctx.save_for_backward(q, k, v, rel_h, rel_w, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):  # type: ignore[override]
        q, k, v, rel_h, rel_w, out, lse = ctx.saved_tensors
        b, g, length, dqk = q.shape
        dv = v.shape[-1]
        height, width = rel_h.shape[-1], rel_w.shape[-1]
        dout = dout.contiguous()
        delta = (dout.float() * out.float()).sum(-1).contiguous()  # (B, G, L) rowsum(dO * O)
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        drh = torch.empty_like(rel_h)
        drw = torch.empty_like(rel_w)
        block_m, block_n, precision, split = _config(q.device, q.dtype)
        common = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_DQK=_pow2(dqk), BLOCK_DV=_pow2(dv), PRECISION=precision,
                      num_warps=4, num_stages=2)
        _bwd_dkdv_kernel[(triton.cdiv(length, block_n), b * g)](
            q, k, v, rel_h, rel_w, dout, lse, delta, dk, dvv, length, height, width, dqk, dv, **common)
        if _pow2(height) + _pow2(width) > 128 and block_m > 32:  # keep the dRH/dRW accumulators in registers
            common["BLOCK_M"] = block_m = 32
        _bwd_dq_kernel[(triton.cdiv(length, block_m), b * g)](
            q, k, v, rel_h, rel_w, dout, lse, delta, dq, drh, drw, length, height, width, dqk, dv,
            BLOCK_H=_pow2(height), BLOCK_W=_pow2(width), SPLIT=split, **common)
        return dq, dk, dvv, drh, drw


def decomposed_attention_triton(q: Tensor, k: Tensor, v: Tensor, rel_h: Tensor, rel_w: Tensor) -> Tensor:
    """``softmax(q k^T + rel_h[:, :, :, row_j] + rel_w[:, :, :, col_j]) v`` by the fused kernels.

    Args:
        q, k: (B, G, L, Dqk) fp32/bf16/fp16 (same dtype); v: (B, G, L, Dv) same dtype; rel_h (B, G, L, H),
            rel_w (B, G, L, W) float32 with H * W = L. Dqk, Dv, H, W <= 256.
    Returns:
        (B, G, L, Dv) in v's dtype; differentiable in all five inputs.
    Raises:
        ValueError: inconsistent shapes, mixed dtypes, a dtype the kernels cannot compute here (float64; bfloat16
            under ``TRITON_INTERPRET=1``) or a side/dim above 256.
    """
    b, g, length, dqk = q.shape
    height, width = rel_h.shape[-1], rel_w.shape[-1]
    if k.shape != q.shape or v.shape[:3] != q.shape[:3] or height * width != length:
        raise ValueError(f"relpos attention: bad shapes q {tuple(q.shape)} k {tuple(k.shape)} v {tuple(v.shape)} "
                         f"rel_h {tuple(rel_h.shape)} rel_w {tuple(rel_w.shape)}")
    if rel_h.shape[:3] != q.shape[:3] or rel_w.shape[:3] != q.shape[:3]:
        raise ValueError(f"relpos attention: rel_h {tuple(rel_h.shape)} / rel_w {tuple(rel_w.shape)} must be "
                         f"(B, G, L, side) for q {tuple(q.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"relpos attention kernel needs q, k, v of one dtype among float32, bfloat16, float16; "
                         f"got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype == torch.bfloat16 and triton_interpret():
        raise ValueError("relpos attention kernel: the Triton interpreter computes tl.dot of bfloat16 operands "
                         "wrongly (Triton 3.8); use float32/float16 there, or the torch/reference backend")
    if rel_h.dtype != torch.float32 or rel_w.dtype != torch.float32:
        raise ValueError(f"relpos attention kernel needs float32 rel_h, rel_w; got {rel_h.dtype}, {rel_w.dtype}")
    if max(dqk, v.shape[-1], height, width) > 256:
        raise ValueError(f"relpos attention kernel supports dims and sides up to 256, got Dqk={dqk}, "
                         f"Dv={v.shape[-1]}, H={height}, W={width}")
    return _RelposAttention.apply(q, k, v, rel_h, rel_w)
