"""The fast CPU path (batched sampling + matmul, own backward) of deform_conv2d and pyramid_deform_conv2d.

Oracles: ``torchvision.ops.deform_conv2d`` for outputs and every gradient across issue 5's argument
combinations; for the pyramid op the grid_sample reference, a literal loop over LSNet spec §2.4, and
torchvision itself (with scales 1 the pyramid op is a padding-1 DCN v1). float64 gradcheck on the references
and on the CPU path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from lsvr_ops_triton import cpu_sampled_conv, deform_conv2d, pyramid_deform_conv2d
from lsvr_ops_triton.reference import pyramid_deform_conv2d_reference


def _load_cases():  # noqa: ANN202 - the shared cases module, by path (test folders are not packages)
    name = "lsvr_ops_triton_test_deform_cases"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "deform_cases.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


cases = _load_cases()


@pytest.fixture(autouse=True)
def _torch_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "torch")
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", list(cases.DEFORM_CASES))
def test_cpu_path_matches_torchvision_forward_and_all_gradients(name: str) -> None:
    case = cases.DEFORM_CASES[name]
    tensors = case.tensors(torch.float64)
    ours = cases.run_deform(deform_conv2d, case, tensors)
    ref = cases.run_deform(cases.torchvision_deform, case, tensors)
    errors = cases.max_rel_errors(ours, ref)
    assert max(errors.values()) < 1e-10, errors
    # float32 too (what users run): within the tolerance of two different fp32 summation orders
    t32 = case.tensors(torch.float32)
    errors32 = cases.max_rel_errors(cases.run_deform(deform_conv2d, case, t32),
                                    cases.run_deform(cases.torchvision_deform, case, t32))
    assert max(errors32.values()) < 1e-4, errors32


@pytest.mark.parametrize("save_bytes", [0, cpu_sampled_conv.SAVE_BYTES], ids=["resample", "saved_samples"])
def test_cpu_path_chunking_over_images_and_rows(save_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_sampled_conv, "SAVE_BYTES", save_bytes)
    case = cases.DeformCase(n=3, h=9, w=6, groups=2, offset_groups=2)
    tensors = case.tensors(torch.float64)
    whole = cases.run_deform(deform_conv2d, case, tensors)
    ref = cases.run_deform(cases.torchvision_deform, case, tensors)
    row_bytes = case.c * 9 * case.w * 8  # one output row of samples in float64
    for budget in (2 * 9 * row_bytes, 2 * row_bytes, 1):  # two images per chunk / two rows / one row
        monkeypatch.setattr(cpu_sampled_conv, "CHUNK_BYTES", budget)
        chunked = cases.run_deform(deform_conv2d, case, tensors)
        assert max(cases.max_rel_errors(chunked, ref).values()) < 1e-10
        assert max(cases.max_rel_errors(chunked, whole).values()) < 1e-12


def test_saved_samples_survive_a_second_backward() -> None:
    case = cases.DeformCase()
    t = cases.leaves(case.tensors(torch.float64))
    out = deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], t["mask"], padding=1)
    first = torch.autograd.grad(out.square().sum(), list(t.values()), retain_graph=True)
    second = torch.autograd.grad(out.square().sum(), list(t.values()))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_gradcheck_cpu_path_float64() -> None:
    case = cases.DeformCase(n=1, c=4, h=5, w=4, cout=2, groups=2, offset_groups=2, stride=2, offset_scale=1.5)
    t = cases.leaves(case.tensors(torch.float64))

    def fn(x, off, w, b, m):  # noqa: ANN001, ANN202
        return deform_conv2d(x, off, w, b, m, case.stride, case.padding, case.dilation, case.groups,
                             case.offset_groups)

    assert torch.autograd.gradcheck(fn, (t["input"], t["offset"], t["weight"], t["bias"], t["mask"]))


def test_gradcheck_references_float64() -> None:
    case = cases.DeformCase(n=1, c=2, h=4, w=4, cout=2, offset_scale=1.5)
    t = cases.leaves(case.tensors(torch.float64))
    assert torch.autograd.gradcheck(
        lambda x, off, w, b, m: torchvision.ops.deform_conv2d(x, off, w, b, 1, 1, 1, m),
        (t["input"], t["offset"], t["weight"], t["bias"], t["mask"]))
    p = cases.leaves(cases.pyramid_tensors(n=1, c=2, feat_hw=(3, 4), out_hw=(5, 6), cout=2, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda f, o, w: pyramid_deform_conv2d_reference(f, o, w, (0.6, 4 / 6)),
                                    (p["feature"], p["offset"], p["weight"]))


def test_gradcheck_pyramid_cpu_path_float64() -> None:
    p = cases.leaves(cases.pyramid_tensors(n=1, c=2, feat_hw=(3, 4), out_hw=(5, 6), cout=2, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda f, o, w: pyramid_deform_conv2d(f, o, w, (0.6, 4 / 6)),
                                    (p["feature"], p["offset"], p["weight"]))


@pytest.mark.parametrize("scale_hw", [(5 / 9, 7 / 13), (2.0, 2.0), (0.52, 0.5)])
def test_pyramid_cpu_path_matches_reference_and_spec_formula(scale_hw: tuple[float, float]) -> None:
    tensors = cases.pyramid_tensors(dtype=torch.float64, offset_scale=3.0)
    ours = cases.run_pyramid(pyramid_deform_conv2d, tensors, scale_hw)
    ref = cases.run_pyramid(pyramid_deform_conv2d_reference, tensors, scale_hw)
    assert max(cases.max_rel_errors(ours, ref).values()) < 1e-10
    loop = cases.pyramid_loop_oracle(tensors["feature"], tensors["offset"], tensors["weight"], scale_hw)
    assert torch.allclose(ours["out"], loop, rtol=0, atol=1e-10)


@pytest.mark.parametrize("integer_offsets", [False, True])
def test_pyramid_with_unit_scale_is_padding1_dcn_v1(integer_offsets: bool) -> None:
    t = cases.pyramid_tensors(feat_hw=(6, 8), out_hw=(6, 8), dtype=torch.float64)
    if integer_offsets:  # positions on pixel centres: the offset gradient takes torchvision's (floor) side
        t["offset"] = t["offset"].round()
    tv = cases.run_pyramid(lambda f, o, w, s: torchvision.ops.deform_conv2d(f, o, w, padding=1), t, (1.0, 1.0))
    for fn in (pyramid_deform_conv2d, pyramid_deform_conv2d_reference):
        assert max(cases.max_rel_errors(cases.run_pyramid(fn, t, (1.0, 1.0)), tv).values()) < 1e-10


def test_pyramid_output_takes_offset_resolution_and_bias() -> None:
    t = cases.pyramid_tensors(feat_hw=(3, 4), out_hw=(6, 8))
    bias = torch.tensor([1.0, -2.0, 0.5])
    out = pyramid_deform_conv2d(t["feature"], t["offset"], t["weight"], (0.5, 0.5), bias)
    assert out.shape == (2, 3, 6, 8)
    no_bias = pyramid_deform_conv2d(t["feature"], t["offset"], t["weight"], (0.5, 0.5))
    assert torch.allclose(out - no_bias, bias.view(1, 3, 1, 1).expand_as(out), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_on_cpu_compute_in_float32(dtype: torch.dtype) -> None:
    case = cases.DeformCase()
    t = case.tensors(torch.float64)
    # keep sampling positions away from integers, where the offset gradient jumps (fp16 offsets hit them)
    frac = t["offset"] - t["offset"].round()
    t["offset"] = t["offset"] + torch.where(frac.abs() < 0.02, 0.05, 0.0)
    low = {k: None if v is None else v.to(dtype) for k, v in t.items()}
    ours = cases.run_deform(deform_conv2d, case, low)
    assert all(v.dtype == dtype for v in ours.values())
    as_fp32 = {k: None if v is None else v.float() for k, v in low.items()}
    ref = cases.run_deform(cases.torchvision_deform, case, as_fp32)
    tol = 1e-2 if dtype == torch.float16 else 2e-2  # one rounding of the fp32 result to the low dtype
    errors = cases.max_rel_errors(ours, ref)
    assert max(errors.values()) < tol, errors


def test_autocast_cpu_returns_autocast_dtype() -> None:
    case = cases.DeformCase()
    t = cases.leaves(case.tensors(torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], t["mask"], padding=1)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert t["weight"].grad.dtype == torch.float32 and t["offset"].grad.dtype == torch.float32


def test_torch_compile_traces_the_custom_op_without_graph_breaks() -> None:
    case = cases.DeformCase(n=1, c=4, cout=4)
    t = cases.leaves(case.tensors(torch.float32))

    def fn(x, off, w, b, m, f, po, pw):  # noqa: ANN001, ANN202
        return deform_conv2d(x, off, w, b, m, padding=1).sum() + pyramid_deform_conv2d(f, po, pw, (0.6, 0.5)).sum()

    p = cases.leaves(cases.pyramid_tensors(c=4, feat_hw=(3, 4), out_hw=(5, 8)))
    args = (t["input"], t["offset"], t["weight"], t["bias"], t["mask"], p["feature"], p["offset"], p["weight"])
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    loss = compiled(*args)
    grads = torch.autograd.grad(loss, args)
    ref_loss = fn(*args)
    ref_grads = torch.autograd.grad(ref_loss, args)
    assert torch.allclose(loss, ref_loss)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, ref_grads, strict=True))


def test_shape_errors_name_the_argument() -> None:
    case = cases.DeformCase()
    t = case.tensors()
    with pytest.raises(ValueError, match="offset must have shape"):
        deform_conv2d(t["input"], t["offset"][:, :4], t["weight"], padding=1)
    with pytest.raises(ValueError, match="mask must have shape"):
        deform_conv2d(t["input"], t["offset"], t["weight"], mask=t["mask"][:, :3], padding=1)
    with pytest.raises(ValueError, match="groups=3"):
        deform_conv2d(t["input"], t["offset"], t["weight"], padding=1, groups=3)
    with pytest.raises(TypeError, match="dtypes differ"):
        deform_conv2d(t["input"].double(), t["offset"], t["weight"], padding=1)
    p = cases.pyramid_tensors()
    with pytest.raises(ValueError, match=r"offset must have shape \(2, 18, H, W\)"):
        pyramid_deform_conv2d(p["feature"], p["offset"][:, :9], p["weight"], (0.5, 0.5))
