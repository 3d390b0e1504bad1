"""The per-instance target field CenterNet declares (torch-free).

``centernet_centers`` (N, 1, 2) float32: each object's centre in pixels, the point its heatmap peak and its
offset target are placed at. It is a ``points`` field, so lsvr-data's resize / flip / crop steps move it
with the image (no dataset knows about it): a dataset computes it from the original-frame boxes with the
``derive`` function when its config lists ``extra_fields: [centernet_centers]``.
"""

from __future__ import annotations

from lsvr_core.api import TargetFieldSpec

CENTERS = TargetFieldSpec(
    "centernet_centers", "points", summary="(N, 1, 2) object centre (box centre) for CenterNet's heatmap peaks",
    derive="lsvr_centernet.derive:box_centres",
)
