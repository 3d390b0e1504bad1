"""The per-instance target fields lsvr-data's readers fill, declared with lsvr (torch-free).

``difficult`` (VOC) and the landmark fields ``extreme_points`` / ``contours`` that LSNet trains on are not
core attributes: they travel in ``Targets.extras`` and the transforms apply to them by their declared kind
(:mod:`lsvr_core.fields`). The readers that produce them declare them (the plugin hook ``lsvr_target_fields``
in :mod:`lsvr_data.plugin`), so a dataset never emits a field that has no declared geometry. The built-in
geometry of core's own fields (boxes, polygons, keypoints with the COCO left/right swap) is described by the
same records, so one code path transforms everything.
"""

from __future__ import annotations

from lsvr_core.api import TargetFieldSpec
from lsvr_data.landmarks import CONTOUR_FLIP_PERM, EXTREME_FLIP_PERM, KEYPOINT_FLIP_PERM

DIFFICULT = TargetFieldSpec("difficult", "scalar", dtype="bool",
                            summary="VOC difficult flag (N,) bool: ignored by the VOC evaluator")
EXTREME_POINTS = TargetFieldSpec("extreme_points", "points", flip_perm=EXTREME_FLIP_PERM,
                                 summary="(N, 4, 2) (top, left, bottom, right) extreme points (LSNet spec §7.1)",
                                 derive="lsvr_data.landmark_fields:derive_extreme_points")
CONTOURS = TargetFieldSpec("contours", "points", flip_perm=CONTOUR_FLIP_PERM,
                           summary="(N, 36, 2) contour, LSNet orientation and start point (LSNet spec §7.3)",
                           derive="lsvr_data.landmark_fields:derive_contours")
DECLARED = (DIFFICULT, EXTREME_POINTS, CONTOURS)

# core's own fields, described with the same records (not registered: core owns them)
BOXES = TargetFieldSpec("boxes", "boxes")
POLYGONS = TargetFieldSpec("polygons", "polygons")
KEYPOINTS = TargetFieldSpec("keypoints", "points", flip_perm=KEYPOINT_FLIP_PERM,
                            summary="(N, 17, 3) COCO keypoints (x, y, v); flip swaps left/right pairs")
