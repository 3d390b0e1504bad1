"""``derive`` functions of the landmark fields: extreme points and 36-point contours from any Targets.

The COCO / VOC / synthetic readers fill ``extreme_points`` and ``contours`` themselves (``landmarks: true``,
which also reads extreme points stored in the annotation file and handles RLE crowd regions). These
functions make the same fields available to any dataset through ``extra_fields`` and to the conformance
suites (``lsvr_core.testing.make_batch(extra_fields=...)``): they use the instance polygons when the targets
hold them, else the box (border mid-points, box outline). Source: LSNet spec §7.1, §7.3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lsvr_core.api import Targets
from lsvr_data.landmarks import contour_36, extreme_points


def _components(targets: Targets, i: int) -> list[np.ndarray]:
    if targets.polygons is None:
        return []
    return [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in targets.polygons[i] if len(p) >= 3]


def derive_extreme_points(targets: Targets) -> Tensor:
    """(N, 4, 2) float32 (top, left, bottom, right) of each instance's polygon, or its box's border mid-points."""
    out = []
    for i, (x1, y1, x2, y2) in enumerate(targets.boxes.tolist()):
        comps = _components(targets, i)
        if comps:
            out.append(np.asarray(extreme_points(comps), dtype=np.float32))
        else:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            out.append(np.array([[cx, y1], [x1, cy], [cx, y2], [x2, cy]], dtype=np.float32))
    return torch.as_tensor(np.asarray(out, dtype=np.float32)).reshape(len(targets), 4, 2)


def derive_contours(targets: Targets) -> Tensor:
    """(N, 36, 2) float32 contour of each instance (largest polygon component, else the box outline)."""
    out = [contour_36(_components(targets, i), np.asarray(box, dtype=np.float64))
           for i, box in enumerate(targets.boxes.tolist())]
    return torch.as_tensor(np.asarray(out, dtype=np.float32)).reshape(len(targets), 36, 2)
