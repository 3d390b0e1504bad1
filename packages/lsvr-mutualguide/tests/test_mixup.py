"""MixUp (spec §5, ``a192256:main.py:166-181``): images mixed lambda / (1 - lambda) with one batch permutation for
the first 80 % of the iterations; every loss term equals the same mix of the terms computed separately against
the batch's targets and the permuted targets."""

from __future__ import annotations

import torch

from lsvr_core.api import ShapeSpec
from lsvr_core.models.detector import Detector
from lsvr_core.plugins import PluginManager
from lsvr_core.structures import Batch, Predictions, Targets
from lsvr_mutualguide import config as c
from lsvr_mutualguide.head import build_mutual_guide_head
from lsvr_mutualguide.mixup import MixUp, MixUpBatch

torch.set_num_threads(1)


def make_batch(progress: float | None) -> Batch:
    g = torch.Generator().manual_seed(0)
    targets = []
    for i in range(3):
        boxes = torch.tensor([[8.0 + 4 * i, 10, 40, 50], [30, 5 + 3 * i, 60, 30]])
        targets.append(Targets(boxes, torch.tensor([i % 2, 2]), i, (64, 64), (64, 64)))
    return Batch(torch.rand(3, 3, 64, 64, generator=g) * 255, targets, progress)


def test_images_are_mixed_only_before_80_percent() -> None:
    batch = make_batch(0.79)
    torch.manual_seed(3)
    mixed = MixUp(1.0, 0.8)(batch)
    assert isinstance(mixed, MixUpBatch) and 0.0 < mixed.lam < 1.0
    assert sorted(mixed.index.tolist()) == [0, 1, 2]
    torch.testing.assert_close(mixed.images, mixed.lam * batch.images + (1 - mixed.lam) * batch.images[mixed.index])
    assert not isinstance(MixUp(1.0, 0.8)(make_batch(0.8)), MixUpBatch)
    assert not isinstance(MixUp()(make_batch(None)), MixUpBatch)  # outside the trainer (no progress): no MixUp


def test_mixed_losses_are_the_lambda_mix_of_both_target_sets() -> None:
    torch.manual_seed(0)
    shape = {"p3": ShapeSpec(8, 8), "p4": ShapeSpec(8, 16)}
    head = build_mutual_guide_head(c.MutualGuideHeadConfig(mixup=c.MixUpConfig()), shape, 3, "bbox",
                                   registry=PluginManager())
    features = {"p3": torch.randn(3, 8, 8, 8), "p4": torch.randn(3, 8, 4, 4)}
    base = make_batch(0.1)
    mixed = MixUpBatch(base.images, base.targets, 0.1, lam=0.3, index=torch.tensor([2, 0, 1]))
    out = head(features, mixed)
    own = head(features, Batch(base.images, base.targets))
    other = head(features, Batch(base.images, [base.targets[i] for i in (2, 0, 1)]))
    assert set(out) == {"loss_cls", "loss_bbox"}
    for k in out:
        torch.testing.assert_close(out[k], 0.3 * own[k] + 0.7 * other[k])
        assert not torch.allclose(own[k], other[k])  # the two target sets really differ


def test_detector_applies_the_heads_batch_transform_in_training_only() -> None:
    """The detector hands the raw training batch to ``head.transform_train_batch`` (MixUp) before the backbone."""
    seen = []

    class Backbone(torch.nn.Module):
        def output_shape(self) -> dict[str, ShapeSpec]:
            return {"p3": ShapeSpec(3, 1)}

        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            seen.append(images.clone())
            return {"p3": images}

    class Head(torch.nn.Module):
        def transform_train_batch(self, batch: Batch) -> Batch:
            return Batch(batch.images * 0 + 1, batch.targets, batch.progress)

        def forward(self, features: dict, batch: Batch) -> dict:
            return {"loss": features["p3"].sum()}

        def predict(self, features: dict, batch: Batch) -> list:  # one (empty) Predictions per image
            return [Predictions(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long))
                    for _ in batch.targets]

    model = Detector(Backbone(), None, Head(), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    batch = make_batch(0.5)
    model.train()(batch)
    model.eval()(batch)
    assert torch.all(seen[0] == 1) and torch.equal(seen[1], batch.images)
