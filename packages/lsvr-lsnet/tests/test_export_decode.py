"""In-graph decoding (``lsvr export --postprocess``, :mod:`lsvr_lsnet.export`) against the eager
:class:`~lsvr_lsnet.postprocess.LSNetPostprocessor` on random head outputs: same detections."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.structures import Batch, Targets
from lsvr_lsnet.criterion import HeadOutputs
from lsvr_lsnet.export import decode_in_graph
from lsvr_lsnet.layouts import task_layout
from lsvr_lsnet.postprocess import LSNetPostprocessor

STRIDES = [8, 16, 32]
SIZES = [(12, 16), (6, 8), (3, 4)]  # a 96 x 128 padded input


def random_outputs(task: str, num_classes: int, seed: int) -> HeadOutputs:
    gen = torch.Generator().manual_seed(seed)
    layout = task_layout(task)
    cls = [torch.randn(1, num_classes, h, w, generator=gen) * 2 - 2 for h, w in SIZES]
    vec = {b.name: [torch.rand(1, 4 * b.num_landmarks, h, w, generator=gen) * 3 for h, w in SIZES]
           for b in layout.branches}
    return HeadOutputs(cls, vec, vec)


@pytest.mark.parametrize("task", ["bbox", "segm", "pose_bbox"])
@pytest.mark.parametrize(("image_size", "nms_pre"), [((70, 100), 1000), ((96, 128), 40), ((33, 60), 25)])
def test_in_graph_decoding_equals_eager(task: str, image_size: tuple[int, int], nms_pre: int) -> None:
    scale = (0.5, 0.25)
    post = LSNetPostprocessor(task_layout(task), nms_pre=nms_pre, score_thr=0.05, nms_iou=0.6, max_per_img=30,
                              pose_min_area=64.0, pad_divisor=32)
    out = random_outputs(task, 3, seed=hash((task, image_size, nms_pre)) % 1000)
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 7, image_size, image_size, scale=scale)
    want = post(out, Batch(torch.zeros(1, 3, 96, 128), [meta]), STRIDES)[0]
    got = decode_in_graph(post, out, STRIDES, torch.tensor(image_size), torch.tensor(scale))
    assert len(want) > 5
    torch.testing.assert_close(got["boxes"], want.boxes)
    torch.testing.assert_close(got["scores"], want.scores)
    assert got["labels"].tolist() == want.labels.tolist()
    if task == "bbox":
        torch.testing.assert_close(got["extreme_points"], want.extras.require("extreme_points"))
    elif task == "segm":
        torch.testing.assert_close(got["contours"], want.contours)
    else:
        torch.testing.assert_close(got["keypoints"], want.keypoints)


def test_few_candidates_still_give_the_top_detections() -> None:
    """With fewer NMS candidates than pairs above the threshold, the graph keeps the best detections of eager
    decoding (a prefix of them) as long as they lie among the candidates."""
    post = LSNetPostprocessor(task_layout("bbox"), nms_pre=1000, score_thr=0.05, nms_iou=0.6, max_per_img=30,
                              pose_min_area=0.0, pad_divisor=32)
    out = random_outputs("bbox", 3, seed=3)
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 7, (96, 128), (96, 128))
    want = post(out, Batch(torch.zeros(1, 3, 96, 128), [meta]), STRIDES)[0]
    got = decode_in_graph(post, out, STRIDES, torch.tensor((96, 128)), torch.ones(2), candidates=60)
    k = len(got["scores"])
    assert 0 < k <= len(want)
    torch.testing.assert_close(got["scores"][:5], want.scores[:5])
