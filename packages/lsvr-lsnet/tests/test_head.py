"""The LSNet head: output shapes per task, initialisation, offsets, gradient damping, losses (spec §2-§4)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from lsvr_core.errors import ConfigError
from lsvr_core.plugins import PluginManager
from lsvr_lsnet.branches import sampling_points
from lsvr_lsnet.config import LSNetHeadConfig
from lsvr_lsnet.encoding import encode_cross_targets
from lsvr_lsnet.head import build_lsnet_head
from lsvr_lsnet.layouts import BBOX, SEGM
from lsvr_lsnet.towers import PyramidFusion

sys.path.insert(0, str(Path(__file__).parent))
from lsnet_helpers import batch, features, input_shape  # noqa: E402

torch.set_num_threads(1)
REGISTRY = PluginManager()


def make_head(task: str, conv_module: str = "plain", **kw: object) -> torch.nn.Module:
    cfg = LSNetHeadConfig(feat_channels=16, norm_groups=4, stacked_convs=1, conv_module=conv_module, **kw)
    return build_lsnet_head(cfg, input_shape(16), 1 if task.startswith("pose") else 3, task, registry=REGISTRY)


# (branch name, init channels of the conv, refined channels) per task: §2.2 table
EXPECTED = {
    "bbox": {"bbox": (28, 20)},
    "segm": {"segm": (148, 148)},
    "pose_bbox": {"bbox": (28, 20), "pose": (72, 72)},
    "pose_kbox": {"pose": (72, 72)},
}


@pytest.mark.parametrize("task", list(EXPECTED))
def test_output_shapes_per_task(task: str) -> None:
    head = make_head(task)
    out = head.forward_levels(features(2, 64, 96))
    sizes = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    num_classes = 1 if task.startswith("pose") else 3
    assert [tuple(c.shape) for c in out.cls] == [(2, num_classes, h, w) for h, w in sizes]
    assert set(out.init) == set(EXPECTED[task]) == set(out.refine)
    for name, (init_ch, ref_ch) in EXPECTED[task].items():
        assert head.branches[name].init_out.out_channels == init_ch
        assert [tuple(t.shape) for t in out.init[name]] == [(2, ref_ch, h, w) for h, w in sizes]
        assert [tuple(t.shape) for t in out.refine[name]] == [(2, ref_ch, h, w) for h, w in sizes]
        assert all((t >= 0).all() for t in out.refine[name] + out.init[name])  # Softplus outputs


def test_initialisation() -> None:
    head = make_head("bbox", conv_module="dcn")
    assert head.cls_out.bias.detach().allclose(torch.full((3,), -math.log(99)))
    assert head.branches["bbox"].init_out.bias.abs().max() == 0
    # towers: DCNv2 3x3 weights N(0, 0.01)
    dcn = head.cls_tower[0]
    assert abs(float(dcn.weight.detach().std()) - 0.01) < 0.003
    # pyramid conv: kaiming normal, fan_out = 16 * 9 -> std sqrt(2 / 144)
    assert abs(float(head.cls_fusion.weight.detach().std()) - math.sqrt(2 / 144)) < 0.02


def test_sampling_points_are_the_decoded_landmarks_then_free_points() -> None:
    offsets = torch.tensor([[0.0, -3.0], [-2.0, 0.5], [0.25, 4.0], [5.0, -0.5], [1.0, 1.0]])  # (dx, dy), cells
    s_init = encode_cross_targets(offsets).reshape(1, 20, 1, 1)
    free = torch.arange(8.0).view(1, 8, 1, 1)
    pts = sampling_points(s_init, free, BBOX).flatten().view(9, 2)  # (y, x) per tap
    assert pts[:5].tolist() == offsets.flip(-1).tolist()
    assert pts[5:].flatten().tolist() == list(range(8))
    # segm taps: contour points 0, 5, ..., 35 and the centre
    seg = torch.arange(37 * 2, dtype=torch.float32).view(37, 2) - 30
    pts = sampling_points(encode_cross_targets(seg).reshape(1, 148, 1, 1), torch.zeros(1, 0, 1, 1), SEGM)
    assert pts.flatten().view(9, 2).tolist() == seg[list(SEGM.dcn_index)].flip(-1).tolist()


def test_gradient_damping_scales_offset_gradients_only() -> None:
    x = torch.randn(1, 16, 6, 6)
    grads = {}
    for mul in (1.0, 0.1):
        head = make_head("bbox")
        torch.manual_seed(0)
        for p in head.parameters():
            torch.nn.init.normal_(p, 0, 0.1)
        _, s_init, offset = head.branches["bbox"].stage1(x, gradient_mul=mul)
        offset.sum().backward()
        grads[mul] = head.branches["bbox"].init_out.weight.grad.clone()
    torch.testing.assert_close(grads[0.1], 0.1 * grads[1.0])


def test_offset_scales_intended_and_faithful() -> None:
    sizes = [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
    fixed, faithful = PyramidFusion(4, 1, False), PyramidFusion(4, 1, True)

    def mult(fusion: PyramidFusion, level: int) -> list[float]:
        return [m[0] for _, m in fusion.offset_scales(level, sizes)]

    assert mult(fixed, 0) == [1.0, 0.5, 0.25] and mult(faithful, 0) == [1.0, 0.5, 0.125]
    assert mult(fixed, 2) == [1.0, 2.0, 0.5] and mult(faithful, 2) == [1.0, 2.0, 1.0]
    assert mult(fixed, 4) == [1.0, 2.0, 4.0] and mult(faithful, 4) == [1.0, 2.0, 8.0]
    # scales are ratios of the actual (ceil-rounded) sizes (§11.2)
    odd = [(100, 167), (50, 84), (25, 42), (13, 21), (7, 11)]
    assert fixed.offset_scales(2, odd)[2][0] == (13 / 25, 21 / 42)


@pytest.mark.parametrize(("faithful", "expected"), [(False, [1.0, 1.0, 0.5]), (True, [1.0, 1.0, 0.4375])])
def test_pyramid_fusion_samples_the_landmark_projected_on_each_level(faithful: bool, expected: list[float]) -> None:
    # one-hot features: level l' has a 1 at the cell where a landmark 2 cells right of anchor (2, 2) lands.
    # faithful (§11.1): the 3rd level's offset is scaled by 0.5 * 0.25, so column 0.75 + 0.125 instead of
    # 0.75 + 0.25: bilinear weight 0.875 (column) x 0.5 (row) = 0.4375
    fusion = PyramidFusion(1, 1, faithful_offset_scaling=faithful)
    with torch.no_grad():
        fusion.weight.zero_()
        fusion.weight[0, 0, 1, 2] = 1.0  # only tap k = 5 (row 1, col 2) contributes
    feats = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    offset = torch.zeros(1, 18, 8, 8)
    offset[:, 11] = 1.0  # tap 5 x: base 1 + 1 = landmark at +2 cells
    captured = []
    import lsvr_lsnet.towers as towers

    real = towers.pyramid_deform_conv2d

    def spy(feature, off, weight, scale_hw, bias=None):  # noqa: ANN001, ANN202
        out = real(feature, off, weight, scale_hw, bias)
        captured.append(out[0, 0, 2, 2].item())  # anchor cell (2, 2) -> landmark x = 4 on the base level
        return out

    feats[0][0, 0, 2, 4] = 1.0  # base level: (2, 2) + (0, 2)
    feats[1][0, 0, 1, 2] = 1.0  # half resolution: (1, 2)
    feats[2][0, 0, 0, 1] = 1.0  # quarter resolution: (0.5, 1) -> bilinear 0.5
    towers.pyramid_deform_conv2d = spy
    try:
        fusion(feats, 0, offset)
    finally:
        towers.pyramid_deform_conv2d = real
    assert captured == pytest.approx(expected)


@pytest.mark.parametrize(("task", "conv_module"), [(t, "plain") for t in EXPECTED] + [("bbox", "dcn")])
def test_training_losses_are_finite_and_reach_every_parameter(task: str, conv_module: str) -> None:
    head = make_head(task, conv_module)
    losses = head(features(2, 64, 64), batch())
    keys = {"loss_cls", "loss_pts_init", "loss_pts_refine"} | ({"loss_box_init", "loss_box_refine"}
                                                               if task == "pose_bbox" else set())
    assert set(losses) == keys
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None]
    assert not missing


def test_all_crowd_image_does_not_crash() -> None:
    b = batch()
    b.targets[1].iscrowd = torch.ones(1, dtype=torch.bool)
    b.targets[0].iscrowd = torch.ones(2, dtype=torch.bool)
    losses = make_head("segm")(features(2, 64, 64), b)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_pts_init"].item() == 0.0


def test_rejects_bad_configs() -> None:
    with pytest.raises(ConfigError, match="task 'keypoints'"):
        make_head("keypoints")
    with pytest.raises(ConfigError, match="p8"):
        build_lsnet_head(LSNetHeadConfig(in_levels=("p6", "p7", "p8")), input_shape(16), 3, "bbox")
    with pytest.raises(ConfigError, match="norm_groups"):
        build_lsnet_head(LSNetHeadConfig(feat_channels=18, norm_groups=4), input_shape(16), 3, "bbox")


@pytest.mark.parametrize("task", ["bbox", "pose_kbox"])
def test_predict_batch_of_two_equals_one_by_one(task: str) -> None:
    # test-time batches > 1 (the reference's pose path only handled 1, §11.8): each image's predictions depend
    # on its own features and image size only
    torch.manual_seed(0)
    head = make_head(task, score_thr=0.0).eval()
    for p in head.parameters():
        torch.nn.init.normal_(p, 0, 0.05)
    feats, b = features(2, 64, 64), batch()
    together = head.predict(feats, b)
    for i in range(2):
        alone = head.predict({k: v[i:i + 1] for k, v in feats.items()}, type(b)(b.images[i:i + 1], [b.targets[i]]))[0]
        assert len(alone) == len(together[i]) > 0
        torch.testing.assert_close(alone.boxes, together[i].boxes)
        torch.testing.assert_close(alone.scores, together[i].scores)
        assert together[i].image_id == b.targets[i].image_id
    # image 1 is 56 x 48: its boxes stay inside it
    assert (together[1].boxes[:, 2] <= 48).all() and (together[1].boxes[:, 3] <= 56).all()
