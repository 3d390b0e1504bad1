"""Detector: build from a config through the plugin manager, normalisation, task check, original-frame output."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lsvr_core.builtin.configs import FCOSHeadConfig, FPNConfig, ResNetConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.detector import Detector, build_detector
from lsvr_core.plugins import PluginManager
from lsvr_core.structures import Batch, Predictions, Targets
from lsvr_core.testing import make_batch

torch.set_num_threads(1)
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _cfg(task="bbox"):
    model = SimpleNamespace(backbone=ResNetConfig(depth=18, frozen_stages=-1), neck=FPNConfig(out_channels=32),
                            head=FCOSHeadConfig(num_convs=1, score_thresh=0.2), num_classes=3,
                            pixel_mean=MEAN, pixel_std=STD)
    return SimpleNamespace(task=task, model=model)


@pytest.fixture(scope="module")
def manager():
    return PluginManager(entry_points=False)


def test_build_detector_trains_and_predicts_in_original_frame(manager):
    torch.manual_seed(0)
    detector = build_detector(_cfg(), manager)
    assert detector.output_shape()["p7"] == ShapeSpec(32, 128)
    batch = make_batch((64, 96))
    detector.train()
    losses = detector(batch)
    assert set(losses) == {"loss_cls", "loss_box", "loss_ctr"}
    sum(losses.values()).backward()
    assert detector.backbone.stages[0][0].conv1.weight.grad is not None
    detector.eval()
    with torch.no_grad():
        preds = detector(batch)
    assert [p.frame for p in preds] == ["original", "original"]
    assert [p.image_id for p in preds] == [1, 2]


def test_head_task_support_is_checked(manager):
    with pytest.raises(ConfigError, match=r"head 'fcos' does not support task 'pose_kbox'; supported tasks: bbox"):
        build_detector(_cfg("pose_kbox"), manager)


class _Echo(nn.Module):
    """Backbone returning the normalised image; head returning one fixed box per image."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def output_shape(self):
        return {"c1": ShapeSpec(3, 1)}

    def forward(self, x):
        self.seen = x
        return {"c1": x}


class _FixedHead(nn.Module):
    def predict(self, features, batch):
        return [Predictions(torch.tensor([[10.0, 20.0, 50.0, 60.0]]), torch.tensor([0.9]), torch.tensor([1]),
                            image_id=t.image_id) for t in batch.targets]


def test_normalisation_rezeros_padding_and_to_original_hand_numbers():
    backbone = _Echo()
    detector = Detector(backbone, None, _FixedHead(), MEAN, STD).eval()
    images = torch.zeros(1, 3, 48, 96)
    images[0, :, :40, :80] = 200.0
    # input 40 x 80 (H x W) from a 160 x 160 file: sx = 0.5, sy = 0.25, then flipped horizontally
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), image_id=5, orig_size=(160, 160),
                   image_size=(40, 80), scale=(0.5, 0.25), flipped=True)
    (pred,) = detector(Batch(images, [meta]))
    seen = backbone.seen
    for c in range(3):
        assert torch.allclose(seen[0, c, :40, :80], torch.tensor((200.0 - MEAN[c]) / STD[c]))
    assert seen[0, :, 40:, :].abs().sum() == 0 and seen[0, :, :, 80:].abs().sum() == 0
    # unflip x -> 80 - x: [30, 20, 70, 60]; scale: x / 0.5, y / 0.25 -> [60, 80, 140, 240]; clip y to 160
    assert pred.boxes.tolist() == [[60.0, 80.0, 140.0, 160.0]]
    assert pred.frame == "original" and pred.image_id == 5
