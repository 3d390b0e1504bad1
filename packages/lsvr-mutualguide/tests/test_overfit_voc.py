"""Overfit the MutualGuide v1 detector on 8 real VOC images (CPU): VOC mAP@0.5 >= 0.8 on those images.

ShuffleNetV2 + FPN (width 64) + the mutual_guide head with the v1 assigner, focal (gamma 1) and Balanced L1
losses, 192 x 192 input (the lsvr-data VOC reader, square resize), AdamW with a one-cycle schedule for 60
full-batch iterations, evaluated with lsvr-data's VOC evaluator (difficult objects ignored). BatchNorm
statistics are re-estimated on the 8 images before evaluation (momentum 0.01 in the necks would otherwise
need more iterations than this test can afford).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lsvr_core.models.detector import Detector
from lsvr_core.plugins import PluginManager
from lsvr_core.structures import collate
from lsvr_mutualguide import config as c
from lsvr_mutualguide.backbones import build_shufflenet_v2
from lsvr_mutualguide.head import build_mutual_guide_head
from lsvr_mutualguide.necks import build_fpn_mg

ITERATIONS = 60


@pytest.mark.slow
def test_overfit_eight_voc_images(voc_sample: Path) -> None:
    from lsvr_data.config import PipelineConfig, VocDatasetConfig, VocEvaluatorConfig
    from lsvr_data.voc import build_voc
    from lsvr_data.voc_eval import build_voc_evaluator

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = build_voc(VocDatasetConfig(root="VOCdevkit", sets=[("2012", "val")],
                                    pipeline=PipelineConfig(resize="square", square_size=192)),
                   root=voc_sample, train=False, task="bbox")
    batch = collate([ds[i] for i in range(8)], size_divisor=64)
    assert sum(len(t) for t in batch.targets) >= 10
    backbone = build_shufflenet_v2(c.ShuffleNetV2Config())
    neck = build_fpn_mg(c.FPNMGNeckConfig(out_channels=64, num_levels=4), backbone.output_shape())
    head = build_mutual_guide_head(c.MutualGuideHeadConfig(), neck.output_shape(), 20, "bbox",
                                   registry=PluginManager())
    model = Detector(backbone, neck, head, (123.0, 117.0, 104.0), (1.0, 1.0, 1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=ITERATIONS, pct_start=0.1)
    model.train()
    first = None
    for _ in range(ITERATIONS):
        losses = model(batch)
        loss = sum(losses.values())
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    assert float(loss.detach()) < 0.2 * first
    for m in model.modules():  # re-estimate BatchNorm statistics on the training images
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model(batch)
    model.eval()
    evaluator = build_voc_evaluator(VocEvaluatorConfig(), dataset=ds, task="bbox")
    with torch.no_grad():
        evaluator.process(model(batch))
    metrics = evaluator.evaluate()
    assert metrics["voc/mAP50"] >= 0.8, metrics
