"""``torch.library`` custom ops wrapping the sampled convolutions, so ``torch.compile`` traces them whole.

Two forward/backward op pairs share one schema::

    lsvr_ops::sampled_conv_{torch,triton}(input, offset, mask?, weight, bias?, geometry: float[6],
                                          kernel: int[2], groups: int, offset_groups: int,
                                          save_samples: bool) -> (Tensor out, Tensor samples)

``geometry = (a_h, b_h, c_h, a_w, b_w, c_w)``: tap (i, j) of output (ho, wo) samples row
``ho·a_h + i·b_h + c_h + dy`` and column ``wo·a_w + j·b_w + c_w + dx`` (see :mod:`.functional`). ``out`` has
the offset's spatial size. ``samples`` is what the forward keeps for the backward (the CPU path's bilinear
samples when ``save_samples`` and they are small enough, else an empty tensor; not differentiable). Backward
ops return (grad_input, grad_offset, grad_mask, grad_weight) with an empty tensor where a gradient was not
requested; the bias gradient is a plain sum in the autograd formula.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lsvr_ops_triton import cpu_sampled_conv

_EMPTY_SHAPE = (0,)


def _triton_forward(*args, save_samples: bool):  # noqa: ANN002, ANN202 - Triton is imported on this path only
    from lsvr_ops_triton import triton_sampled_conv

    out = triton_sampled_conv.sampled_conv_forward(*args)
    return out, out.new_empty(_EMPTY_SHAPE)


def _triton_backward(*args, samples: Tensor):  # noqa: ANN002, ANN202
    from lsvr_ops_triton import triton_sampled_conv

    return triton_sampled_conv.sampled_conv_backward(*args)


def _torch_forward(*args, save_samples: bool):  # noqa: ANN002, ANN202
    return cpu_sampled_conv.sampled_conv_forward(*args, save_samples=save_samples)


def _torch_backward(*args, samples: Tensor):  # noqa: ANN002, ANN202
    return cpu_sampled_conv.sampled_conv_backward(*args, samples=samples)


def _torch_saved_shape(input: Tensor, offset: Tensor, kernel: list[int], offset_groups: int,
                       save: bool) -> tuple[int, ...]:
    return cpu_sampled_conv.saved_samples_shape(input, offset, kernel, offset_groups, save)


def _triton_saved_shape(*args) -> tuple[int, ...]:  # noqa: ANN002
    return _EMPTY_SHAPE


def _define(name: str, forward_impl: Callable, backward_impl: Callable, saved_shape: Callable):  # noqa: ANN202
    """Register ``lsvr_ops::<name>`` and ``lsvr_ops::<name>_backward`` with fake and autograd formulas."""

    @torch.library.custom_op(f"lsvr_ops::{name}", mutates_args=())
    def forward(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                geometry: list[float], kernel: list[int], groups: int, offset_groups: int,
                save_samples: bool) -> tuple[Tensor, Tensor]:
        return forward_impl(input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups,
                            save_samples=save_samples)

    @forward.register_fake
    def _(input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups, save_samples):  # noqa: ANN001
        out = input.new_empty(input.shape[0], weight.shape[0], offset.shape[-2], offset.shape[-1])
        dtype = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
        return out, input.new_empty(saved_shape(input, offset, kernel, offset_groups, save_samples), dtype=dtype)

    @torch.library.custom_op(f"lsvr_ops::{name}_backward", mutates_args=())
    def backward(grad_out: Tensor, input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor,
                 samples: Tensor, geometry: list[float], kernel: list[int], groups: int, offset_groups: int,
                 needs: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        grads = backward_impl(grad_out.contiguous(), input, offset, mask, weight, geometry, kernel, groups,
                              offset_groups, needs, samples=samples)
        return tuple(g if g is not None else ref.new_empty(_EMPTY_SHAPE)
                     for g, ref in zip(grads, (input, offset, input if mask is None else mask, weight), strict=True))

    @backward.register_fake
    def _(grad_out, input, offset, mask, weight, samples, geometry, kernel, groups, offset_groups, needs):  # noqa: ANN001
        refs = (input, offset, mask, weight)
        return tuple(ref.new_empty(ref.shape) if need and ref is not None else (input if ref is None else ref)
                     .new_empty(_EMPTY_SHAPE) for need, ref in zip(needs, refs, strict=True))

    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups, _ = inputs
        ctx.save_for_backward(input, offset, mask, weight, output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.args = (list(geometry), list(kernel), groups, offset_groups)
        ctx.bias_dtype = None if bias is None else bias.dtype

    def backward_formula(ctx, grad, _grad_samples):  # noqa: ANN001, ANN202
        input, offset, mask, weight, samples = ctx.saved_tensors
        needs = list(ctx.needs_input_grad[:5])
        needs[2] = needs[2] and mask is not None
        g_in = g_off = g_m = g_w = g_b = None
        if any(needs[:4]):
            g_in, g_off, g_m, g_w = backward(grad, input, offset, mask, weight, samples, *ctx.args, needs[:4])
            grads = zip((g_in, g_off, g_m, g_w), needs[:4], strict=True)
            g_in, g_off, g_m, g_w = (g if need else None for g, need in grads)
        if needs[4]:
            acc = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else grad.dtype
            g_b = grad.sum((0, 2, 3), dtype=acc).to(ctx.bias_dtype)
        return g_in, g_off, g_m, g_w, g_b, None, None, None, None, None

    forward.register_autograd(backward_formula, setup_context=setup_context)
    return forward, backward


_torch_ops = _define("sampled_conv_torch", _torch_forward, _torch_backward, _torch_saved_shape)
_triton_ops = _define("sampled_conv_triton", _triton_forward, _triton_backward, _triton_saved_shape)


def _wants_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def sampled_conv_torch(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                       geometry: list[float], kernel: list[int], groups: int, offset_groups: int) -> Tensor:
    """The CPU path (``lsvr_ops::sampled_conv_torch``); keeps its samples for the backward when grads are needed."""
    save = _wants_grad(input, offset, mask, weight)
    return _torch_ops[0](input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups, save)[0]


def sampled_conv_triton(input: Tensor, offset: Tensor, mask: Tensor | None, weight: Tensor, bias: Tensor | None,
                        geometry: list[float], kernel: list[int], groups: int, offset_groups: int) -> Tensor:
    """The Triton kernels (``lsvr_ops::sampled_conv_triton``)."""
    return _triton_ops[0](input, offset, mask, weight, bias, geometry, kernel, groups, offset_groups, False)[0]
