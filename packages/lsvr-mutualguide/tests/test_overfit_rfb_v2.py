"""Overfit the RFB neck and the v2 detector on 8 real VOC images (CPU, one thread) and assert VOC AP50.

RFB: ShuffleNetV2 backbone (the reference pairs RFB with VGG16, too slow here) + a narrow ``rfb`` neck (reduce 32,
levels 64/64/64/32) + the v1 head and assigner, 128 x 128, 40 iterations.

v2: a CSPDarknet narrowed to width 0.25 (depth 0.33, as the 0.5 variant; the shipped widths are too slow here) +
``pafpn_v2`` (64 channels, strides 16/32/64) + the tower head with the v2 assigner (dynamic top-k, soft IoU labels),
Varifocal-like + Poly-1, Balanced L1 + SIoU losses and class-agnostic inference, 192 x 192, 40 iterations.

The loop: full-batch AdamW with a one-cycle schedule, BatchNorm statistics re-estimated on the images, then
lsvr-data's VOC evaluator on the same images (difficult objects ignored)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

from lsvr_core.models.detector import Detector
from lsvr_core.plugins import PluginManager
from lsvr_core.structures import collate
from lsvr_mutualguide import config as c
from lsvr_mutualguide.backbones import build_shufflenet_v2
from lsvr_mutualguide.cspdarknet import CSPDarknet
from lsvr_mutualguide.head import build_mutual_guide_head
from lsvr_mutualguide.neck_v2 import build_pafpn_v2
from lsvr_mutualguide.rfb import build_rfb


def voc_batch(voc_sample: Path, size: int, num_images: int = 8):  # noqa: ANN201
    from lsvr_data.config import PipelineConfig, VocDatasetConfig
    from lsvr_data.voc import build_voc

    ds = build_voc(VocDatasetConfig(root="VOCdevkit", sets=[("2012", "val")],
                                    pipeline=PipelineConfig(resize="square", square_size=size)),
                   root=voc_sample, train=False, task="bbox")
    return ds, collate([ds[i] for i in range(num_images)], size_divisor=64)


def overfit(model: Detector, ds, batch, iterations: int, lr: float = 3e-3) -> tuple[dict[str, float], float, float]:  # noqa: ANN001
    """Train on ``batch``; returns (VOC metrics on the batch, first loss, last loss); prints them and the time."""
    from lsvr_data.config import VocEvaluatorConfig
    from lsvr_data.voc_eval import build_voc_evaluator

    t0 = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=iterations, pct_start=0.1)
    model.train()
    first = last = None
    for _ in range(iterations):
        losses = model(batch)
        loss = sum(losses.values())
        first = first if first is not None else float(loss.detach())
        last = float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    for m in model.modules():  # re-estimate BatchNorm statistics on the training images
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model(batch)
    model.eval()
    evaluator = build_voc_evaluator(VocEvaluatorConfig(), dataset=ds, task="bbox")
    with torch.no_grad():
        evaluator.process(model(batch))
    metrics = evaluator.evaluate()
    print(f"overfit: {iterations} iterations in {time.perf_counter() - t0:.1f} s, loss {first:.3f} -> {last:.3f}, "
          f"VOC mAP50 {metrics['voc/mAP50']:.3f}, mAP {metrics['voc/mAP']:.3f}")
    return metrics, first, last


@pytest.mark.slow
def test_overfit_rfb_eight_voc_images(voc_sample: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds, batch = voc_batch(voc_sample, 128)
    backbone = build_shufflenet_v2(c.ShuffleNetV2Config())
    neck = build_rfb(c.RFBNeckConfig(reduce_channels=32, level_channels=(64, 64, 64, 32)), backbone.output_shape())
    head = build_mutual_guide_head(c.MutualGuideHeadConfig(), neck.output_shape(), 20, "bbox",
                                   registry=PluginManager())
    model = Detector(backbone, neck, head, (123.0, 117.0, 104.0), (1.0, 1.0, 1.0))
    metrics, first, last = overfit(model, ds, batch, iterations=40, lr=5e-3)
    assert last < 0.2 * first
    assert metrics["voc/mAP50"] >= 0.8, metrics


@pytest.mark.slow
def test_overfit_v2_eight_voc_images(voc_sample: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds, batch = voc_batch(voc_sample, 192)
    backbone = CSPDarknet(depth=0.33, width=0.25)
    neck = build_pafpn_v2(c.PAFPNV2NeckConfig(out_channels=64), backbone.output_shape())
    cfg = c.MutualGuideHeadConfig(anchor_base=48.0, tower=True, nms="agnostic", score_thresh=0.05,
                                  assigner=c.MutualGuideAssignerConfig(variant="v2"),
                                  loss_cls=c.VarifocalPolyLossConfig(), loss_iou=c.SIoULossConfig())
    head = build_mutual_guide_head(cfg, neck.output_shape(), 20, "bbox", registry=PluginManager())
    model = Detector(backbone, neck, head, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
    metrics, first, last = overfit(model, ds, batch, iterations=60, lr=4e-3)
    assert last < 0.35 * first
    assert metrics["voc/mAP50"] >= 0.65, metrics
