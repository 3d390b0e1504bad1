"""What each LSNet task regresses: landmark branches, DCN sampling points, boxes and loss types (spec §1-§2)."""

from __future__ import annotations

from dataclasses import dataclass

from lsvr_core.api import ConfigError
from lsvr_lsnet.config import TASKS


@dataclass(frozen=True)
class BranchLayout:
    """One landmark branch (tower + init + refine).

    Attributes:
        name: ``bbox``, ``segm`` or ``pose``.
        num_landmarks: K, the task's landmarks plus the trailing centre landmark.
        dcn_index: the landmarks whose decoded positions are DCN sampling points (taps in row-major order).
        num_free: extra, never supervised sampling points predicted as raw (y, x) channels (bbox: 4).
        box_from: how a box is read from the landmarks (``extreme`` or ``minmax``, centre excluded).
        loss_type: cross-IoU aggregation of §4.2.
    """

    name: str
    num_landmarks: int
    dcn_index: tuple[int, ...]
    num_free: int
    box_from: str
    loss_type: str

    @property
    def init_channels(self) -> int:
        """Channels of the init output: 4K Softplus cross components + 2 per free point (bbox 28, segm 148, pose 72)."""
        return 4 * self.num_landmarks + 2 * self.num_free


# spec §1 table and §2.3 stage 1 step 4
BBOX = BranchLayout("bbox", 5, (0, 1, 2, 3, 4), 4, "extreme", "bbox")
SEGM = BranchLayout("segm", 37, (0, 5, 10, 15, 20, 25, 30, 35, 36), 0, "minmax", "polygon")
POSE = BranchLayout("pose", 18, (1, 3, 5, 7, 9, 11, 13, 15, 17), 0, "minmax", "keypoint")


@dataclass(frozen=True)
class TaskLayout:
    """The branches of a task.

    Attributes:
        task: the task name.
        branches: every landmark branch the head builds.
        main: the branch trained with ``loss_init``/``loss_refine`` whose landmarks are the task's output.
        box: the branch whose detached init boxes are ATSS proposals (§3.2) and whose refined box is output.
        cls: the branch whose sampling offsets the classifier uses (§2.2 "Classification branch").
    """

    task: str
    branches: tuple[BranchLayout, ...]
    main: str
    box: str
    cls: str

    def branch(self, name: str) -> BranchLayout:
        return next(b for b in self.branches if b.name == name)


LAYOUTS: dict[str, TaskLayout] = {
    "bbox": TaskLayout("bbox", (BBOX,), "bbox", "bbox", "bbox"),
    "segm": TaskLayout("segm", (SEGM,), "segm", "segm", "segm"),
    "pose_bbox": TaskLayout("pose_bbox", (BBOX, POSE), "pose", "bbox", "pose"),
    "pose_kbox": TaskLayout("pose_kbox", (POSE,), "pose", "pose", "pose"),
}


def task_layout(task: str) -> TaskLayout:
    """The layout of ``task``.

    Raises:
        ConfigError: an unsupported task.
    """
    if task not in LAYOUTS:
        raise ConfigError(f"task {task!r} is not supported by the lsnet head; supported: {', '.join(TASKS)}")
    return LAYOUTS[task]
