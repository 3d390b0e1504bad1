"""The conformance suites pass on the built-in components and catch broken ones."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from pydantic import Field
from torch import nn

from lsvr_core.builtin import configs as c
from lsvr_core.contracts import ShapeSpec
from lsvr_core.plugins import PluginManager
from lsvr_core.specs import AssignerConfig, LossConfig, NeckConfig
from lsvr_core.testing import (
    check_assigner,
    check_backbone,
    check_config_roundtrip,
    check_head,
    check_loss,
    check_neck,
    make_batch,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def manager() -> PluginManager:
    return PluginManager(entry_points=False)


def test_resnet18_conforms(manager):
    spec = manager.get("backbone", "resnet")
    check_backbone(spec, c.ResNetConfig(depth=18, norm="bn", norm_eval=False, frozen_stages=-1), manager=manager)


def test_resnet18_frozen_stem_conforms(manager):
    backbone = check_backbone("lsvr_core.models.resnet:build_resnet", c.ResNetConfig(depth=18, frozen_stages=1),
                              image_size=(64, 64), manager=manager)
    assert not any(p.requires_grad for p in backbone.stem.parameters())


def test_fpn_conforms(manager):
    neck = check_neck(manager.get("neck", "fpn"), c.FPNConfig(out_channels=32, norm="gn"), manager=manager)
    assert list(neck.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]


def test_fcos_conforms(manager):
    check_head(manager.get("head", "fcos"), c.FCOSHeadConfig(num_convs=1), manager=manager)


@pytest.mark.parametrize(("name", "cfg", "inputs"), [
    ("focal", c.FocalLossConfig(), (torch.randn(6, 3), torch.tensor([0, 1, 2, -1, 3, 1]))),
    ("giou", c.GIoULossConfig(loss_weight=2.0), (torch.tensor([[0., 0, 10, 10], [5, 5, 20, 30]]),
                                                 torch.tensor([[1., 2, 12, 9], [0, 0, 20, 20]]))),
    ("l1", c.L1LossConfig(), (torch.randn(5, 4), torch.randn(5, 4))),
    ("smooth_l1", c.SmoothL1LossConfig(), (torch.randn(5, 4), torch.randn(5, 4))),
])
def test_losses_conform(manager, name, cfg, inputs):
    empty = (inputs[0][:0], inputs[1][:0])
    check_loss(manager.get("loss", name), cfg, inputs, empty_inputs=empty, manager=manager)


def test_assigner_suite_on_a_tiny_assigner(manager):
    class ArgmaxConfig(AssignerConfig):
        type: Literal["argmax"] = "argmax"

    def build(cfg, *, registry=None):
        @torch.no_grad()
        def assign(scores):  # (N, M) -> (N,) index of the best gt
            return scores.argmax(dim=1)
        return assign

    scores = torch.randn(5, 3, requires_grad=True)
    out = check_assigner(build, ArgmaxConfig(), lambda a: a(scores), manager=manager)
    assert torch.equal(out, scores.detach().argmax(1))

    def leaky(cfg, *, registry=None):
        return lambda scores: scores.softmax(1)  # keeps autograd history: targets must be constants

    with pytest.raises(AssertionError, match="requires grad"):
        check_assigner(leaky, ArgmaxConfig(), lambda a: a(scores), manager=manager)


# --- the suites catch broken components ------------------------------------------------------------


class BadNeckConfig(NeckConfig):
    type: Literal["bad_neck"] = "bad_neck"
    declared_stride: int = 8


class _BadNeck(nn.Module):
    def __init__(self, cfg, input_shape, *, registry=None):
        super().__init__()
        self.conv = nn.Conv2d(input_shape["c3"].channels, 16, 1)
        self.unused = nn.Linear(2, 2)
        self.stride = cfg.declared_stride

    def output_shape(self):
        return {"p3": ShapeSpec(16, self.stride)}

    def forward(self, features):
        return {"p3": self.conv(features["c3"])}


def test_neck_suite_catches_wrong_stride_and_unused_parameters(manager):
    with pytest.raises(AssertionError, match=r"ceil\(H/stride\)"):
        check_neck(_BadNeck, BadNeckConfig(declared_stride=16), manager=manager)
    with pytest.raises(AssertionError, match="received no gradient.*unused"):
        check_neck(_BadNeck, BadNeckConfig(), manager=manager)
    check_neck(_BadNeck, BadNeckConfig(), allow_unused=["unused.*"], manager=manager)


class SumLossConfig(LossConfig):
    type: Literal["sum_loss"] = "sum_loss"
    loss_weight: float = Field(1.0, ge=0)


class _IgnoresWeight(nn.Module):
    def forward(self, pred, target, weight=None, avg_factor=None):
        return (pred - target).abs().sum() / (avg_factor or 1.0)


def test_loss_suite_catches_ignored_loss_weight(manager):
    x = (torch.randn(3, 4), torch.randn(3, 4))
    with pytest.raises(AssertionError, match="loss_weight"):
        check_loss(lambda cfg, registry=None: _IgnoresWeight(), SumLossConfig(), x, manager=manager)


def test_config_roundtrip_rejects_a_config_that_allows_extra_keys(manager):
    from pydantic import ConfigDict

    class LooseConfig(LossConfig):
        model_config = ConfigDict(extra="allow")
        type: Literal["loose"] = "loose"

    with pytest.raises(AssertionError, match="unknown keys"):
        check_config_roundtrip(LooseConfig(), "loss", manager)


def test_head_suite_checks_prediction_frame(manager):
    from lsvr_core.models.fcos import build_fcos_head

    def build_bad(cfg, input_shape, num_classes, task, *, registry=None):
        head = build_fcos_head(cfg, input_shape, num_classes, task, registry=registry)
        predict = head.predict

        def wrong_frame(features, batch):
            return [p.to_original(t) for p, t in zip(predict(features, batch), batch.targets, strict=True)]

        head.predict = wrong_frame
        return head

    with pytest.raises(AssertionError, match="input frame"):
        check_head(build_bad, c.FCOSHeadConfig(num_convs=0, score_thresh=0.0), batch=make_batch(), manager=manager)


@pytest.mark.parametrize("broken", ["decode_outputs", "export_postprocess"])
def test_head_suite_checks_the_export_methods_against_predict(manager, broken):
    """A head whose export decoding drifts from predict (here: scores halved) fails the suite, naming the method."""
    from lsvr_core.models.fcos import build_fcos_head

    def build_bad(cfg, input_shape, num_classes, task, *, registry=None):
        head = build_fcos_head(cfg, input_shape, num_classes, task, registry=registry)
        method = getattr(head, broken)

        def drifted(*args, **kwargs):
            out = method(*args, **kwargs)
            if isinstance(out, dict):
                return {**out, "scores": out["scores"] * 0.5}
            for p in out:
                p.scores = p.scores * 0.5
            return out

        setattr(head, broken, drifted)
        return head

    with pytest.raises(AssertionError, match=f"{broken}.*scores differ from predict's"):
        check_head(build_bad, c.FCOSHeadConfig(num_convs=0, score_thresh=0.0), batch=make_batch(), manager=manager)


@pytest.mark.slow
def test_resnet_with_real_dcn_v2_conforms():
    """With lsvr-ops-triton installed, the DCNv2 stages pass the backbone suite (offset/mask convs get gradients)."""
    manager = PluginManager()
    if "dcn_v2" not in {s.name for s in manager.components("layer")}:
        pytest.skip("lsvr-ops-triton (layer dcn_v2) is not installed")
    cfg = c.ResNetConfig(depth=18, norm="bn", norm_eval=False, frozen_stages=-1, dcn_stages=(False, False, False, True))
    backbone = check_backbone(manager.get("backbone", "resnet"), cfg, image_size=(64, 96), manager=manager)
    assert type(backbone.stages[3][0].conv2).__module__.startswith("lsvr_ops_triton")
