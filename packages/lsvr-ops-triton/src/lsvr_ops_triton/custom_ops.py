"""``torch.library`` custom ops wrapping the sampled convolutions, so ``torch.compile`` traces them whole.

Two forward/backward op pairs share one schema::

    lsvr_ops::sampled_conv_{torch,triton}(input, offset, mask?, weight, bias?, geometry: float[6],
                                          kernel: int[2], groups: int, offset_groups: int) -> Tensor

``geometry = (a_h, b_h, c_h, a_w, b_w, c_w)``: tap (i, j) of output (ho, wo) samples row
``ho·a_h + i·b_h + c_h + dy`` and column ``wo·a_w + j·b_w + c_w + dx`` (see :mod:`.functional`). The output
has the offset's spatial size. Backward ops return (grad_input, grad_offset, grad_mask, grad_weight) with an
empty tensor where a gradient was not requested; the bias gradient is a plain sum in the autograd formula.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lsvr_ops_triton import cpu_sampled_conv

_EMPTY_SHAPE = (0,)


def _triton_forward(*args):  # noqa: ANN002, ANN202 - imported lazily: Triton is needed only on this path
    from lsvr_ops_triton import triton_sampled_conv

    return triton_sampled_conv.sampled_conv_forward(*args)


def _triton_backward(*args):  # noqa: ANN002, ANN202
    from lsvr_ops_triton import triton_sampled_conv

    return triton_sampled_conv.sampled_conv_backward(*args)


def _define(name: str, forward_impl: Callable, backward_impl: Callable):  # noqa: ANN202
    """Register ``lsvr_ops::<name>`` and ``lsvr_ops::<name>_backward`` with fake and autograd formulas."""

    @torch.library.custom_op(f"lsvr_ops::{name}", mutates_args=())
    def forward(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                geometry: list[float], kernel: list[int], groups: int, offset_groups: int) -> Tensor:
        return forward_impl(input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups)

    @forward.register_fake
    def _(input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups):  # noqa: ANN001, ANN202
        return input.new_empty(input.shape[0], weight.shape[0], offset.shape[-2], offset.shape[-1])

    @torch.library.custom_op(f"lsvr_ops::{name}_backward", mutates_args=())
    def backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor,
                 geometry: list[float], kernel: list[int], groups: int, offset_groups: int,
                 needs: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        grads = backward_impl(grad_out.contiguous(), input, offset, mask, weight, geometry, kernel, groups,
                              offset_groups, needs)
        return tuple(g if g is not None else ref.new_empty(_EMPTY_SHAPE)
                     for g, ref in zip(grads, (input, offset, input if mask is None else mask, weight)))

    @backward.register_fake
    def _(grad_out, input, offset, mask, weight, geometry, kernel, groups, offset_groups, needs):  # noqa: ANN001
        refs = (input, offset, mask, weight)
        return tuple(ref.new_empty(ref.shape) if need and ref is not None else (input if ref is None else ref)
                     .new_empty(_EMPTY_SHAPE) for need, ref in zip(needs, refs))

    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups = inputs
        ctx.save_for_backward(input, offset, mask, weight)
        ctx.args = (list(geometry), list(kernel), groups, offset_groups)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward_formula(ctx, grad):  # noqa: ANN001, ANN202
        input, offset, mask, weight = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:5])
        needs[2] = needs[2] and mask is not None
        g_in = g_off = g_m = g_w = g_b = None
        if any(needs[:4]):
            g_in, g_off, g_m, g_w = backward(grad, input, offset, mask, weight, *ctx.args, needs[:4])
            g_in, g_off, g_m, g_w = (g if need else None for g, need in zip((g_in, g_off, g_m, g_w), needs))
        if needs[4]:
            acc = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype
            g_b = grad.sum((0, 2, 3), dtype=acc).to(ctx.bias_dtype)
        return g_in, g_off, g_m, g_w, g_b, None, None, None, None

    forward.register_autograd(backward_formula, setup_context=setup_context)
    return forward, backward


sampled_conv_torch, sampled_conv_torch_backward = _define(
    "sampled_conv_torch", cpu_sampled_conv.sampled_conv_forward, cpu_sampled_conv.sampled_conv_backward)
sampled_conv_triton, sampled_conv_triton_backward = _define(
    "sampled_conv_triton", _triton_forward, _triton_backward)
