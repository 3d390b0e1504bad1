"""Mask R-CNN export (``lsvr export --postprocess``): the traceable one-image decoding of
:mod:`lsvr_core.export.rcnn` gives exactly eager ``predict``'s detections (oracle: torchvision's RPN and
RoIHeads inference as run by ``MaskRCNNHead.predict``) on a randomly initialised head; the ``torch.export``
program gives them too, including when NMS keeps a single box; raw exports are refused with a hint."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.builtin.mask_rcnn_config import MaskRCNNHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.mask_rcnn import build_mask_rcnn_head
from lsvr_core.structures import Batch, Predictions
from lsvr_core.testing import make_batch

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(32, 2**i) for i in range(2, 7)}
SMALL = dict(representation_size=64, mask_head_channels=16)
H, W = 128, 160  # padded input


def _head(task: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, **kw), SHAPE, 3, task).eval()


def _case(image_size: tuple[int, int]) -> tuple[dict[str, torch.Tensor], Batch]:
    torch.manual_seed(1)
    feats = {f"p{i}": torch.randn(1, 32, -(-H // 2**i), -(-W // 2**i)) for i in range(2, 7)}
    batch = make_batch((H, W), 3)
    batch = Batch(batch.images[:1], batch.targets[:1])
    batch.targets[0].image_size = image_size
    assert batch.image_sizes == [image_size]
    return feats, batch


@torch.no_grad()
def _exported(head, outputs, image_size: tuple[int, int], meta) -> Predictions:
    got = head.export_postprocess(outputs, torch.tensor(image_size), torch.ones(2), (H, W))
    assert list(got)[:3] == ["boxes", "scores", "labels"]
    pred = Predictions(got["boxes"], got["scores"], got["labels"], roi_masks=got.get("roi_masks"))
    return head.finish_postprocessed(pred, meta)


def _assert_equal(want: Predictions, got: Predictions) -> None:
    assert len(want) == len(got)
    torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=1e-4)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=1e-6)
    assert torch.equal(got.labels, want.labels)
    for name in ("masks", "roi_masks"):
        a, b = getattr(want, name), getattr(got, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("task", "kw", "image_size"), [
    ("segm", {"box_score_thresh": 0.0}, (100, 150)),  # masks pasted in the input frame; clipped inside padding
    ("bbox", {}, (128, 160)),
    ("segm", {"box_score_thresh": 0.0, "roi_align_aligned": True, "maxpool_last_level": True,
              "mask_paste_frame": "original", "roi_sampling_ratio": 2}, (97, 160)),
    ("segm", {"box_score_thresh": 0.9}, (128, 160)),  # nothing above the threshold: empty outputs
], ids=["segm-input-frame", "bbox", "segm-mmdet-options", "empty"])
def test_traceable_decoding_equals_predict(task: str, kw: dict, image_size: tuple[int, int]) -> None:
    if kw.get("maxpool_last_level"):
        shape = {k: v for k, v in SHAPE.items() if k != "p6"}
        torch.manual_seed(0)
        head = build_mask_rcnn_head(MaskRCNNHeadConfig(**SMALL, **kw), shape, 3, task).eval()
    else:
        head = _head(task, **kw)
    feats, batch = _case(image_size)
    if kw.get("maxpool_last_level"):
        feats.pop("p6")
    want = head.predict(feats, batch)[0]
    assert (len(want) == 0) == (kw.get("box_score_thresh") == 0.9)
    outputs = head.export_outputs(feats)
    assert len(outputs) == 5 and all(o.dim() == 4 for o in outputs)
    got = _exported(head, outputs, image_size, batch.targets[0])
    _assert_equal(want, got)
    if len(want):
        assert float(got.boxes[:, 2].max()) <= image_size[1] and float(got.boxes[:, 3].max()) <= image_size[0]


class _Graph(torch.nn.Module):
    def __init__(self, head) -> None:
        super().__init__()
        self.head = head

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.head.export_postprocess(args[:-1], args[-1], torch.ones(2), (H, W)).values())


@pytest.mark.slow
def test_pt2_program_equals_predict_also_when_nms_keeps_one_box() -> None:
    """One program run at two image sizes: a full one, and 1 x 1 px, where every proposal of a level is the
    same clipped box, so each per-level NMS keeps exactly one (torchvision's fake nms kernel, which assumes at
    least two survivors, made such a program fail its run-time shape assertion)."""
    from lsvr_core.export.postprocess import allow_small_nms_outputs

    head = _head("segm", box_score_thresh=0.0)
    allow_small_nms_outputs()
    feats, batch = _case((128, 160))
    outputs = head.export_outputs(feats)
    program = torch.export.export(_Graph(head), (*outputs, torch.tensor([128, 160])), strict=False).module()
    for size in [(128, 160), (1, 1)]:
        batch.targets[0].image_size = size
        want = head.predict(feats, batch)[0]
        assert len(want) > 0
        with torch.no_grad():
            boxes, scores, labels, roi_masks = program(*outputs, torch.tensor(size))
        _assert_equal(want, head.finish_postprocessed(Predictions(boxes, scores, labels, roi_masks=roi_masks),
                                                      batch.targets[0]))


class _Model(torch.nn.Module):
    def __init__(self, head) -> None:
        super().__init__()
        self.head = head


def test_raw_export_is_refused_with_a_postprocess_hint() -> None:
    from lsvr_core.export.module import check_exportable, check_postprocessable

    model = _Model(_head("bbox"))
    with pytest.raises(ConfigError, match=r"MaskRCNNHead cannot be exported without --postprocess: it has no "
                                          r"decode_outputs .*; pass --postprocess"):
        check_exportable(model)
    check_exportable(model, postprocess=True)
    check_postprocessable(model)

