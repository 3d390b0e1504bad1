"""The Triton kernels of deform_conv2d and pyramid_deform_conv2d against the oracles.

On CPU they run in the Triton interpreter, in a subprocess (``TRITON_INTERPRET=1`` must be set before triton
is imported and must not leak into other tests); tiny shapes cover out-of-bounds samples, stride 2,
dilation 2, groups and offset groups > 1 (both the per-pixel and per-channel offset-group paths), with and
without mask and bias, a non-square kernel, the pyramid op at non-integer scales, and every gradient.
``gpu`` tests run the compiled kernels on CUDA in fp32, fp16 and bf16, and under torch.compile.
Oracles: ``torchvision.ops.deform_conv2d``; the grid_sample reference (LSNet spec §2.4, §9).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()


def _load_cases():  # noqa: ANN202 - the shared cases module, by path (test folders are not packages)
    name = "lsvr_ops_triton_test_deform_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE.parent / "deform_cases.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


cases = _load_cases()
C = cases.DeformCase

INTERP_DEFORM = {
    # per-channel offset-group path (Cg = 4 is not a multiple of the 16-channel block), 2 images
    # half the offsets integers: positions on pixel centres, on −1 and on H, where the offset gradient is one-sided
    "stride2_groups2_offset_groups2_oob_kernel2x2": C(n=2, c=8, h=6, w=7, cout=6, kernel=(2, 2), stride=2, groups=2,
                                                      offset_groups=2, offset_scale=3.0, integer_share=0.5),
    "dilation2_kernel3x2_no_mask_no_bias": C(n=1, c=4, h=6, w=5, cout=5, kernel=(3, 2), dilation=2, padding=2,
                                             mask=False, bias=False),
    # per-pixel offset-group path with 2 offset groups (16 channels each), 2 output-channel blocks
    "offset_groups2_uniform_blocks": C(n=1, c=32, h=4, w=4, cout=20, offset_groups=2, bias=False),
}
INTERP_PYRAMID = {  # (images, feature size, output size, scales)
    "pyramid_scales_4/7_5/9": (1, (4, 5), (7, 9), (4 / 7, 5 / 9)),
    "pyramid_2_images_scales_2_1.5": (2, (8, 6), (4, 4), (2.0, 1.5)),
}
# Every dtype the public ops accept, through LSVR_KERNEL_BACKEND=triton (issue 15): float64 must take the PyTorch
# path (the kernels' float64 forward was ~1e263 / NaN), bfloat16 too under the interpreter (its bf16 tl.dot is
# wrong); float16 runs the kernels. The DCN call is torchvision-style: groups and offset groups inferred.
# Oracles in float64 on the same (rounded) inputs; tolerances relative to the largest reference value.
DTYPE_TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 1e-2, "bfloat16": 3e-2}
DTYPE_DEFORM = C(n=1, c=6, h=5, w=6, cout=4, groups=2, offset_groups=3)
DEFAULT_SET = ["stride2_groups2_offset_groups2_oob_kernel2x2", "pyramid_scales_4/7_5/9", "dtype:float64"]
SLOW_SET = ["dilation2_kernel3x2_no_mask_no_bias", "offset_groups2_uniform_blocks", "pyramid_2_images_scales_2_1.5",
            "dtype:float16", "dtype:bfloat16"]
TOL = 1e-5  # fp32 kernels vs fp32 oracles, relative to the largest reference value


def _check_dtype(dtype_name: str) -> dict[str, float]:
    """Both public ops in ``dtype_name`` (torchvision-style DCN call) vs float64 oracles; output dtype checked."""
    from lsvr_ops_triton import deform_conv2d, pyramid_deform_conv2d
    from lsvr_ops_triton.reference import pyramid_deform_conv2d_reference

    dtype = getattr(torch, dtype_name)
    low = {k: None if v is None else v.to(dtype) for k, v in DTYPE_DEFORM.tensors(torch.float64).items()}
    t = cases.leaves(low)
    out = deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], padding=DTYPE_DEFORM.padding, mask=t["mask"])
    assert out.dtype == dtype, out.dtype
    names = list(t)
    go = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = {"out": out.detach(), **{f"grad_{k}": g for k, g in zip(names, torch.autograd.grad(out, list(t.values()),
                                                                                          go.to(dtype)), strict=True)}}
    ref = cases.run_deform(cases.torchvision_deform, DTYPE_DEFORM, {k: v.double() for k, v in low.items()})
    errors = {f"dcn {k}": v for k, v in cases.max_rel_errors(ours, ref).items()}
    p_low = {k: v.to(dtype) for k, v in cases.pyramid_tensors(n=1, c=4, feat_hw=(4, 5), out_hw=(7, 9),
                                                                dtype=torch.float64).items()}
    scale = (4 / 7, 5 / 9)
    ours = cases.run_pyramid(pyramid_deform_conv2d, p_low, scale)
    ref = cases.run_pyramid(pyramid_deform_conv2d_reference, {k: v.double() for k, v in p_low.items()}, scale)
    errors.update({f"pyramid {k}": v for k, v in cases.max_rel_errors(ours, ref).items()})
    return errors


def _check(names: list[str]) -> list[str]:
    """Run the named cases with the Triton backend; return failure lines (prints every error)."""
    from lsvr_ops_triton import deform_conv2d, pyramid_deform_conv2d
    from lsvr_ops_triton.reference import pyramid_deform_conv2d_reference

    failures = []
    for name in names:
        if name.startswith("dtype:"):
            dtype_name = name.removeprefix("dtype:")
            errors = _check_dtype(dtype_name)
            print(name, {k: f"{v:.1e}" for k, v in errors.items()}, flush=True)
            failures += [f"{name} {k}: {v:.2e}" for k, v in errors.items() if not v < DTYPE_TOL[dtype_name]]
            continue
        if name in INTERP_DEFORM:
            case = INTERP_DEFORM[name]
            tensors = case.tensors(torch.float32)
            errors = cases.max_rel_errors(cases.run_deform(deform_conv2d, case, tensors),
                                          cases.run_deform(cases.torchvision_deform, case, tensors))
        else:
            n, feat_hw, out_hw, scale_hw = INTERP_PYRAMID[name]
            tensors = cases.pyramid_tensors(n=n, c=4, feat_hw=feat_hw, out_hw=out_hw, offset_scale=3.0)
            errors = cases.max_rel_errors(cases.run_pyramid(pyramid_deform_conv2d, tensors, scale_hw),
                                          cases.run_pyramid(pyramid_deform_conv2d_reference, tensors, scale_hw))
        print(name, {k: f"{v:.1e}" for k, v in errors.items()}, flush=True)
        failures += [f"{name} {k}: {v:.2e}" for k, v in errors.items() if not v < TOL]
    return failures


def _run_interpreter(names: list[str]) -> None:
    pytest.importorskip("triton")
    reason = cases.interpreter_skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, TRITON_INTERPRET="1", LSVR_KERNEL_BACKEND="triton", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(HERE), *names], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"interpreter run failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.count("grad_") >= len(names), proc.stdout  # every case reported its gradients


def test_triton_interpreter_default_cases() -> None:
    _run_interpreter(DEFAULT_SET)


@pytest.mark.slow
def test_triton_interpreter_more_cases() -> None:
    _run_interpreter(SLOW_SET)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["bf16-first-config", "fp16-per-channel-offset-groups"])
@pytest.mark.parametrize("kind", ["fwd", "data", "weight"])
def test_kernels_compile_for_sm90_without_a_gpu(kind: str, variant: str) -> None:
    """Ahead-of-time compile (Triton → PTX → ptxas, no device needed) of each kernel: the first autotune config
    in bf16 with one offset group, and the fallback tiles in fp16 with per-channel offset groups. Catches
    GPU-only compile errors (dot shapes, dtypes, layouts) that the interpreter cannot."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from lsvr_ops_triton import triton_kernels as tk
    from lsvr_ops_triton.triton_sampled_conv import _KERNELS, CONFIGS

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.exists():
        pytest.skip("Triton's bundled ptxas is not installed")
    fn = getattr(tk, _KERNELS[kind])
    uniform = variant.startswith("bf16")
    bp, bc, bco, warps, stages = CONFIGS[kind][0] if uniform else (64, 16, 32, 4, 2)
    constexprs = dict(KW=3, K=9, HAS_MASK=True, OG_UNIFORM=uniform, DOT_PRECISION="ieee", BLOCK_P=bp, BLOCK_C=bc,
                      BLOCK_CO=bco, **(dict(OG=1) if uniform else {}))
    constexprs.update(dict(HAS_BIAS=True) if kind == "fwd" else dict(NEED_X=True, NEED_OFF=True, NEED_MASK=True)
                      if kind == "data" else {})
    fp32_ptrs = {"off_ptr", "mask_ptr", "gx_ptr", "goff_ptr", "gmask_ptr", "gw_ptr"}
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32" if name in fp32_ptrs else ("*bf16" if uniform else "*fp16")
        else:
            sig[name] = "fp32" if name[0] in "abc" and name[1] == "_" else "i32"
    divisible = {"C", "Cout", "Cg", "Cout_g", "Cog"} if uniform else set()
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if n.endswith("_ptr") or n in divisible}
    compiled = triton.compile(ASTSource(fn, sig, constexprs, attrs), target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": warps, "num_stages": stages})
    assert "wgmma" in compiled.asm["ptx"] or "mma" in compiled.asm["ptx"]  # the tap GEMM runs on tensor cores


# ----------------------------------------------------------------------------------------------- CUDA
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _to(tensors: dict, device: str, dtype: torch.dtype) -> dict:
    return {k: None if v is None else v.to(device, dtype) for k, v in tensors.items()}


def _nudged(tensors: dict, key: str) -> dict:
    """Offsets away from integers: the grid_sample reference may take either side of the offset gradient's jump
    at integer positions (its normalisation round trip is inexact for these sizes)."""
    frac = tensors[key] - tensors[key].round()
    return {**tensors, key: tensors[key] + torch.where(frac.abs() < 0.06, 0.12, 0.0)}


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(cases.DEFORM_CASES))
def test_compiled_deform_kernels_match_torchvision(name: str, dtype: torch.dtype,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lsvr_ops_triton import deform_conv2d

    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "auto")
    case = cases.DEFORM_CASES[name]
    low = _to(case.tensors(torch.float64), "cuda", dtype)
    ours = cases.run_deform(deform_conv2d, case, low)
    ref = cases.run_deform(cases.torchvision_deform, case, _to(low, "cuda", torch.float32))
    tol = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}[dtype]
    errors = cases.max_rel_errors(ours, ref)
    assert max(errors.values()) < tol, errors


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_compiled_pyramid_kernels_match_reference(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    from lsvr_ops_triton import pyramid_deform_conv2d
    from lsvr_ops_triton.reference import pyramid_deform_conv2d_reference

    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "auto")
    # non-dyadic scales: base positions m·s are integers only for m = 0, where the nudged offsets decide
    tensors = cases.pyramid_tensors(n=2, c=64, feat_hw=(13, 21), out_hw=(25, 43), cout=48, dtype=torch.float64)
    low = _to(_nudged(tensors, "offset"), "cuda", dtype)
    scale = (13 / 25, 21 / 43)
    ours = cases.run_pyramid(pyramid_deform_conv2d, low, scale)
    ref = cases.run_pyramid(pyramid_deform_conv2d_reference, _to(low, "cuda", torch.float64), scale)
    errors = cases.max_rel_errors(ours, ref)
    assert max(errors.values()) < (1e-4 if dtype == torch.float32 else 4e-2), errors


