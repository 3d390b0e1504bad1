"""Backend dispatch (LSVR_KERNEL_BACKEND), the torch-free package import, the dcn_v1/dcn_v2 layer
registrations and the DCN modules as drop-ins for nn.Conv2d (LSNet spec §2.1, §2.2, §9 item 1)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchvision

from lsvr_core.errors import ConfigError
from lsvr_core.plugins import PluginManager
from lsvr_ops_triton import DeformConv2d, ModulatedDeformConv2d, backend_report, choose_backend, dispatch


class _OnDevice:
    def __init__(self, kind: str) -> None:
        self.device = torch.device(kind) if kind == "cpu" else type("D", (), {"type": kind})()


def test_auto_picks_triton_only_for_cuda_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSVR_KERNEL_BACKEND", raising=False)
    assert choose_backend(torch.zeros(1), None) == "torch"
    expected = "triton" if dispatch.triton_import_error() is None else "torch"
    assert choose_backend(torch.zeros(1), _OnDevice("cuda")) == expected
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "torch")
    assert choose_backend(_OnDevice("cuda")) == "torch"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if dispatch.triton_import_error() is not None:
        pytest.skip("triton not importable here")
    with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
        choose_backend(torch.zeros(1))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert choose_backend(torch.zeros(1)) == "triton"


def test_invalid_backend_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", "cuda")
    with pytest.raises(ConfigError, match="LSVR_KERNEL_BACKEND='cuda'"):
        choose_backend(torch.zeros(1))
    assert backend_report()["requested"].startswith("invalid")


def test_backend_report_is_all_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LSVR_KERNEL_BACKEND", raising=False)
    report = backend_report()
    assert set(report) == {"requested", "triton", "triton_interpret", "cuda", "cuda_ops", "cpu_ops"}
    assert all(isinstance(v, str) for v in report.values())
    assert report["cpu_ops"] == "torch"


def test_package_import_and_registration_stay_torch_free() -> None:
    code = ("import sys, lsvr_ops_triton, lsvr_ops_triton.plugin as p, lsvr_ops_triton.dispatch;"
            "names = [s.name for s in p.lsvr_layers()];"
            "assert names == ['dcn_v1', 'dcn_v2'], names;"
            "print(sorted(m for m in ('torch', 'torchvision', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name, cls", [("dcn_v1", DeformConv2d), ("dcn_v2", ModulatedDeformConv2d)])
def test_layers_build_through_the_plugin_manager(name: str, cls: type) -> None:
    spec = PluginManager().get("layer", name)
    layer = spec.load()(in_channels=8, out_channels=4, kernel_size=3, stride=2, padding=1, dilation=1, groups=2,
                        bias=False, offset_groups=2)
    assert isinstance(layer, cls) and layer.bias is None
    assert layer(torch.randn(1, 8, 9, 9)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 1, 1, 1), (2, 1, 1, 2), (1, 2, 2, 1)])
def test_fresh_layers_equal_plain_conv(stride: int, padding: int, dilation: int, groups: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 11, 10)
    for cls, factor in ((DeformConv2d, 1.0), (ModulatedDeformConv2d, 0.5)):  # mask = sigmoid(0) = 0.5
        layer = cls(8, 6, 3, stride, padding, dilation, groups)
        conv = torch.nn.functional.conv2d(x, layer.weight, None, stride, padding, dilation, groups)
        expected = factor * conv + layer.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_modulated_layer_splits_offset_conv_like_mmcv() -> None:
    """Offset conv output [o1, o2, m]: offset = cat(o1, o2), mask = sigmoid(m) (LSNet spec §9 item 1)."""
    torch.manual_seed(0)
    layer = ModulatedDeformConv2d(4, 5, 3, padding=1)
    torch.nn.init.normal_(layer.conv_offset.weight, std=0.3)
    x = torch.randn(1, 4, 6, 7)
    raw = layer.conv_offset(x)
    o1, o2, m = raw[:, :9], raw[:, 9:18], raw[:, 18:]
    expected = torchvision.ops.deform_conv2d(x, torch.cat((o1, o2), 1), layer.weight, layer.bias, padding=1,
                                             mask=m.sigmoid())
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-5)
    layer(x).square().sum().backward()
    assert layer.conv_offset.weight.grad.abs().sum() > 0


def test_bad_channel_counts_raise() -> None:
    with pytest.raises(ValueError, match="offset_groups=3"):
        DeformConv2d(8, 8, 3, offset_groups=3)


@pytest.mark.parametrize("requested", ["triton", "auto"])
def test_dtypes_the_kernels_cannot_compute_take_the_torch_path(requested: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """float64 never reaches the kernels (their float64 forward was ~1e263 / NaN); bfloat16 not under the
    interpreter, whose tl.dot of bfloat16 operands is wrong (issue 15)."""
    monkeypatch.setenv("LSVR_KERNEL_BACKEND", requested)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    cuda64 = type("T", (), {"device": _OnDevice("cuda").device, "dtype": torch.float64})()
    assert choose_backend(torch.zeros(1, dtype=torch.float64), None) == "torch"
    assert choose_backend(torch.zeros(1), torch.zeros(1, dtype=torch.float64)) == "torch"  # float64 offsets
    assert choose_backend(cuda64) == "torch"
    assert choose_backend(torch.zeros(1, dtype=torch.bfloat16)) == "torch"
    assert dispatch.kernels_compute(torch.float32, torch.float16, None)
    monkeypatch.delenv("TRITON_INTERPRET")
    assert dispatch.kernels_compute(torch.bfloat16) and not dispatch.kernels_compute(torch.float64)


def _torchvision_style_tensors(c: int, cout: int, groups: int, offset_groups: int, k: int = 3) -> dict:
    gen = torch.Generator().manual_seed(3)
    return {"input": torch.randn(2, c, 7, 8, generator=gen),
            "offset": torch.randn(2, 2 * offset_groups * k * k, 5, 6, generator=gen) * 2,
            "weight": torch.randn(cout, c // groups, k, k, generator=gen) * 0.2,
            "bias": torch.randn(cout, generator=gen), "mask": torch.rand(2, offset_groups * k * k, 5, 6, generator=gen)}


@pytest.mark.parametrize("groups,offset_groups", [(2, 1), (1, 3), (3, 3), (6, 2)])
def test_torchvision_style_call_infers_groups_and_offset_groups(groups: int, offset_groups: int) -> None:
    """A call written for torchvision.ops.deform_conv2d (no groups / offset_groups; mask, bias) gives its result."""
    from lsvr_ops_triton import deform_conv2d

    t = _torchvision_style_tensors(6, 12, groups, offset_groups)
    ours = deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], mask=t["mask"])
    ref = torchvision.ops.deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], mask=t["mask"])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    ours = deform_conv2d(t["input"], t["offset"][..., :3, :3], t["weight"], None, stride=2, padding=1, dilation=2,
                         mask=t["mask"][..., :3, :3])
    ref = torchvision.ops.deform_conv2d(t["input"], t["offset"][..., :3, :3], t["weight"], None, 2, 1, 2,
                                        mask=t["mask"][..., :3, :3])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_torchvision_positional_order_is_refused_by_name() -> None:
    from lsvr_ops_triton import deform_conv2d

    t = _torchvision_style_tensors(4, 4, 1, 1)
    with pytest.raises(TypeError, match="pass them by keyword"):
        deform_conv2d(t["input"], t["offset"], t["weight"], t["bias"], (1, 1))
    with pytest.raises(ValueError, match="offset must have shape .* multiple of 2·kh·kw = 18 channels"):
        deform_conv2d(t["input"], t["offset"][:, :10], t["weight"])
    with pytest.raises(ValueError, match="multiple of weight.shape\\[1\\]=4"):
        deform_conv2d(t["input"][:, :3], t["offset"], t["weight"])
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        deform_conv2d(t["input"].to(torch.float8_e4m3fn), t["offset"], t["weight"].to(torch.float8_e4m3fn))
