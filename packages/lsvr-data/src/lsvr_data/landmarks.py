"""Landmark geometry: extreme points, 36-point contours and keypoint flip pairs (numpy, original frame).

Source: LSNet spec §7.1 (extreme points, ExtremeNet's 2 % band rule), §7.3 (contour resampling, orientation,
start point, keep-orientation flip, keypoint flip pairs), §1 (landmark order).
Coordinates are xy pixels; "clockwise"/"counter-clockwise" are as seen on screen (y down).
"""

from __future__ import annotations

import numpy as np

NUM_CONTOUR_POINTS = 36
CONTOUR_OVERSAMPLE = 10  # 36 * 10 = 360 points resampled, every 10th kept
EXTREME_BAND = 0.02  # 2 % of the object height (width) around the extreme coordinate

# COCO person keypoints: 0 nose, then (left, right) pairs eye, ear, shoulder, elbow, wrist, hip, knee, ankle.
KEYPOINT_FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple((i, i + 1) for i in range(1, 17, 2))
KEYPOINT_FLIP_PERM: tuple[int, ...] = (0,) + tuple(j for i in range(1, 17, 2) for j in (i + 1, i))
EXTREME_FLIP_PERM: tuple[int, ...] = (0, 3, 2, 1)  # (top, left, bottom, right) -> swap left/right
# Reverse a closed ring but keep point 0 first: [0, 35, 34, ..., 1].
CONTOUR_FLIP_PERM: tuple[int, ...] = (0,) + tuple(range(NUM_CONTOUR_POINTS - 1, 0, -1))


def _band_run(coord: np.ndarray, seed: int, limit: float, toward_min: bool) -> list[int]:
    """Indices of the run of consecutive entries around ``seed`` whose ``coord`` stays within ``limit`` of it."""
    ref = coord[seed]

    def inside(i: int) -> bool:
        return (coord[i] - ref if toward_min else ref - coord[i]) <= limit

    run = [seed]
    i = seed + 1
    while i < len(coord) and inside(i):
        run.append(i)
        i += 1
    i = seed - 1
    while i >= 0 and inside(i):
        run.append(i)
        i -= 1
    return run


