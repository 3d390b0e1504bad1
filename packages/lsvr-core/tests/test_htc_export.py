"""HTC export (``lsvr export --postprocess``): the traceable one-image cascade of :mod:`lsvr_core.export.htc`
gives eager ``HTCHead.predict``'s detections and masks (oracle: the eager cascade with torchvision's RPN and
``batched_nms``) on a randomly initialised head, bbox and segm, with and without the semantic branch; the
``torch.export`` program gives them too; raw exports are refused with a ``--postprocess`` hint."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.builtin.htc_config import HTCHeadConfig
from lsvr_core.contracts import ShapeSpec
from lsvr_core.errors import ConfigError
from lsvr_core.models.htc.head import build_htc_head
from lsvr_core.structures import Batch, Predictions
from lsvr_core.testing import make_batch

torch.set_num_threads(1)
SHAPE = {f"p{i}": ShapeSpec(32, 2**i) for i in range(2, 6)}  # P6 max-pooled in the head (the default)
SMALL = dict(representation_size=32, mask_head_channels=8, semantic_classes=5, semantic_convs=1,
             rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=200)
H, W = 96, 128  # padded input


def _head(task: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_htc_head(HTCHeadConfig(**{**SMALL, **kw}), SHAPE, 3, task).eval()


def _case(image_size: tuple[int, int]) -> tuple[dict[str, torch.Tensor], Batch]:
    torch.manual_seed(1)
    feats = {f"p{i}": torch.randn(1, 32, -(-H // 2**i), -(-W // 2**i)) for i in range(2, 6)}
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


def _assert_equal(want: Predictions, got: Predictions) -> float:
    """Same detections in the same order; boxes within 1e-3 px, masks within 1e-3. Returns the largest box
    difference (px)."""
    assert len(want) == len(got)
    torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=1e-6)
    assert torch.equal(got.labels, want.labels)
    for name in ("masks", "roi_masks"):
        a, b = getattr(want, name), getattr(got, name)
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, rtol=0, atol=1e-3)
    return float((got.boxes - want.boxes).abs().max()) if len(want) else 0.0


@pytest.mark.parametrize(("task", "kw", "image_size"), [
    ("segm", {}, (80, 110)),  # semantic branch; masks pasted in the input frame; clipped inside the padding
    ("segm", {"with_semantic": False, "mask_paste_frame": "original"}, (96, 128)),
    ("bbox", {}, (96, 128)),
    ("bbox", {"with_semantic": False, "box_score_thresh": 0.251}, (70, 128)),  # the threshold cuts
    ("segm", {"box_score_thresh": 0.9}, (96, 128)),  # nothing above the threshold: empty outputs
    # 648 proposals x 3 classes > 1000 candidates: eager batched_nms loops over classes, the graph offsets them
    ("bbox", {"with_semantic": False, "rpn_pre_nms_top_n_test": 1000, "rpn_post_nms_top_n_test": 1000,
              "box_score_thresh": 0.0}, (96, 128)),
], ids=["segm-semantic", "segm-original-frame", "bbox-semantic", "bbox", "empty", "bbox-over-1000-candidates"])
def test_traceable_cascade_equals_predict(task: str, kw: dict, image_size: tuple[int, int]) -> None:
    head = _head(task, **kw)
    feats, batch = _case(image_size)
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
def test_pt2_program_equals_predict_with_semantic_branch_and_masks() -> None:
    """One ``torch.export`` program of the segm head with the semantic branch, run at two image sizes: a full
    one, and 1 x 1 px, where every proposal of a level is the same clipped box (NMS keeps one per level)."""
    from lsvr_core.export.postprocess import allow_small_nms_outputs

    head = _head("segm")
    allow_small_nms_outputs()
    feats, batch = _case((96, 128))
    outputs = head.export_outputs(feats)
    program = torch.export.export(_Graph(head), (*outputs, torch.tensor([96, 128])), strict=False).module()
    for size in [(96, 128), (1, 1)]:
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
    with pytest.raises(ConfigError, match=r"HTCHead cannot be exported without --postprocess: it has no "
                                          r"decode_outputs .*; pass --postprocess"):
        check_exportable(model)
    check_exportable(model, postprocess=True)
    check_postprocessable(model)
