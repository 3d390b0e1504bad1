"""Declared per-instance target fields: each geometry kind under resize / flip / crop against hand-computed
numbers, the keypoint left/right swap, Predictions.to_original, the collate, and clear errors."""

from __future__ import annotations

import pytest
import torch

from lsvr_core.api import (
    ConfigError,
    DataError,
    ExtraFields,
    Predictions,
    TargetFieldSpec,
    Targets,
    collate,
    field_affine,
    field_clip,
    field_hflip,
    field_select,
    resolve_target_fields,
)
from lsvr_core.plugins import PluginManager

POINTS = TargetFieldSpec("pts", "points", flip_perm=(0, 2, 1))  # point 0 central, 1 / 2 a left/right pair
POINTS_VIS = TargetFieldSpec("kps", "points", flip_perm=(0, 2, 1))
BOXES = TargetFieldSpec("aux_boxes", "boxes")
POLYS = TargetFieldSpec("outline", "polygons")
SCALAR = TargetFieldSpec("difficulty", "scalar", dtype="int64")


def test_points_resize_flip_crop_hand_computed() -> None:
    p = torch.tensor([[[10.0, 4.0], [2.0, 6.0], [18.0, 6.0]]])  # (1, 3, 2)
    # resize by (sx, sy) = (2, 0.5)
    assert field_affine(POINTS, p, 2.0, 0.5).tolist() == [[[20.0, 2.0], [4.0, 3.0], [36.0, 3.0]]]
    # flip in a 40 px wide image: x -> 40 - x, then slot k takes point flip_perm[k] (left/right swap)
    flipped = field_hflip(POINTS, p, 40)
    assert flipped.tolist() == [[[30.0, 4.0], [22.0, 6.0], [38.0, 6.0]]]
    # without the permutation only the coordinates move
    assert field_hflip(POINTS, p, 40, permute=False).tolist() == [[[30.0, 4.0], [38.0, 6.0], [22.0, 6.0]]]
    # crop at (x0, y0) = (5, 3) to 10 x 10: translate by (-5, -3), then clamp to [0, 10] x [0, 10]
    cropped = field_clip(POINTS, field_affine(POINTS, p, 1.0, 1.0, -5.0, -3.0), 10, 10)
    assert cropped.tolist() == [[[5.0, 1.0], [0.0, 3.0], [10.0, 3.0]]]


def test_visible_points_keep_unlabelled_at_zero_and_lose_points_outside_a_crop() -> None:
    k = torch.tensor([[[10.0, 4.0, 2.0], [0.0, 0.0, 0.0], [18.0, 6.0, 1.0]]])
    assert field_affine(POINTS_VIS, k, 2.0, 2.0, 1.0, 1.0).tolist() == [[[21.0, 9.0, 2.0], [0.0, 0.0, 0.0],
                                                                          [37.0, 13.0, 1.0]]]
    # flip of a 20 px image: the unlabelled "left" point (slot 1) swaps with the labelled "right" one (slot 2)
    assert field_hflip(POINTS_VIS, k, 20).tolist() == [[[10.0, 4.0, 2.0], [2.0, 6.0, 1.0], [0.0, 0.0, 0.0]]]
    # a 12 x 12 crop at the origin keeps (10, 4); (18, 6) falls outside and becomes unlabelled at (0, 0)
    assert field_clip(POINTS_VIS, k, 12, 12).tolist() == [[[10.0, 4.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


def test_boxes_resize_flip_crop_hand_computed() -> None:
    b = torch.tensor([[2.0, 4.0, 12.0, 8.0]])
    assert field_affine(BOXES, b, 3.0, 0.5, 1.0, 0.0).tolist() == [[7.0, 2.0, 37.0, 4.0]]
    assert field_hflip(BOXES, b, 20).tolist() == [[8.0, 4.0, 18.0, 8.0]]  # x1 = 20 - 12, x2 = 20 - 2
    assert field_clip(BOXES, field_affine(BOXES, b, 1.0, 1.0, -4.0, -2.0), 5, 6).tolist() == [[0.0, 2.0, 6.0, 5.0]]


def test_polygons_resize_flip_crop_hand_computed() -> None:
    poly = [[torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 6.0]])], []]  # instance 2 has no polygon
    assert field_affine(POLYS, poly, 0.5, 2.0)[0][0].tolist() == [[0.0, 0.0], [5.0, 0.0], [5.0, 12.0]]
    flipped = field_hflip(POLYS, poly, 16)
    assert flipped[0][0].tolist() == [[16.0, 0.0], [6.0, 0.0], [6.0, 6.0]] and flipped[1] == []
    assert field_clip(POLYS, poly, 4, 8)[0][0].tolist() == [[0.0, 0.0], [8.0, 0.0], [8.0, 4.0]]
    assert len(field_select(POLYS, poly, torch.tensor([False, True]))) == 1


