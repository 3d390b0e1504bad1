"""Shared test cases for the deformable ops: random inputs and comparisons against the oracles.

Not a test module (no ``test_`` prefix); the test files load it by path so it also works in the interpreter
subprocess. Oracles: ``torchvision.ops.deform_conv2d`` (DCN) and the grid_sample reference / a direct loop
over LSNet spec §2.4's formula (pyramid op).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision
from torch import Tensor


def interpreter_skip_reason() -> str | None:
    """Why the Triton interpreter cannot run here, or None: Triton < 3.7's interpreter converts 1-element arrays
    with ``int()``, which NumPy >= 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars";
    seen with triton 3.6.0 + numpy 2.4.6; numpy 2.3.5 works)."""
    import numpy
    import triton

    def major_minor(version: str) -> tuple[int, int]:
        parts = (version.split("+")[0].split(".") + ["0"])[:2]
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)

    if major_minor(triton.__version__) < (3, 7) and major_minor(numpy.__version__) >= (2, 4):
        return (f"the interpreter of triton {triton.__version__} fails with numpy {numpy.__version__} "
                "(needs numpy < 2.4)")
    return None


@dataclass(frozen=True)
class DeformCase:
    n: int = 2
    c: int = 8
    h: int = 7
    w: int = 9
    cout: int = 6
    kernel: tuple[int, int] = (3, 3)
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    groups: int = 1
    offset_groups: int = 1
    mask: bool = True
    bias: bool = True
    offset_scale: float = 2.0  # offsets ~ N(0, scale²) px: with these sizes many samples fall outside the map
    integer_share: float = 0.0  # share of offsets rounded to integers (the gradient's one-sided points, incl. 0)

    def out_hw(self) -> tuple[int, int]:
        kh, kw = self.kernel
        ho = (self.h + 2 * self.padding - self.dilation * (kh - 1) - 1) // self.stride + 1
        wo = (self.w + 2 * self.padding - self.dilation * (kw - 1) - 1) // self.stride + 1
        return ho, wo

    def tensors(self, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, Tensor | None]:
        gen = torch.Generator().manual_seed(seed)
        kh, kw = self.kernel
        ho, wo = self.out_hw()
        k = kh * kw

        def rnd(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

        offset = torch.randn(self.n, 2 * self.offset_groups * k, ho, wo, generator=gen, dtype=torch.float64)
        offset = offset * self.offset_scale
        rounded = torch.rand(offset.shape, generator=gen, dtype=torch.float64) < self.integer_share
        offset = torch.where(rounded, offset.round(), offset)
        return {
            "input": rnd(self.n, self.c, self.h, self.w),
            "offset": offset.to(dtype),
            "weight": rnd(self.cout, self.c // self.groups, kh, kw) / math.sqrt(self.c * k),
            "bias": rnd(self.cout) if self.bias else None,
            "mask": torch.rand(self.n, self.offset_groups * k, ho, wo, generator=gen, dtype=torch.float64).to(dtype)
            if self.mask else None,
        }


def leaves(tensors: dict[str, Tensor | None]) -> dict[str, Tensor]:
    """Fresh leaf copies requiring grad (None entries dropped)."""
    return {k: v.detach().clone().requires_grad_() for k, v in tensors.items() if v is not None}


def run_deform(fn, case: DeformCase, tensors: dict[str, Tensor | None]) -> dict[str, Tensor]:  # noqa: ANN001
    """Output and gradients (w.r.t. every tensor argument) of ``fn`` under a fixed random output gradient."""
    t = leaves(tensors)
    out = fn(t["input"], t["offset"], t["weight"], t.get("bias"), t.get("mask"), case.stride, case.padding,
             case.dilation, case.groups, case.offset_groups)
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    names = list(t)
    grads = torch.autograd.grad(out, [t[k] for k in names], grad)
    return {"out": out.detach(), **{f"grad_{k}": g for k, g in zip(names, grads, strict=True)}}


def torchvision_deform(input, offset, weight, bias, mask, stride, padding, dilation, groups,  # noqa: ANN001, ANN201
                       offset_groups):  # noqa: ANN001, ARG001
    """The oracle (torchvision infers groups and offset groups from the shapes)."""
    return torchvision.ops.deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)


def max_rel_errors(ours: dict[str, Tensor], ref: dict[str, Tensor]) -> dict[str, float]:
    """max |ours − ref| / max(|ref|, 1e-6) per entry."""
    assert ours.keys() == ref.keys()
    return {k: float((ours[k].double() - ref[k].double()).abs().max() / ref[k].double().abs().max().clamp_min(1e-6))
            for k in ref}


def pyramid_tensors(n: int = 2, c: int = 4, feat_hw: tuple[int, int] = (5, 7), out_hw: tuple[int, int] = (9, 13),
                    cout: int = 3, offset_scale: float = 2.0, dtype: torch.dtype = torch.float32,
                    seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

    return {"feature": rnd(n, c, *feat_hw), "offset": rnd(n, 18, *out_hw) * offset_scale,
            "weight": rnd(cout, c, 3, 3) / math.sqrt(9 * c)}


def run_pyramid(fn, tensors: dict[str, Tensor], scale_hw: tuple[float, float]) -> dict[str, Tensor]:  # noqa: ANN001
    t = leaves(tensors)
    out = fn(t["feature"], t["offset"], t["weight"], scale_hw)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out.dtype)
    grads = torch.autograd.grad(out, [t["feature"], t["offset"], t["weight"]], grad)
    return {"out": out.detach(), "grad_feature": grads[0], "grad_offset": grads[1], "grad_weight": grads[2]}


def pyramid_loop_oracle(feature: Tensor, offset: Tensor, weight: Tensor, scale_hw: tuple[float, float]) -> Tensor:
    """LSNet spec §2.4 written out literally (float64 loops; tiny shapes only)."""
    feature, offset, weight = feature.double(), offset.double(), weight.double()
    n, c, hf, wf = feature.shape
    h, w = offset.shape[-2:]
    out = torch.zeros(n, weight.shape[0], h, w, dtype=torch.float64)

    def pix(b: int, yy: int, xx: int) -> Tensor:
        if 0 <= yy < hf and 0 <= xx < wf:
            return feature[b, :, yy, xx]
        return torch.zeros(c, dtype=torch.float64)

    for b in range(n):
        for y in range(h):
            for x in range(w):
                for i in range(3):
                    for j in range(3):
                        k = 3 * i + j
                        row = (y - 1 + i) * scale_hw[0] + float(offset[b, 2 * k, y, x])
                        col = (x - 1 + j) * scale_hw[1] + float(offset[b, 2 * k + 1, y, x])
                        if not (-1 < row < hf and -1 < col < wf):
                            continue
                        r0, c0 = math.floor(row), math.floor(col)
                        lr, lc = row - r0, col - c0
                        v = ((1 - lr) * (1 - lc) * pix(b, r0, c0) + (1 - lr) * lc * pix(b, r0, c0 + 1)
                             + lr * (1 - lc) * pix(b, r0 + 1, c0) + lr * lc * pix(b, r0 + 1, c0 + 1))
                        out[b, :, y, x] += weight[:, :, i, j] @ v
    return out


# Argument combinations of issue 5 (each run forward + every gradient against torchvision).
DEFORM_CASES = {
    "plain": DeformCase(),
    "stride2": DeformCase(stride=2, h=8, w=9),
    "dilation2": DeformCase(dilation=2, padding=2),
    "groups2_offset_groups2": DeformCase(c=8, cout=6, groups=2, offset_groups=2),
    "offset_groups4_groups1": DeformCase(c=8, cout=4, offset_groups=4),
    "no_mask_no_bias": DeformCase(mask=False, bias=False),
    "mask_no_bias_kernel_3x2_pad0": DeformCase(kernel=(3, 2), padding=0, bias=False),
    "far_out_of_bounds": DeformCase(offset_scale=8.0),
    "zero_offsets": DeformCase(offset_scale=0.0),  # every layer's state at initialisation
    "integer_offsets_stride2_dilation2": DeformCase(h=9, w=8, stride=2, dilation=2, padding=2, integer_share=1.0),
}
