"""``derive`` of the ``centernet_centers`` field (torch)."""

from __future__ import annotations

from torch import Tensor

from lsvr_core.api import Targets


def box_centres(targets: Targets) -> Tensor:
    """(N, 1, 2) float32 centre ((x1 + x2) / 2, (y1 + y2) / 2) of each box, pixels, the targets' frame."""
    b = targets.boxes.float()
    return ((b[:, :2] + b[:, 2:]) / 2)[:, None, :]
