"""Landmark geometry against hand-computed cases, an independent restatement of the reference rule, and
every coco_mini instance (LSNet spec §7.1, §7.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsvr_data.landmarks import (
    CONTOUR_FLIP_PERM,
    EXTREME_FLIP_PERM,
    KEYPOINT_FLIP_PAIRS,
    KEYPOINT_FLIP_PERM,
    contour_36,
    extreme_points,
    extreme_points_from_mask,
    orient_and_start,
    signed_area,
    uniform_resample,
)


def reference_extremes(pts: np.ndarray) -> np.ndarray:
    """The spec §7.1 rule written independently: pad one point each side, grow runs from the first extreme."""
    x0, y0, x1, y1 = pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()
    p = np.vstack([pts[-1], pts, pts[0]])
    out = []
    for axis, pick, band in ((1, np.argmin, 0.02 * (y1 - y0 + 1)), (0, np.argmin, 0.02 * (x1 - x0 + 1)),
                             (1, np.argmax, 0.02 * (y1 - y0 + 1)), (0, np.argmax, 0.02 * (x1 - x0 + 1))):
        s = int(pick(p[:, axis]))
        members = {s}
        for step in (1, -1):
            i = s + step
            while 0 <= i < len(p) and abs(p[i, axis] - p[s, axis]) <= band:
                members.add(i)
                i += step
        other = p[sorted(members), 1 - axis]
        mid = np.floor((other.max() + other.min()) / 2)
        out.append((mid, p[s, 1]) if axis == 1 else (p[s, 0], mid))
    return np.array([out[0], out[1], out[2], out[3]], dtype=np.float32)


def test_extreme_points_hand_cases() -> None:
    diamond = np.array([[10, 0], [20, 10], [10, 20], [0, 10]], dtype=float)
    np.testing.assert_array_equal(extreme_points(diamond), [[10, 0], [0, 10], [10, 20], [20, 10]])
    # flat top from x=2 to x=9: top x = floor((9 + 2) / 2) = 5; a 0.3 px dip stays inside the 2 % band
    poly = np.array([[2, 0], [5, 0.3], [9, 0], [9, 20], [0, 20], [0, 5]], dtype=float)
    ep = extreme_points(poly)
    assert tuple(ep[0]) == (5.0, 0.0)
    # left: the first minimum of the padded sequence is the wrapped copy of (0, 5) at position 0; its run cannot
    # reach (0, 20) (the reference pads by one point only), so y = 5
    assert tuple(ep[1]) == (0.0, 5.0)


def test_extreme_points_from_mask_uses_pixels() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:8, 3:9] = 1  # rows 2..7, cols 3..8
    # row-major pixels: top = middle of row 2; left = first pixel of column 3; bottom and right both start at the
    # wrapped copy of the last pixel (8, 7), whose run holds only itself (the reference's behaviour on RLE)
    np.testing.assert_array_equal(extreme_points_from_mask(mask), [[5, 2], [3, 2], [8, 7], [8, 7]])


def test_uniform_resample_square() -> None:
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)
    pts = uniform_resample(square, 40)
    assert pts.shape == (40, 2)
    steps = np.linalg.norm(np.roll(pts, -1, 0) - pts, axis=1)
    np.testing.assert_allclose(steps, 1.0)
    np.testing.assert_allclose(pts[0], [0, 0])


def test_uniform_resample_more_vertices_keeps_longest_edges() -> None:
    ring = np.array([[0, 0], [5, 0], [5.1, 0], [10, 0], [10, 10], [0, 10]], dtype=float)  # edge 1->2 shortest
    np.testing.assert_array_equal(uniform_resample(ring, 5), ring[[0, 2, 3, 4, 5]])


def test_contour_orientation_and_start_point() -> None:
    # clockwise on screen (positive shoelace), starting far from the top
    square = np.array([[10, 10], [0, 10], [0, 0], [10, 0]], dtype=float)
    assert signed_area(square) > 0
    c = contour_36([square], np.array([0, 0, 10, 10]))
    assert c.shape == (36, 2) and signed_area(c) < 0  # counter-clockwise on screen
    # 9 points per side, 10/9 px apart: the top side holds x = 0, 1.11, ..., 8.89; the start is the point nearest
    # (x-centre, y_min) = (5, 0): 4.44 and 5.56 tie, the first in counter-clockwise order wins
    d = np.hypot(c[:, 0] - 5, c[:, 1])
    assert c[0][1] == 0 and d[0] == d.min() and abs(c[0][0] - 5) < 0.6
    # the next point moves left along the top edge (counter-clockwise on screen with y down)
    assert c[1][0] < c[0][0] and c[1][1] == 0


def test_contour_falls_back_to_box_and_largest_component() -> None:
    tiny = np.array([[0, 0], [1, 0], [1, 1]], dtype=float)  # area 0.5 <= 5: dropped
    c = contour_36([tiny], np.array([2, 3, 12, 8]))
    np.testing.assert_allclose([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()], [2, 3, 12, 8], atol=1e-5)
    small = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=float)
    big = small * 5 + 50
    c = contour_36([small, big], np.array([0, 0, 70, 70]))
    assert c[:, 0].min() >= 50


def test_orient_and_start_is_idempotent() -> None:
    ring = uniform_resample(np.array([[3, 1], [9, 4], [7, 12], [1, 8]], dtype=float), 36)
    once = orient_and_start(ring)
    np.testing.assert_array_equal(orient_and_start(once), once)


def test_flip_permutations_are_involutions() -> None:
    for perm in (KEYPOINT_FLIP_PERM, EXTREME_FLIP_PERM, CONTOUR_FLIP_PERM):
        perm = np.array(perm)
        np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
    assert KEYPOINT_FLIP_PAIRS[0] == (1, 2) and KEYPOINT_FLIP_PAIRS[-1] == (15, 16) and len(KEYPOINT_FLIP_PAIRS) == 8


def _point_to_polygon(p: np.ndarray, comps: list[np.ndarray]) -> float:
    a = np.concatenate(comps)
    b = np.concatenate([np.roll(c, -1, 0) for c in comps])
    ab = b - a
    t = np.clip(((p - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
    return float(np.linalg.norm(a + t[:, None] * ab - p, axis=1).min())


@pytest.mark.parametrize("split", ["val2017", "train2017"])
def test_coco_mini_landmarks(coco_mini: Path, split: str) -> None:
    data = json.loads((coco_mini / "annotations" / f"instances_{split}.json").read_text())
    checked = 0
    for ann in data["annotations"]:
        if ann["iscrowd"]:
            continue
        comps = [np.asarray(p, float).reshape(-1, 2) for p in ann["segmentation"]]
        pts = np.concatenate(comps)
        h, w = np.ptp(pts[:, 1]) + 1, np.ptp(pts[:, 0]) + 1
        ep = extreme_points(comps)
        if len(comps) == 1:
            np.testing.assert_array_equal(ep, reference_extremes(pts))
        # on the polygon: within the 2 % band (+1 px for the floor) of its boundary
        for k, p in enumerate(ep):
            band = 0.02 * (h if k in (0, 2) else w)
            assert _point_to_polygon(p, comps) <= band + 1, (ann["id"], k, p)
        # inside its box (the floor may move a point by < 1 px left/up)
        x, y, bw, bh = ann["bbox"]
        assert (ep[:, 0] >= np.floor(x) - 1e-3).all() and (ep[:, 0] <= x + bw + 1e-3).all(), ann["id"]
        assert (ep[:, 1] >= np.floor(y) - 1e-3).all() and (ep[:, 1] <= y + bh + 1e-3).all(), ann["id"]
        # exact extreme coordinates
        assert ep[0, 1] == np.float32(pts[:, 1].min()) and ep[2, 1] == np.float32(pts[:, 1].max())
        # 36-point contour: counter-clockwise on screen, starting nearest the top-centre of its box
        c = contour_36(comps, np.array([x, y, x + bw, y + bh]))
        assert c.shape == (36, 2) and np.isfinite(c).all()
        assert signed_area(c.astype(np.float64)) <= 0, ann["id"]
        d = (c[:, 0] - (c[:, 0].min() + c[:, 0].max()) / 2) ** 2 + (c[:, 1] - c[:, 1].min()) ** 2
        assert d[0] == d.min(), ann["id"]
        checked += 1
    assert checked == {"val2017": 619, "train2017": 731}[split]
