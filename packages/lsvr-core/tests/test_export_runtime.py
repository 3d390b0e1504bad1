"""``ExportedDetector.fit_to_input``: images larger than a fixed export input are shrunk to fit, and the
recorded scale maps predictions back to the original image (hand-computed)."""

from __future__ import annotations

import types

import torch

from lsvr_core.export.runtime import ExportedDetector
from lsvr_core.structures import Batch, Predictions, Targets


def _runner(size: tuple[int, int]) -> ExportedDetector:
    runner = ExportedDetector.__new__(ExportedDetector)
    torch.nn.Module.__init__(runner)
    runner.size = size
    runner._warned_fit = False
    runner.decoder = types.SimpleNamespace(pixel_mean=torch.tensor([10.0, 20.0, 30.0]))
    return runner


def _targets(h: int, w: int, scale: tuple[float, float] = (1.0, 1.0)) -> Targets:
    return Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1, (h, w), (h, w), scale=scale)


def test_large_image_is_shrunk_and_maps_back() -> None:
    runner = _runner((32, 32))
    batch = Batch(torch.full((1, 3, 64, 256), 200.0), [_targets(64, 256)])
    fitted = runner.fit_to_input(batch)
    assert fitted.image_sizes == [(8, 32)] and tuple(fitted.images.shape) == (1, 3, 32, 32)
    t = fitted.targets[0]
    assert t.scale == (32 / 256, 8 / 64) and t.orig_size == (64, 256)
    assert torch.allclose(fitted.images[0, :, :8, :], torch.tensor(200.0))  # the image, resized
    assert fitted.images[0, 1, 8:, :].eq(20.0).all()  # padding with the pixel mean
    pred = Predictions(torch.tensor([[0.0, 0.0, 32.0, 8.0]]), torch.ones(1), torch.zeros(1, dtype=torch.long), 1)
    assert pred.to_original(t).boxes.tolist() == [[0.0, 0.0, 256.0, 64.0]]


def test_images_that_fit_are_untouched() -> None:
    runner = _runner((64, 64))
    batch = Batch(torch.rand(2, 3, 64, 64), [_targets(64, 40, (0.5, 0.5)), _targets(30, 64)])
    assert runner.fit_to_input(batch) is batch
    runner.size = None  # dynamic exports take any size
    big = Batch(torch.rand(1, 3, 96, 96), [_targets(96, 96)])
    assert runner.fit_to_input(big) is big
