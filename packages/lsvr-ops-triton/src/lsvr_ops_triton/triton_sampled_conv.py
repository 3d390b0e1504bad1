"""Launchers of the Triton sampled-convolution kernels (forward, input/offset/mask backward, weight backward).

Same signatures as :mod:`.cpu_sampled_conv` (the op registered in :mod:`.custom_ops`). Inputs may be fp32,
fp16 or bf16 (input, weight and grad_out share one dtype); offsets and masks are read as fp32;
accumulation is fp32; gradients come back in their tensor's dtype. fp32 matmuls use TF32 only when
``torch.backends.cuda.matmul.allow_tf32`` is on (as cuBLAS does for the reference).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import triton
from torch import Tensor

from lsvr_ops_triton import triton_kernels as tk
from lsvr_ops_triton.dispatch import triton_interpret


def _blocks(c_per_group: int, cout_per_group: int) -> tuple[int, int, int, int]:
    """(BLOCK_P, BLOCK_C, BLOCK_CO, num_warps): small tiles under the interpreter, GEMM-sized on a GPU."""
    if triton_interpret():
        return 32, 16, 16, 1
    block_c = 32 if c_per_group >= 32 else 16
    block_co = 64 if cout_per_group >= 64 else (32 if cout_per_group >= 32 else 16)
    return 64, block_c, block_co, 4


def _dot_precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and not triton_interpret() and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def _device_ctx(t: Tensor):  # noqa: ANN202
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


class _Geo:
    """Sizes shared by the three launchers."""

    def __init__(self, input: Tensor, offset: Tensor, weight: Tensor, geometry: Sequence[float],
                 kernel: Sequence[int], groups: int, offset_groups: int) -> None:
        self.n, self.c, self.h, self.w = input.shape
        self.ho, self.wo = offset.shape[-2:]
        self.l = self.ho * self.wo
        self.cout = weight.shape[0]
        self.kh, self.kw = kernel
        self.k = self.kh * self.kw
        self.groups, self.og = groups, offset_groups
        self.cg, self.cout_g, self.cog = self.c // groups, self.cout // groups, self.c // offset_groups
        self.geometry = [float(v) for v in geometry]
        self.bp, self.bc, self.bco, self.warps = _blocks(self.cg, self.cout_g)
        # every channel block inside one offset group -> positions per pixel, not per (pixel, channel)
        self.og_uniform = offset_groups == 1 or (self.cg % self.bc == 0 and self.cog % self.bc == 0)

    def sizes(self) -> tuple[int, ...]:
        return (self.c, self.h, self.w, self.cout, self.wo, self.l)

    def groups_sizes(self) -> tuple[int, ...]:
        return (self.cg, self.cout_g, self.og, self.cog)


def _prepare(input: Tensor, weight: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Channels-last input (N, H, W, C) and weight (groups, K, Cg, Cout_g), both contiguous."""
    cout, cg, kh, kw = weight.shape
    x = input.permute(0, 2, 3, 1).contiguous()
    w = weight.reshape(groups, cout // groups, cg, kh * kw).permute(0, 3, 2, 1).contiguous()
    return x, w


def sampled_conv_forward(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                         geometry: Sequence[float], kernel: Sequence[int], groups: int, offset_groups: int) -> Tensor:
    """(N, Cout, Ho, Wo) output in ``input.dtype``; arguments as :func:`.cpu_sampled_conv.sampled_conv_forward`."""
    geo = _Geo(input, offset, weight, geometry, kernel, groups, offset_groups)
    x, w = _prepare(input, weight, groups)
    off = offset.contiguous()
    m = off if mask is None else mask.contiguous()
    b = w if bias is None else bias.contiguous()
    out = torch.empty(geo.n, geo.cout, geo.ho, geo.wo, dtype=input.dtype, device=input.device)
    if out.numel() == 0:
        return out
    grid = (geo.n * triton.cdiv(geo.l, geo.bp), groups * triton.cdiv(geo.cout_g, geo.bco))
    with _device_ctx(input):
        tk.sampled_conv_fwd_kernel[grid](
            x, off, m, w, b, out, *geo.sizes(), *geo.groups_sizes(), *geo.geometry,
            KW=geo.kw, K=geo.k, HAS_MASK=mask is not None, HAS_BIAS=bias is not None, OG_UNIFORM=geo.og_uniform,
            DOT_PRECISION=_dot_precision(input.dtype), BLOCK_P=geo.bp, BLOCK_C=geo.bc, BLOCK_CO=geo.bco,
            num_warps=geo.warps)
    return out


def _weight_splits(geo: _Geo, tiles: int) -> int:
    """Pixel splits of the weight-gradient reduction so that about 4 programs per SM run."""
    if triton_interpret():
        return 2 if geo.n * geo.l > geo.bp else 1
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    want = max(1, (4 * sms) // max(1, tiles * geo.k))
    return max(1, min(want, triton.cdiv(geo.n * geo.l, 4 * geo.bp)))


def sampled_conv_backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor,
                          geometry: Sequence[float], kernel: Sequence[int], groups: int, offset_groups: int,
                          needs: Sequence[bool]) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients (input, offset, mask, weight), ``None`` where ``needs`` is False; bias is the caller's."""
    need_x, need_off, need_m, need_w = (bool(v) for v in needs)
    need_m = need_m and mask is not None
    geo = _Geo(input, offset, weight, geometry, kernel, groups, offset_groups)
    x, w = _prepare(input, weight, groups)
    off = offset.contiguous()
    m = off if mask is None else mask.contiguous()
    go = grad_out.to(input.dtype).contiguous()
    f32 = dict(dtype=torch.float32, device=input.device)
    g_x = torch.zeros(geo.n, geo.h, geo.w, geo.c, **f32) if need_x else None
    g_off = torch.zeros(offset.shape, **f32) if need_off else None
    g_m = torch.zeros(mask.shape, **f32) if need_m else None
    g_w = torch.zeros(w.shape, **f32) if need_w else None
    prec = _dot_precision(input.dtype)
    common = dict(KW=geo.kw, K=geo.k, HAS_MASK=mask is not None, OG_UNIFORM=geo.og_uniform, DOT_PRECISION=prec,
                  BLOCK_P=geo.bp, BLOCK_C=geo.bc, BLOCK_CO=geo.bco, num_warps=geo.warps)
    with _device_ctx(input):
        if (need_x or need_off or need_m) and go.numel():
            grid = (geo.n * triton.cdiv(geo.l, geo.bp), groups * triton.cdiv(geo.cg, geo.bc))
            dummy = go
            tk.sampled_conv_bwd_data_kernel[grid](
                x, off, m, w, go, dummy if g_x is None else g_x, dummy if g_off is None else g_off,
                dummy if g_m is None else g_m, *geo.sizes(), *geo.groups_sizes(), *geo.geometry,
                NEED_X=need_x, NEED_OFF=need_off, NEED_MASK=need_m, **common)
        if need_w and go.numel():
            tiles = groups * triton.cdiv(geo.cg, geo.bc) * triton.cdiv(geo.cout_g, geo.bco)
            splits = _weight_splits(geo, tiles)
            nl = geo.n * geo.l
            pps = triton.cdiv(triton.cdiv(nl, splits), geo.bp) * geo.bp
            grid = (tiles, geo.k, triton.cdiv(nl, pps))
            tk.sampled_conv_bwd_weight_kernel[grid](
                x, off, m, go, g_w, geo.c, geo.h, geo.w, geo.cout, geo.wo, geo.l, nl, *geo.groups_sizes(), pps,
                *geo.geometry, **common)
    return (
        None if g_x is None else g_x.permute(0, 3, 1, 2).to(input.dtype).contiguous(),
        None if g_off is None else g_off.to(offset.dtype),
        None if g_m is None else g_m.to(mask.dtype),
        None if g_w is None else g_w.permute(0, 3, 2, 1).reshape(weight.shape).to(weight.dtype).contiguous(),
    )
