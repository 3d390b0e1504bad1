"""Shared pieces of the two-stage export tests (``test_mask_rcnn_export.py``, ``test_htc_export.py``): a
one-image synthetic case, the traceable decoding run eagerly, the comparison with ``predict``, the
``torch.export`` program check and the raw-export refusal."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.structures import Batch, Predictions
from lsvr_core.testing import make_batch


def one_image_case(shape: dict[str, ShapeSpec], padded: tuple[int, int],
                   image_size: tuple[int, int]) -> tuple[dict[str, torch.Tensor], Batch]:
    """Random FPN features (seed 1) for a batch of one image of ``image_size`` padded to ``padded`` (H, W)."""
    torch.manual_seed(1)
    h, w = padded
    feats = {lv: torch.randn(1, s.channels, -(-h // s.stride), -(-w // s.stride)) for lv, s in shape.items()}
    batch = make_batch(padded, 3)
    batch = Batch(batch.images[:1], batch.targets[:1])
    batch.targets[0].image_size = image_size
    assert batch.image_sizes == [image_size]
    return feats, batch


@torch.no_grad()
def exported(head: torch.nn.Module, outputs: tuple[torch.Tensor, ...], image_size: tuple[int, int], meta,
             padded: tuple[int, int]) -> Predictions:
    """``export_postprocess`` run eagerly, then ``finish_postprocessed`` (mask pasting) as the runtime does."""
    got = head.export_postprocess(outputs, torch.tensor(image_size), torch.ones(2), padded)
    assert list(got)[:3] == ["boxes", "scores", "labels"]
    pred = Predictions(got["boxes"], got["scores"], got["labels"], roi_masks=got.get("roi_masks"))
    return head.finish_postprocessed(pred, meta)


def assert_equal(want: Predictions, got: Predictions, box_atol: float, mask_atol: float) -> float:
    """Same detections in the same order: boxes within ``box_atol`` px, scores within 1e-6, equal labels, masks
    within ``mask_atol``. Returns the largest box difference (px)."""
    assert len(want) == len(got)
    torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=box_atol)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=1e-6)
    assert torch.equal(got.labels, want.labels)
    for name in ("masks", "roi_masks"):
        a, b = getattr(want, name), getattr(got, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=mask_atol)
    return float((got.boxes - want.boxes).abs().max()) if len(want) else 0.0


def check_traceable_equals_predict(head: torch.nn.Module, feats: dict[str, torch.Tensor], batch: Batch,
                                   padded: tuple[int, int], expect_empty: bool, box_atol: float,
                                   mask_atol: float) -> None:
    """``export_postprocess`` (run eagerly, masks pasted) gives ``predict``'s detections for the batch's one
    image, from 5 four-dimensional FPN outputs, with boxes inside the image size."""
    image_size = tuple(batch.targets[0].image_size)
    want = head.predict(feats, batch)[0]
    assert (len(want) == 0) == expect_empty
    outputs = head.export_outputs(feats)
    assert len(outputs) == 5 and all(o.dim() == 4 for o in outputs)
    got = exported(head, outputs, image_size, batch.targets[0], padded)
    assert_equal(want, got, box_atol, mask_atol)
    if len(want):
        assert float(got.boxes[:, 2].max()) <= image_size[1] and float(got.boxes[:, 3].max()) <= image_size[0]


class Graph(torch.nn.Module):
    """``(*raw outputs, image_size) -> export_postprocess values`` of a head, for ``torch.export``."""

    def __init__(self, head: torch.nn.Module, padded: tuple[int, int]) -> None:
        super().__init__()
        self.head, self.padded = head, padded

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.head.export_postprocess(args[:-1], args[-1], torch.ones(2), self.padded).values())


def check_pt2_program(head: torch.nn.Module, shape: dict[str, ShapeSpec], padded: tuple[int, int],
                      box_atol: float, mask_atol: float) -> None:
    """One ``torch.export`` program of a segm head run at two image sizes: the full padded one, and 1 x 1 px,
    where every proposal of a level is the same clipped box, so each per-level NMS keeps exactly one
    (torchvision's fake nms kernel, which assumed at least two survivors, made such a program fail)."""
    from lsvr_core.export.postprocess import allow_small_nms_outputs

    allow_small_nms_outputs()
    feats, batch = one_image_case(shape, padded, padded)
    outputs = head.export_outputs(feats)
    program = torch.export.export(Graph(head, padded), (*outputs, torch.tensor(padded)), strict=False).module()
    for size in [padded, (1, 1)]:
        batch.targets[0].image_size = size
        want = head.predict(feats, batch)[0]
        assert len(want) > 0
        with torch.no_grad():
            boxes, scores, labels, roi_masks = program(*outputs, torch.tensor(size))
        got = head.finish_postprocessed(Predictions(boxes, scores, labels, roi_masks=roi_masks), batch.targets[0])
        assert_equal(want, got, box_atol, mask_atol)


class HeadOnly(torch.nn.Module):
    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head


def check_raw_export_refused(head: torch.nn.Module) -> None:
    """A head without ``decode_outputs`` exports only with ``--postprocess``; the error says so."""
    from lsvr_core.export.module import check_exportable, check_postprocessable

    model = HeadOnly(head)
    with pytest.raises(ConfigError, match=rf"{type(head).__name__} cannot be exported without --postprocess: it "
                                          r"has no decode_outputs .*; pass --postprocess"):
        check_exportable(model)
    check_exportable(model, postprocess=True)
    check_postprocessable(model)