def test_scalars_ignore_geometry_but_follow_selection() -> None:
    s = torch.tensor([3, 1, 2])
    for out in (field_affine(SCALAR, s, 2.0, 2.0, 5.0, 5.0), field_hflip(SCALAR, s, 9), field_clip(SCALAR, s, 1, 1)):
        assert out.tolist() == [3, 1, 2]
    assert field_select(SCALAR, s, torch.tensor([True, False, True])).tolist() == [3, 2]


def _targets() -> Targets:
    t = Targets(torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 10.0, 8.0]]), torch.tensor([0, 1]), 5, (10, 20),
                (20, 40), scale=(2.0, 2.0), flipped=True)
    t.extras.add(POINTS, torch.tensor([[[2.0, 2.0], [0.0, 0.0], [4.0, 4.0]], [[7.0, 6.0], [4.0, 8.0], [10.0, 4.0]]]))
    t.extras.add(SCALAR, torch.tensor([1.0, 0.0]))  # cast to the declared int64
    return t


def test_extras_container_select_to_and_typed_errors() -> None:
    t = _targets()
    assert t.extra("difficulty").dtype == torch.int64
    sub = t.select(torch.tensor([False, True]))
    assert sub.extra("pts").tolist() == [[[7.0, 6.0], [4.0, 8.0], [10.0, 4.0]]]
    assert sub.extra("difficulty").tolist() == [0]
    assert t.to("cpu").extras.names() == ["pts", "difficulty"]
    with pytest.raises(DataError, match=r"image 5: no per-instance field 'contours'.*present: pts, difficulty"):
        t.extra("contours")
    with pytest.raises(DataError, match=r"'pts' \(kind points\) must be \(N, K, 2\) or \(N, K, 3\), got \(2, 4\)"):
        ExtraFields().add(POINTS, torch.zeros(2, 4))


def test_predictions_to_original_maps_extras_by_kind() -> None:
    meta = _targets()  # image_size (20, 40), scale 2, flipped
    pred = Predictions(torch.tensor([[10.0, 2.0, 30.0, 12.0]]), torch.tensor([0.9]), torch.tensor([0]))
    pred.extras.add(POINTS, torch.tensor([[[38.0, 4.0], [30.0, 10.0], [20.0, 2.0]]]))
    back = pred.to_original(meta)
    # x -> (40 - x) / 2, y -> y / 2, slots kept (like keypoints, un-mirroring slots is the head's business)
    assert back.extras.get("pts").tolist() == [[[1.0, 2.0], [5.0, 5.0], [10.0, 1.0]]]
    assert back.boxes.tolist() == [[5.0, 1.0, 15.0, 6.0]]


def test_collate_checks_instance_counts() -> None:
    t = _targets()
    batch = collate([(torch.zeros(3, 20, 40), t)], size_divisor=32)
    assert batch.targets[0].extra("pts").shape == (2, 3, 2)
    t.extras.add(SCALAR, torch.tensor([1]))
    with pytest.raises(DataError, match="image 5: target field 'difficulty' has 1 instances, the boxes 2"):
        collate([(torch.zeros(3, 20, 40), t)])


def test_spec_validation_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="kind 'curve' is not one of points, boxes, polygons, scalar"):
        TargetFieldSpec("x", "curve")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not a permutation"):
        TargetFieldSpec("x", "points", flip_perm=(0, 0))
    with pytest.raises(ValueError, match="applies to kind 'points' only"):
        TargetFieldSpec("x", "boxes", flip_perm=(0,))
    declared = {"pts": POINTS}
    assert resolve_target_fields(["pts"], declared) == [POINTS]
    msg = r"data.train extra_fields: unknown target field 'ptss'; declared fields: pts \(a plugin declares"
    with pytest.raises(ConfigError, match=msg):
        resolve_target_fields(["ptss"], declared, where="data.train extra_fields")


def test_plugins_declare_fields_and_duplicates_are_errors(tmp_path) -> None:
    code = ('from lsvr_core.api import TargetFieldSpec, hookimpl\n'
            '@hookimpl\ndef lsvr_target_fields():\n    return [TargetFieldSpec("{name}", "scalar")]\n')
    (tmp_path / "one.py").write_text(code.format(name="my_flag"))
    manager = PluginManager([tmp_path / "one.py"], entry_points=False)
    spec = manager.target_fields()["my_flag"]
    assert spec.plugin == "one" and spec.kind == "scalar"
    (tmp_path / "two.py").write_text(code.format(name="my_flag"))
    with pytest.raises(Exception, match="target field 'my_flag' is declared twice: by .*'one'.* and by .*'two'"):
        PluginManager([tmp_path / "one.py", tmp_path / "two.py"], entry_points=False)