def extreme_points(components: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """ExtremeNet's extreme points of a polygon (its components) or of mask pixels in row-major order.

    Top: y = min y over all points; x = floor((max x + min x) / 2) over the run of consecutive points around
    the first arg-min whose y lies within 2 % of the height ``h = max y - min y + 1`` of the minimum. The run
    walks the component holding the first arg-min (file order), padded by one point at each end cyclically. Bottom,
    left and right likewise (left/right use x-runs within 2 % of the width).

    Deviation: the reference concatenates all components into one sequence, so a run may jump from one
    component to the next and give a point off the polygon (coco_mini annotation 1254568: 6.3 px off); here
    the run stays on one component. For single-component polygons the result is the reference's.

    Args:
        components: (P, 2) xy pixels, or a list of such arrays (polygon components), P >= 1.
    Returns:
        (4, 2) float32 (top, left, bottom, right) xy pixels.
    Source: LSNet spec §7.1 (reference ``tools/gen_coco_lsvr.py`` L21-78).
    """
    comps = [np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in
             (components if isinstance(components, list) else [components])]
    comps = [c for c in comps if len(c)]
    pts = np.concatenate(comps, axis=0)
    owner = np.concatenate([np.full(len(c), k) for k, c in enumerate(comps)])
    x_min, y_min = pts.min(axis=0)
    x_max, y_max = pts.max(axis=0)
    band_w = EXTREME_BAND * (x_max - x_min + 1)
    band_h = EXTREME_BAND * (y_max - y_min + 1)

    def run_mid(axis: int, seed: int, band: float, toward_min: bool) -> float:
        k = owner[seed]
        comp = comps[k]
        padded = np.concatenate([comp[-1:], comp, comp[:1]], axis=0)
        values = padded[:, axis]
        # first extreme of the padded sequence, as the reference does (for one component: identical)
        run = _band_run(values, int(np.argmin(values) if toward_min else np.argmax(values)), band, toward_min)
        other = padded[run, 1 - axis]
        return float(np.floor((other.max() + other.min()) / 2))

    top = (run_mid(1, int(np.argmin(pts[:, 1])), band_h, True), y_min)
    bottom = (run_mid(1, int(np.argmax(pts[:, 1])), band_h, False), y_max)
    left = (x_min, run_mid(0, int(np.argmin(pts[:, 0])), band_w, True))
    right = (x_max, run_mid(0, int(np.argmax(pts[:, 0])), band_w, False))
    return np.array([top, left, bottom, right], dtype=np.float32)


def extreme_points_from_mask(mask: np.ndarray) -> np.ndarray:
    """Extreme points of a binary mask (H, W) from its foreground pixels in row-major order (spec §7.1).

    Raises:
        ValueError: the mask is empty.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask has no extreme points")
    return extreme_points(np.stack([xs, ys], axis=1))


def signed_area(ring: np.ndarray) -> float:
    """Shoelace signed area of a closed ring (P, 2); > 0 means clockwise on screen (y down)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def uniform_resample(ring: np.ndarray, num: int) -> np.ndarray:
    """Deep Snake's ``uniformsample``: ``num`` points along a closed ring.

    More vertices than ``num``: keep the start vertices of the ``num`` longest edges, in ring order.
    Otherwise each edge gets round(len / perimeter * num) points (at least 1; the rounding surplus is taken
    from, or the deficit given to, the longest edges), linearly interpolated from the edge's start vertex.

    Args:
        ring: (P, 2) xy, P >= 1 (the closing edge back to vertex 0 is implied).
    Returns:
        (num, 2) float64.
    Source: LSNet spec §7.3 step 2 (reference ``loading.py`` L314-376).
    """
    ring = np.asarray(ring, dtype=np.float64)
    n = len(ring)
    nxt = ring[(np.arange(n) + 1) % n]
    edge_len = np.sqrt(((nxt - ring) ** 2).sum(axis=1))
    order = np.argsort(edge_len, kind="stable")
    if n > num:
        return ring[np.sort(order[n - num :])]
    total = edge_len.sum()
    counts = np.round(edge_len * num / total).astype(np.int64) if total > 0 else np.zeros(n, dtype=np.int64)
    counts = np.maximum(counts, 1)
    surplus = int(counts.sum()) - num
    if surplus > 0:
        pos = n - 1
        while surplus > 0:
            edge = order[pos]
            if counts[edge] > surplus:
                counts[edge] -= surplus
                surplus = 0
            else:
                surplus -= counts[edge] - 1
                counts[edge] = 1
                pos -= 1
    elif surplus < 0:
        counts[order[-1]] -= surplus
    out = []
    for i in range(n):
        w = (np.arange(counts[i], dtype=np.float64) / counts[i])[:, None]
        out.append(ring[i] * (1 - w) + nxt[i] * w)
    return np.concatenate(out, axis=0)


def orient_and_start(contour: np.ndarray) -> np.ndarray:
    """Counter-clockwise on screen, starting at the point nearest (x-centre of its box, y_min).

    A ring with positive shoelace area (shapely's ``is_ccw`` in y-up maths) is reversed, then rolled so the
    first point is the one closest to the top-centre of the ring's bounding box (first such point on ties).
    Source: LSNet spec §7.3 steps 3-4 (reference ``get_cw_poly``, ``unify_origin_polygon``).
    """
    ring = contour[::-1] if signed_area(contour) > 0 else contour
    cx = (ring[:, 0].min() + ring[:, 0].max()) / 2
    dist = (ring[:, 0] - cx) ** 2 + (ring[:, 1] - ring[:, 1].min()) ** 2
    return np.roll(ring, -int(np.argmin(dist)), axis=0)


def valid_components(polygons: list[np.ndarray]) -> list[np.ndarray]:
    """Components whose box is >= 1 px in w and h and whose shoelace area is > 5 px² (spec §7.3 step 1)."""
    keep = []
    for ring in polygons:
        if len(ring) < 3:
            continue
        extent = ring.max(axis=0) - ring.min(axis=0)
        if extent[0] >= 1 and extent[1] >= 1 and abs(signed_area(ring)) > 5:
            keep.append(ring)
    return keep


def box_polygon(box: np.ndarray) -> np.ndarray:
    """The 4-vertex polygon (tl, bl, br, tr) of an xyxy box: the reference's fallback (spec §7.3 step 1)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([[x1, y1], [x1, y2], [x2, y2], [x2, y1]], dtype=np.float64)


def contour_36(polygons: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    """The instance's 36-point contour: largest valid component, resampled, oriented, started at the top.

    Every valid component is resampled to 360 points and every 10th kept; the one with the largest shoelace
    area on its 36 points is returned (the head uses only that one, spec §7.3 last paragraph). With no valid
    component the box polygon is used.

    Args:
        polygons: the instance's components, each (P, 2) xy pixels.
        box: (4,) xyxy annotation box, pixels (fallback).
    Returns:
        (36, 2) float32, counter-clockwise on screen, point 0 nearest the top-centre of its box.
    """
    rings = valid_components(polygons) or [box_polygon(box)]
    best, best_area = None, -1.0
    for ring in rings:
        pts = uniform_resample(ring, NUM_CONTOUR_POINTS * CONTOUR_OVERSAMPLE)[::CONTOUR_OVERSAMPLE]
        pts = orient_and_start(pts)
        area = abs(signed_area(pts))
        if area > best_area:
            best, best_area = pts, area
    assert best is not None
    return best.astype(np.float32)


def polygons_from_coco(segmentation: list[list[float]]) -> list[np.ndarray]:
    """COCO polygon segmentation (lists of x0, y0, x1, y1, ...) -> list of (P, 2) float64 arrays."""
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation]
