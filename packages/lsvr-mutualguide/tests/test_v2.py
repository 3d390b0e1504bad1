"""MutualGuide v2 (HEAD, spec §7): CSPDarknet, the ``pafpn_v2`` neck and the tower head pass conformance; the
reference's state-dict names and shapes (``data/mutualguide_v2_state_dicts.txt.gz``) load strictly through the
``mutualguide-v2`` converter; anchors and the class-agnostic inference rule."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from lsvr_core.api import ConversionError, ShapeSpec
from lsvr_core.models.detector import Detector
from lsvr_core.structures import Targets
from lsvr_core.testing.suites import check_backbone, check_head, check_neck
from lsvr_mutualguide import config as c
from lsvr_mutualguide.anchors import generate_anchors
from lsvr_mutualguide.convert import convert_mutualguide_v2
from lsvr_mutualguide.cspdarknet import build_cspdarknet
from lsvr_mutualguide.head import MutualGuideHead
from lsvr_mutualguide.neck_v2 import build_pafpn_v2

torch.set_num_threads(1)
P = "lsvr_mutualguide"
FACTS = Path(__file__).parent / "data" / "mutualguide_v2_state_dicts.txt.gz"


def reference_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    cases: dict[str, dict[str, tuple[int, ...]]] = {}
    current: dict[str, tuple[int, ...]] = {}
    for line in gzip.decompress(FACTS.read_bytes()).decode().splitlines():
        if line.startswith("# ") and " " not in line[2:]:
            current = cases.setdefault(line[2:], {})
        elif not line.startswith("#"):
            name, shape = line.split(" ")
            current[name] = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
    return cases


@pytest.mark.parametrize("width,channels", [("0.5", (256, 512)), ("0.75", (384, 768))])
def test_cspdarknet_conformance(width: str, channels: tuple[int, int]) -> None:
    backbone = check_backbone(f"{P}.cspdarknet:build_cspdarknet", c.CSPDarknetConfig(width=width), image_size=(64, 96))
    assert backbone.output_shape() == {"c4": ShapeSpec(channels[0], 16), "c5": ShapeSpec(channels[1], 32)}
    assert isinstance(backbone.stem.conv.act, torch.nn.SiLU)


def test_pafpn_v2_conformance() -> None:
    shape = {"c4": ShapeSpec(24, 16), "c5": ShapeSpec(40, 32)}
    neck = check_neck(f"{P}.neck_v2:build_pafpn_v2", c.PAFPNV2NeckConfig(out_channels=16), shape,
                      image_size=(128, 128))
    assert neck.output_shape() == {"p4": ShapeSpec(16, 16), "p5": ShapeSpec(16, 32), "p6": ShapeSpec(16, 64)}


def test_tower_head_conformance() -> None:
    cfg = c.MutualGuideHeadConfig(anchor_base=48.0, tower=True, nms="agnostic",
                                  assigner=c.MutualGuideAssignerConfig(variant="v2"),
                                  loss_cls=c.VarifocalPolyLossConfig(), loss_iou=c.SIoULossConfig())
    shape = {f"p{i}": ShapeSpec(16, 2**i) for i in (4, 5, 6)}
    head = check_head(f"{P}.head:build_mutual_guide_head", cfg, shape, image_size=(128, 128))
    assert isinstance(head.loc[0][0].act, torch.nn.SiLU) and head.loc[0][1].kernel_size == (1, 1)


def test_v2_anchor_count_at_640() -> None:
    """§7 / §10 (d): 3 levels at strides 16, 32, 64 with base 48 px: 12,600 anchors."""
    anchors = generate_anchors([(40, 40), (20, 20), (10, 10)], (640, 640), 48.0)
    assert anchors.shape == (12600, 4)
    assert torch.allclose(anchors[0], torch.tensor([8.0, 8.0, 48.0, 48.0]))


def test_agnostic_inference_keeps_every_class_of_a_kept_box() -> None:
    """§7: NMS over classes on the best score (the second box overlaps the first: suppressed whatever its class);
    a kept box yields one detection per class above 0.05; no top-N cap."""
    head = MutualGuideHead({"p4": ShapeSpec(8, 16)}, 3, None, None, None, score_thresh=0.05, nms="agnostic",
                           detections_per_img=1)
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 70, 90], [80, 80, 90, 90]])
    scores = torch.tensor([[0.9, 0.2, 0.01], [0.1, 0.8, 0.0], [0.04, 0.5, 0.3], [0.05, 0.02, 0.01]])
    meta = Targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 1, (100, 100), (100, 100))
    pred = head._predict_image(boxes, scores, meta)
    got = sorted(zip(pred.labels.tolist(), [round(v, 2) for v in pred.scores.tolist()], strict=True))
    assert got == [(0, 0.9), (1, 0.2), (1, 0.5), (2, 0.3)]


def v2_model(width: str) -> Detector:
    backbone = build_cspdarknet(c.CSPDarknetConfig(width=width))
    neck = build_pafpn_v2(c.PAFPNV2NeckConfig(), backbone.output_shape())
    head = MutualGuideHead(neck.output_shape(), 80, None, None, None, tower=True)
    return Detector(backbone, neck, head, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375))


def check_width(width: str) -> None:
    shapes = reference_shapes()[f"cspdarknet{width}_pafpn_640_coco"]
    state = {k: torch.zeros(s, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
             for k, s in shapes.items()}
    converted = convert_mutualguide_v2(state)
    v2_model(width).load_state_dict(converted, strict=True)
    assert len(converted) == len(state) - sum(k.startswith("dist.") for k in state)


def test_v2_reference_names_load_strictly_cspdarknet_05() -> None:
    check_width("0.5")


@pytest.mark.slow
def test_v2_reference_names_load_strictly_every_width() -> None:
    for width in ("0.75", "1.0"):
        check_width(width)


def test_v2_converter_lists_unmapped_keys() -> None:
    with pytest.raises(ConversionError, match="2 unmapped keys: teacher.x, loc.0.2.weight"):
        convert_mutualguide_v2({"teacher.x": torch.zeros(1), "loc.0.2.weight": torch.zeros(1)})
