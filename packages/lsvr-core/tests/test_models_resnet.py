"""ResNet backbone: shapes and strides, frozen stages, norms, ResNeXt, DCN hook-up, offline pretrained weights."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from pydantic import ValidationError
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lsvr_core.builtin.configs import ResNetConfig
from lsvr_core.errors import ConfigError
from lsvr_core.models.resnet import build_resnet

torch.set_num_threads(1)
ALL = ("c2", "c3", "c4", "c5")


@pytest.mark.parametrize(("depth", "channels"), [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))])
def test_shapes_and_strides_at_odd_input_size(depth, channels):
    backbone = build_resnet(ResNetConfig(depth=depth, out_levels=ALL)).eval()
    h, w = 97, 131
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, h, w))
    shape = backbone.output_shape()
    assert list(out) == list(ALL) == list(shape)
    for (level, feat), c, stride in zip(out.items(), channels, (4, 8, 16, 32), strict=True):
        assert shape[level].channels == c and shape[level].stride == stride
        assert tuple(feat.shape) == (1, c, math.ceil(h / stride), math.ceil(w / stride))


def test_out_levels_subset_drops_unused_stages():
    backbone = build_resnet(ResNetConfig(depth=18, out_levels=("c3", "c4")))
    assert len(backbone.stages) == 3  # layer4 (c5) is not kept, so no parameter goes without a gradient
    assert list(backbone(torch.randn(1, 3, 64, 64))) == ["c3", "c4"]
    with pytest.raises(ValidationError, match="levels must be among c2, c3, c4, c5"):  # caught by lsvr validate
        ResNetConfig(depth=18, out_levels=("c6",))


def test_frozen_stages_are_frozen_and_keep_their_statistics():
    torch.manual_seed(0)
    backbone = build_resnet(ResNetConfig(depth=18, frozen_stages=2, norm="bn", norm_eval=False)).train()
    frozen = [backbone.stem, backbone.stages[0], backbone.stages[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in backbone.stages[2:] for p in m.parameters())
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    out = backbone(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in out.values()).backward()
    opt.step()
    after = backbone.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        if key.startswith(("stem.", "stages.0.", "stages.1.")):
            assert not changed, f"frozen {key} changed"
    assert not torch.equal(before["stages.2.0.bn1.running_mean"], after["stages.2.0.bn1.running_mean"])
    assert not torch.equal(before["stages.2.0.conv1.weight"], after["stages.2.0.conv1.weight"])


def test_norm_eval_keeps_batch_norm_in_eval_mode():
    backbone = build_resnet(ResNetConfig(depth=18, frozen_stages=-1, norm="bn", norm_eval=True)).train()
    bns = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert backbone.stages[3].training  # other layers still train


def test_frozen_bn_is_an_affine_map():
    backbone = build_resnet(ResNetConfig(depth=18, norm="frozen_bn"))
    bn = backbone.stem[1]
    assert isinstance(bn, FrozenBatchNorm2d) and not list(backbone.stem[1].parameters())
    g = torch.Generator().manual_seed(0)
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).copy_(torch.randn(64, generator=g))
    bn.running_var.copy_(torch.rand(64, generator=g) + 0.5)
    x = torch.randn(2, 64, 5, 7, generator=g)
    scale = bn.weight / torch.sqrt(bn.running_var + 1e-5)
    shift = bn.bias - bn.running_mean * scale
    expected = x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    torch.testing.assert_close(bn.train()(x), expected, rtol=1e-5, atol=1e-5)


def test_resnext_matches_torchvision_parameter_count():
    backbone = build_resnet(ResNetConfig(depth=50, groups=32, width_per_group=4, out_levels=ALL))
    assert backbone.stages[1][0].conv2.groups == 32
    reference = torchvision.models.resnext50_32x4d()
    n_ref = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in backbone.parameters()) + sum(  # frozen BN has buffers, not parameters
        m.weight.numel() * 2 for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)) == n_ref
    with pytest.raises(ConfigError, match="BasicBlock"):
        build_resnet(ResNetConfig(depth=18, groups=32, width_per_group=4))


class _FakeDCN(nn.Conv2d):
    calls: list[dict] = []

    def __init__(self, **kwargs):
        _FakeDCN.calls.append(kwargs)
        super().__init__(kwargs["in_channels"], kwargs["out_channels"], kwargs["kernel_size"], kwargs["stride"],
                         kwargs["padding"], kwargs["dilation"], kwargs["groups"], kwargs["bias"])


class _Spec:
    def build(self, cfg, *, registry, **kwargs):
        assert cfg is None and isinstance(registry, _Manager)
        return _FakeDCN(**kwargs)


class _Manager:
    def __init__(self, has_dcn: bool):
        self.has_dcn = has_dcn

    def get(self, kind, name):
        from lsvr_core.errors import PluginError

        if self.has_dcn and (kind, name) == ("layer", "dcn_v2"):
            return _Spec()
        raise PluginError(f"unknown {kind} {name!r}")


def test_dcn_stages_use_the_registered_dcn_v2_layer():
    _FakeDCN.calls.clear()
    backbone = build_resnet(ResNetConfig(depth=50, dcn_stages=(False, False, True, True)), registry=_Manager(True))
    assert isinstance(backbone.stages[2][0].conv2, _FakeDCN) and isinstance(backbone.stages[3][2].conv2, _FakeDCN)
    assert not isinstance(backbone.stages[1][0].conv2, _FakeDCN)
    assert len(_FakeDCN.calls) == 6 + 3  # every block of c4 and c5
    first = _FakeDCN.calls[0]
    assert first == dict(in_channels=256, out_channels=256, kernel_size=3, stride=2, padding=1, dilation=1,
                         groups=1, bias=False)
    out = backbone(torch.randn(1, 3, 64, 64))
    assert out["c5"].shape == (1, 2048, 2, 2)


def test_dcn_without_ops_package_is_a_clear_error():
    with pytest.raises(ConfigError, match="install lsvr-ops-triton"):
        build_resnet(ResNetConfig(depth=18, dcn_stages=(False, True, False, False)), registry=_Manager(False))
    with pytest.raises(ConfigError, match="needs registry="):
        build_resnet(ResNetConfig(depth=18, dcn_stages=(False, True, False, False)))


def test_pretrained_reads_only_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ConfigError, match=r"resnet18-f37072fd\.pth.*never downloads"):
        build_resnet(ResNetConfig(depth=18, pretrained=True))
    reference = torchvision.models.resnet18()
    (tmp_path / "checkpoints").mkdir()
    torch.save(reference.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    backbone = build_resnet(ResNetConfig(depth=18, pretrained=True))
    torch.testing.assert_close(backbone.stages[2][1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(backbone.stem[1].running_var, reference.bn1.running_var)


@pytest.mark.parametrize(("depth", "norm", "last_bn"), [(50, "bn", "bn3"), (18, "frozen_bn", "bn2")])
def test_zero_init_residual_zeroes_the_last_bn_of_each_block(depth, norm, last_bn):
    backbone = build_resnet(ResNetConfig(depth=depth, norm=norm, zero_init_residual=True, out_levels=ALL)).eval()
    blocks = [blk for stage in backbone.stages for blk in stage]
    assert all(torch.count_nonzero(getattr(blk, last_bn).weight) == 0 for blk in blocks)
    x = torch.randn(1, blocks[1].conv1.in_channels, 8, 8)  # blocks[1]: identity shortcut
    with torch.no_grad():
        assert torch.equal(blocks[1](x), x.relu())
    default = build_resnet(ResNetConfig(depth=depth, norm=norm, out_levels=ALL))
    assert all(torch.count_nonzero(getattr(b, last_bn).weight) > 0 for s in default.stages for b in s)