@gpu
@needs_cuda
def test_large_channels_match_torchvision_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """GEMM-sized tiles (several channel and output-channel blocks, many pixel blocks, weight-grad splits)."""
    from lsvr_ops_triton import deform_conv2d

    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "triton")
    case = C(n=3, c=96, h=23, w=30, cout=80, stride=1, padding=1, offset_scale=4.0)
    tensors = _to(case.tensors(torch.float64), "cuda", torch.float32)
    errors = cases.max_rel_errors(cases.run_deform(deform_conv2d, case, tensors),
                                  cases.run_deform(cases.torchvision_deform, case, tensors))
    assert max(errors.values()) < 1e-4, errors


@gpu
@needs_cuda
def test_torch_compile_inductor_with_triton_op(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsvr_ops_triton import ModulatedDeformConv2d

    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "auto")
    layer = ModulatedDeformConv2d(16, 16, 3, padding=1).cuda()
    torch.nn.init.normal_(layer.conv_offset.weight, std=0.1)
    x = torch.randn(2, 16, 12, 12, device="cuda", requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = compiled(x)
        ref = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    assert layer.conv_offset.weight.grad is not None and x.grad is not None


if __name__ == "__main__":  # the interpreter subprocess: python test_deform_triton.py CASE...
    torch.set_num_threads(1)
    problems = _check(sys.argv[1:])
    if problems:
        print("FAILED:", *problems, sep="\n  ")
        sys.exit(1)
