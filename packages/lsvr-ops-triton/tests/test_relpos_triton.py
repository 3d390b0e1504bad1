"""The fused relative-position attention kernels vs the materialised reference: outputs and all gradients
(q, k, v, both tables, both per-head scales). On CPU the kernels run in the Triton interpreter in a
subprocess (``TRITON_INTERPRET=1`` must be set before triton is imported); ``gpu`` tests run them compiled.
Source: LESA spec §6, §9."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# (B, G, height, width, Dqk, Dv, table side): non-square maps, L not a multiple of the block, odd dims,
# tables larger than the map (cropped), Dv = 2 Dqk as in LESA.
INTERP_CASES = [(2, 2, 5, 7, 8, 16, 9), (1, 3, 4, 4, 16, 32, 4), (1, 1, 3, 11, 5, 7, 12)]


def _compare(case, device: str, dtype: torch.dtype, backend: str = "triton") -> dict[str, float]:
    """Max abs error / max abs reference value of each output and gradient."""
    from lsvr_ops_triton.relpos_attention import relpos_attention

    b, g, h, w, d, dv, side = case
    gen = torch.Generator().manual_seed(0)
    length = h * w
    tensors = [torch.randn(b, g, length, d, generator=gen), torch.randn(b, g, length, d, generator=gen) * 0.5,
               torch.randn(b, g, length, dv, generator=gen), torch.randn(2 * side - 1, d, generator=gen) * 0.3,
               torch.randn(2 * side - 1, d, generator=gen) * 0.3, torch.rand(g, generator=gen) + 0.5,
               torch.rand(g, generator=gen) + 0.5]
    go = torch.randn(b, g, length, dv, generator=gen).to(device)
    results = {}
    for name, kind, dt in (("ref", "reference", torch.float32), ("ours", backend, dtype)):
        leaves = [t.to(device).requires_grad_() for t in tensors]
        q, k, v = (t.to(dt) for t in leaves[:3])
        out = relpos_attention(q, k, v, leaves[3], leaves[4], h, w, leaves[5], leaves[6], backend=kind)
        grads = torch.autograd.grad(out.float(), leaves, go)
        results[name] = [out.float(), *grads]
    names = ["out", "dq", "dk", "dv", "dtable_h", "dtable_w", "dcontent_scale", "dposition_scale"]
    return {n: float(((o - r).abs().max() / r.abs().max().clamp_min(1e-6)).detach())
            for n, o, r in zip(names, results["ours"], results["ref"], strict=True)}


def _interp_main() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1"
    failures = []
    for case in INTERP_CASES:
        errors = _compare(case, "cpu", torch.float32)
        print(case, errors)
        failures += [f"{case} {k}: {v:.2e}" for k, v in errors.items() if v > 1e-5]
    # every dtype through the dispatcher (LSVR_KERNEL_BACKEND=triton): float64 must take the torch path (the
    # kernels cannot compute it), float16 runs the kernels; float64 reference on the same rounded inputs
    for dtype, tol in ((torch.float64, 1e-12), (torch.float16, 1e-2)):
        err = _dispatched_error(INTERP_CASES[0], dtype)
        print("dispatched", dtype, f"{err:.1e}")
        failures += [f"dispatched {dtype}: {err:.2e}"] if not err < tol else []
    if failures:
        raise SystemExit("kernel differs from the reference:\n" + "\n".join(failures))


def _dispatched_error(case, dtype: torch.dtype) -> float:
    """Max relative error of ``relpos_attention(backend=None)`` in ``dtype`` vs the float64 reference."""
    from lsvr_ops_triton.relpos_attention import relpos_attention

    b, g, h, w, d, dv, side = case
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(b, g, h * w, d, generator=gen), torch.randn(b, g, h * w, d, generator=gen) * 0.5
    v = torch.randn(b, g, h * w, dv, generator=gen)
    tables = [torch.randn(2 * side - 1, d, generator=gen) * 0.3 for _ in range(2)]
    q, k, v = (t.to(dtype) for t in (q, k, v))
    out = relpos_attention(q, k, v, *tables, h, w)
    assert out.dtype == dtype, out.dtype
    ref = relpos_attention(q.double(), k.double(), v.double(), *(t.double() for t in tables), h, w,
                           backend="reference")
    return float((out.double() - ref).abs().max() / ref.abs().max())


def test_kernel_matches_reference_in_the_interpreter() -> None:
    pytest.importorskip("triton")
    name = "lsvr_ops_triton_test_deform_cases"  # the shared cases module, by path (as test_deform_triton loads it)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "deform_cases.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    cases = sys.modules[name]
    if cases.interpreter_skip_reason():
        pytest.skip(cases.interpreter_skip_reason())
    env = {**os.environ, "TRITON_INTERPRET": "1", "LSVR_KERNEL_BACKEND": "triton"}
    res = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.count("'out'") == len(INTERP_CASES)


def test_kernel_rejects_unsupported_dtypes() -> None:
    pytest.importorskip("triton")
    from lsvr_ops_triton.relpos_triton import decomposed_attention_triton

    q = torch.zeros(1, 1, 6, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32, bfloat16, float16"):
        decomposed_attention_triton(q, q, q, torch.zeros(1, 1, 6, 2), torch.zeros(1, 1, 6, 3))


GPU_CASES = [(2, 8, 32, 32, 16, 32, 32), (1, 8, 24, 40, 32, 64, 64), (1, 8, 20, 20, 64, 128, 20)]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", GPU_CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_compiled_kernel_matches_reference(case, dtype: torch.dtype, tol: float) -> None:
    pytest.importorskip("triton")
    errors = _compare(case, "cuda", dtype)
    assert max(errors.values()) < tol, errors


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", GPU_CASES[:2])
def test_compiled_flex_matches_reference(case) -> None:
    errors = _compare(case, "cuda", torch.float32, backend="flex")
    assert max(errors.values()) < 1e-3, errors


if __name__ == "__main__":
    _interp_main()
