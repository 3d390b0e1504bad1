"""Launchers of the Triton sampled-convolution kernels (forward, input/offset/mask backward, weight backward).

Same signatures as :mod:`.cpu_sampled_conv` (the op registered in :mod:`.custom_ops`). Inputs may be fp32,
fp16 or bf16 (input, weight and grad_out share one dtype); offsets and masks are read as fp32;
accumulation is fp32; gradients come back in their tensor's dtype. fp32 matmuls use TF32 only when
``torch.backends.cuda.matmul.allow_tf32`` is on (as cuBLAS does for the reference).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import torch
import triton
from torch import Tensor

from lsvr_ops_triton import triton_kernels as tk
from lsvr_ops_triton.dispatch import triton_interpret


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


#: Candidate (BLOCK_P, BLOCK_C, BLOCK_CO, num_warps, num_stages) per kernel, autotuned on the GPU. Wide output-
#: channel tiles let one bilinear sample feed up to 256 output channels. Every entry compiles for sm_90
#: without register spills in bf16 (checked offline with ptxas; not yet timed on a GPU).
CONFIGS: dict[str, list[tuple[int, int, int, int, int]]] = {
    "fwd": [(64, 32, 256, 8, 2), (128, 32, 128, 8, 2), (64, 32, 128, 4, 2), (64, 64, 128, 8, 2)],
    "data": [(64, 64, 64, 8, 2), (64, 32, 64, 4, 2), (128, 32, 64, 8, 2), (32, 64, 128, 4, 2)],
    "weight": [(64, 64, 128, 8, 2), (64, 32, 256, 8, 2), (128, 64, 64, 8, 2), (64, 64, 64, 4, 2)],
}
_KERNELS = {"fwd": "sampled_conv_fwd_kernel", "data": "sampled_conv_bwd_data_kernel",
            "weight": "sampled_conv_bwd_weight_kernel"}
_RESET = {"fwd": None, "data": ["gx_ptr", "goff_ptr", "gmask_ptr"], "weight": ["gw_ptr"]}
_MIN_C = 64  # offset groups > 1 are autotuned only when every candidate channel block fits inside one


def _pow2(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(1, v))))


def _fallback_blocks(kind: str, cg: int, cout_g: int) -> tuple[int, int, int, int]:
    """(BLOCK_P, BLOCK_C, BLOCK_CO, num_warps) when not autotuning: the interpreter (smallest tiles ``tl.dot``
    accepts) or channel counts where a channel block could straddle two offset groups."""
    if triton_interpret():  # few programs; short pixel blocks in the weight kernel so its splits get exercised
        return (16 if kind == "weight" else 64), 16, 16, 1
    bc, bco = _pow2(cg, 16, 32), _pow2(cout_g, 16, 64)
    return 64, bc, bco, 4


def _prune(kind: str):  # noqa: ANN202
    def prune(configs, named_args, **kwargs):  # noqa: ANN001, ANN003, ANN202
        cg, cout_g = named_args["Cg"], named_args["Cout_g"]
        kept = [c for c in configs if c.kwargs["BLOCK_C"] <= _pow2(cg, 16, 256)
                and c.kwargs["BLOCK_CO"] <= _pow2(cout_g, 16, 256)]
        return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_C"] * c.kwargs["BLOCK_CO"])]

    return prune


@functools.cache
def _autotuned(kind: str):  # noqa: ANN202
    configs = [triton.Config({"BLOCK_P": bp, "BLOCK_C": bc, "BLOCK_CO": bco}, num_warps=w, num_stages=s)
               for bp, bc, bco, w, s in CONFIGS[kind]]
    key = ["Cg", "Cout_g", "L", "C", "Cout"] + (["NL"] if kind == "weight" else [])
    return triton.autotune(configs, key=key, prune_configs_by={"early_config_prune": _prune(kind)},
                           reset_to_zero=_RESET[kind])(getattr(tk, _KERNELS[kind]))


def _launch(kind: str, geo: _Geo, grid_of, *args, **constexprs) -> None:  # noqa: ANN001
    """Launch ``kind`` autotuned (GPU, one offset group or 64-aligned offset groups) or with fixed blocks."""
    tune = not triton_interpret() and (geo.og == 1 or (geo.cg % _MIN_C == 0 and geo.cog % _MIN_C == 0))
    if tune:
        _autotuned(kind)[lambda meta: grid_of(meta)](*args, OG_UNIFORM=True, **constexprs)
        return
    bp, bc, bco, warps = _fallback_blocks(kind, geo.cg, geo.cout_g)
    meta = dict(BLOCK_P=bp, BLOCK_C=bc, BLOCK_CO=bco)
    uniform = geo.og == 1 or (geo.cg % bc == 0 and geo.cog % bc == 0)
    getattr(tk, _KERNELS[kind])[grid_of(meta)](*args, OG_UNIFORM=uniform, num_warps=warps, **meta, **constexprs)


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
    with _device_ctx(input):
        _launch("fwd", geo, lambda meta: (geo.n * triton.cdiv(geo.l, meta["BLOCK_P"]),
                                          groups * triton.cdiv(geo.cout_g, meta["BLOCK_CO"])),
                x, off, m, w, b, out, *geo.sizes(), *geo.groups_sizes(), *geo.geometry,
                KW=geo.kw, K=geo.k, HAS_MASK=mask is not None, HAS_BIAS=bias is not None,
                DOT_PRECISION=_dot_precision(input.dtype))
    return out


def _weight_splits(geo: _Geo) -> int:
    """Pixel splits of the weight-gradient reduction: about 4 programs per SM (2 under the interpreter)."""
    nl = geo.n * geo.l
    if triton_interpret():
        return 2 if nl > 16 else 1
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    tiles = geo.groups * triton.cdiv(geo.cg, 64) * triton.cdiv(geo.cout_g, 128) * geo.k
    return max(1, min(triton.cdiv(4 * sms, tiles), triton.cdiv(nl, 512)))


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
    common = dict(KW=geo.kw, K=geo.k, HAS_MASK=mask is not None, DOT_PRECISION=_dot_precision(input.dtype))
    with _device_ctx(input):
        if (need_x or need_off or need_m) and go.numel():
            dummy = torch.zeros(1, **f32)  # stands in for gradients that are not requested (never written)
            _launch("data", geo, lambda meta: (geo.n * triton.cdiv(geo.l, meta["BLOCK_P"]),
                                               groups * triton.cdiv(geo.cg, meta["BLOCK_C"])),
                    x, off, m, w, go, dummy if g_x is None else g_x, dummy if g_off is None else g_off,
                    dummy if g_m is None else g_m, *geo.sizes(), *geo.groups_sizes(), *geo.geometry,
                    NEED_X=need_x, NEED_OFF=need_off, NEED_MASK=need_m, **common)
        if need_w and go.numel():
            splits = _weight_splits(geo)
            _launch("weight", geo, lambda meta: (groups * triton.cdiv(geo.cg, meta["BLOCK_C"])
                                                 * triton.cdiv(geo.cout_g, meta["BLOCK_CO"]), geo.k, splits),
                    x, off, m, go, g_w, geo.c, geo.h, geo.w, geo.cout, geo.wo, geo.l, geo.n * geo.l,
                    *geo.groups_sizes(), splits, *geo.geometry, **common)
    return (
        None if g_x is None else g_x.permute(0, 3, 1, 2).to(input.dtype).contiguous(),
        None if g_off is None else g_off.to(offset.dtype),
        None if g_m is None else g_m.to(mask.dtype),
        None if g_w is None else g_w.permute(0, 3, 2, 1).reshape(weight.shape).to(weight.dtype).contiguous(),
    )
