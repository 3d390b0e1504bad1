"""Transforms keep boxes, landmarks, keypoints and masks consistent with the image (hand-checked cases and
real coco_mini samples); flip twice is the identity; seeded determinism across DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lsvr_core.api import ExtraFields
from lsvr_core.structures import Predictions, collate
from lsvr_data.coco import build_coco
from lsvr_data.config import CocoDatasetConfig, PipelineConfig, SyntheticDatasetConfig
from lsvr_data.fields import EXTREME_POINTS
from lsvr_data.landmarks import KEYPOINT_FLIP_PERM, signed_area
from lsvr_data.sample import Sample
from lsvr_data.synthetic import build_synthetic
from lsvr_data.transforms import Pipeline, keep_ratio_size

torch.set_num_threads(1)


def white_box_sample() -> Sample:
    """A 20x40 black image with a white 10x6 block covering x in [10, 20), y in [4, 10)."""
    img = torch.zeros((3, 20, 40), dtype=torch.uint8)
    img[:, 4:10, 10:20] = 255
    kp = torch.zeros((1, 17, 3))
    kp[0, 1] = torch.tensor([12.0, 5.0, 2.0])  # a "left" keypoint
    kp[0, 2] = torch.tensor([18.0, 5.0, 2.0])  # its "right" partner
    return Sample(
        image=img, boxes=torch.tensor([[10.0, 4.0, 20.0, 10.0]]), labels=torch.tensor([0]),
        iscrowd=torch.tensor([False]), ann_ids=torch.tensor([7]), image_id=1, orig_size=(20, 40), keypoints=kp,
        masks=(img[:1] > 0).to(torch.uint8),
        extras=ExtraFields({"extreme_points": (EXTREME_POINTS, torch.tensor([[[15.0, 4.0], [10.0, 7.0], [15.0, 10.0],
                                                                             [20.0, 7.0]]]))}),
    )


def white_bbox(image: torch.Tensor) -> list[float]:
    """xyxy (pixel edges) of the pixels brighter than 127."""
    ys, xs = torch.nonzero(image[0] > 127, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_hand_checked_resize_flip_crop_expand() -> None:
    s = white_box_sample()
    s.resize(40, 80)
    assert s.boxes.tolist() == [[20.0, 8.0, 40.0, 20.0]] == [white_bbox(s.image)]
    assert s.scale == (2.0, 2.0) and s.keypoints[0, 1, :2].tolist() == [24.0, 10.0]
    s.hflip()  # x -> 80 - x
    assert s.boxes.tolist() == [[40.0, 8.0, 60.0, 20.0]] == [white_bbox(s.image)]
    # the old "left" keypoint (x 24 -> 56) now sits in the "right" slot 2, and vice versa
    assert s.keypoints[0, 2, :2].tolist() == [56.0, 10.0] and s.keypoints[0, 1, :2].tolist() == [44.0, 10.0]
    # extreme points: left <-> right swapped, so left is again the smaller x
    assert s.extras.get("extreme_points")[0].tolist() == [[50.0, 8.0], [40.0, 14.0], [50.0, 20.0], [60.0, 14.0]]
    s.crop(30, 4, 70, 30, torch.tensor([True]))
    assert s.boxes.tolist() == [[10.0, 4.0, 30.0, 16.0]] == [white_bbox(s.image)]
    s.expand(50, 60, left=7, top=3, fill=(0.0, 0.0, 0.0))
    assert s.boxes.tolist() == [[17.0, 7.0, 37.0, 19.0]] == [white_bbox(s.image)]
    assert white_bbox(s.masks.expand(3, -1, -1) * 255) == s.boxes[0].tolist()
    assert s.flipped and s.size == (50, 60)


def test_crop_clips_boxes_and_drops_outside_keypoints() -> None:
    s = white_box_sample()
    s.crop(14, 0, 40, 20, torch.tensor([True]))
    assert s.boxes.tolist() == [[0.0, 4.0, 6.0, 10.0]] == [white_bbox(s.image)]
    assert s.keypoints[0, 1].tolist() == [0.0, 0.0, 0.0]  # x = 12 - 14 < 0: no longer labelled
    assert s.keypoints[0, 2].tolist() == [4.0, 5.0, 2.0]


def test_keep_ratio_size_matches_mmcv_rounding() -> None:
    assert keep_ratio_size(480, 640, 1333, 800) == (800, 1067)  # short side bound: 800 / 480
    assert keep_ratio_size(300, 1000, 1333, 800) == (400, 1333)  # long side bound: 1333 / 1000 -> 399.9 + 0.5
    assert keep_ratio_size(427, 640, 1333, 480) == (480, 719)


def test_multiscale_short_side_in_range() -> None:
    cfg = PipelineConfig(short_side_range=(480, 960), flip_prob=0.0)
    pipe = Pipeline(cfg, train=True)
    sizes = set()
    for seed in range(20):
        s = white_box_sample()
        s.image = torch.zeros((3, 480, 640), dtype=torch.uint8)
        s.masks = None
        out = pipe(s, torch.Generator().manual_seed(seed))
        h, w = out.size
        assert w <= 1333 and (480 <= h <= 960 or w == 1333)
        sizes.add(h)
    assert len(sizes) > 5


@pytest.fixture(scope="module")
def coco_val_segm_pose(coco_mini: Path):
    common = dict(split="val2017", landmarks=True, with_masks=True)
    segm = build_coco(CocoDatasetConfig(**common), root=coco_mini, train=True, task="segm")
    pose = build_coco(CocoDatasetConfig(**common), root=coco_mini, train=True, task="pose_bbox")
    return segm, pose


def _assert_samples_close(a: Sample, b: Sample) -> None:
    assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    for name in ("boxes", "extreme_points", "contours", "keypoints"):
        va, vb = (getattr(a, name), getattr(b, name)) if hasattr(a, name) else (a.extras.get(name), b.extras.get(name))
        if va is not None:
            torch.testing.assert_close(va, vb, atol=1e-3, rtol=0)
    for pa, pb in zip(a.polygons, b.polygons, strict=True):
        for ca, cb in zip(pa, pb, strict=True):
            torch.testing.assert_close(ca, cb, atol=1e-3, rtol=0)


@pytest.mark.parametrize("index", [0, 5])
def test_flip_twice_is_identity(coco_val_segm_pose, index: int) -> None:
    for ds in coco_val_segm_pose:
        s = ds.original_sample(index)
        s.resize(*keep_ratio_size(*s.size, 1333, 800))
        twice = s.clone()
        twice.hflip()
        twice.hflip()
        assert not twice.flipped
        _assert_samples_close(s, twice)


def test_flip_keeps_contour_orientation_and_start(coco_val_segm_pose) -> None:
    segm, _ = coco_val_segm_pose
    for index in range(4):
        s = segm.original_sample(index, with_image=False)
        s.hflip()
        keep = ~s.iscrowd
        for c in s.extras.get("contours")[keep].double().numpy():
            assert signed_area(c) <= 0
            d = (c[:, 0] - (c[:, 0].min() + c[:, 0].max()) / 2) ** 2 + (c[:, 1] - c[:, 1].min()) ** 2
            assert d[0] <= d.min() + 1e-6


def _mask_box(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.mark.parametrize("pipeline", [
    PipelineConfig(flip_prob=1.0),
    PipelineConfig(resize="square", square_size=320, ssd_aug=True, flip_prob=0.5),
], ids=["keep_ratio_flip", "ssd_square"])
def test_boxes_follow_masks_through_pipeline(coco_mini: Path, pipeline: PipelineConfig) -> None:
    """Masks are moved by torchvision, boxes and landmarks by our arithmetic: they must agree.

    Only instances whose raster mask matches the COCO box within 1.5 px in the original image are compared (thin
    polygon spikes make some COCO boxes up to 8.6 px larger than their raster mask).
    """
    cfg = CocoDatasetConfig(split="val2017", landmarks=True, with_masks=True, pipeline=pipeline)
    ds = build_coco(cfg, root=coco_mini, train=True, task="segm")
    indices = (1, 2, 3, 4)
    consistent = set()
    for index in indices:
        o = ds.original_sample(index, with_image=False)
        for box, mask, ann_id in zip(o.boxes, o.masks, o.ann_ids, strict=True):
            if mask.sum() >= 50 and (box - _mask_box(mask)).abs().max() <= 1.5:
                consistent.add(int(ann_id))
    checked = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for index in indices:
            img, t = ds[index]
            assert img.dtype == torch.uint8 and tuple(img.shape[-2:]) == t.image_size
            assert t.masks.shape[-2:] == img.shape[-2:]
            tol = 1.5 * max(t.scale) + 2.0  # original mismatch, scaled, + nearest-neighbour resampling
            for box, mask, ann_id, ep in zip(t.boxes, t.masks, t.ann_ids, t.extra("extreme_points"), strict=True):
                if int(ann_id) not in consistent or mask.sum() < 20:
                    continue
                mbox = _mask_box(mask)
                if pipeline.ssd_aug:  # a clipped box still contains the clipped mask, but may be larger
                    assert (box[:2] <= mbox[:2] + tol).all() and (box[2:] >= mbox[2:] - tol).all()
                else:
                    torch.testing.assert_close(box, mbox, atol=tol, rtol=0)
                ep_tol = max(t.scale) + 1e-3  # the reference floors extreme points: < 1 original px outside
                assert (ep[:, 0] >= box[0] - ep_tol).all() and (ep[:, 0] <= box[2] + ep_tol).all()
                assert (ep[:, 1] >= box[1] - ep_tol).all() and (ep[:, 1] <= box[3] + ep_tol).all()
                checked += 1
    assert checked > 20


def test_predictions_to_original_undo_resize_and_flip(coco_mini: Path) -> None:
    cfg = CocoDatasetConfig(split="val2017", landmarks=True, pipeline=PipelineConfig(flip_prob=1.0))
    ds = build_coco(cfg, root=coco_mini, train=True, task="pose_bbox")
    for index in (0, 7):
        img, t = ds[index]
        assert t.flipped and t.scale[0] > 1
        orig = ds.targets(index)
        pred = Predictions(boxes=t.boxes, scores=torch.ones(len(t)), labels=t.labels, image_id=t.image_id,
                           keypoints=t.keypoints, contours=t.extra("contours"))
        pred.extras.add(EXTREME_POINTS, t.extra("extreme_points"))
        back = pred.to_original(t)
        torch.testing.assert_close(back.boxes, orig.boxes, atol=1e-3, rtol=1e-5)
        # flipped targets hold mirrored slots (left <-> right); un-mirroring is the head's business
        back_kp = back.keypoints[:, list(KEYPOINT_FLIP_PERM)]
        vis = orig.keypoints[..., 2] > 0
        torch.testing.assert_close(back_kp[..., :2][vis], orig.keypoints[..., :2][vis], atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(back.extras.get("extreme_points")[:, [0, 3, 2, 1]], orig.extra("extreme_points"),
                                   atol=1e-3, rtol=1e-5)


def test_seeded_determinism_across_workers() -> None:
    cfg = SyntheticDatasetConfig(num_images=8, image_size=64, pipeline=PipelineConfig(
        resize="square", square_size=96, ssd_aug=True))
    ds = build_synthetic(cfg, root=Path("."), train=True, task="bbox")
    ds.set_epoch(3)
    a, b = ds[5], ds[5]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].boxes, b[1].boxes)

    def run(workers: int) -> list:
        loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=collate)
        return [(batch.images, [t.boxes for t in batch.targets]) for batch in loader]

    serial, parallel = run(0), run(2)
    for (ia, ba), (ib, bb) in zip(serial, parallel, strict=True):
        assert torch.equal(ia, ib) and all(torch.equal(x, y) for x, y in zip(ba, bb, strict=True))
    ds.set_epoch(4)
    assert not torch.equal(ds[5][0], a[0])


def test_ssd_aug_output_size_and_min_box_side() -> None:
    cfg = SyntheticDatasetConfig(num_images=16, image_size=128, pipeline=PipelineConfig(
        resize="square", square_size=80, ssd_aug=True))
    ds = build_synthetic(cfg, root=Path("."), train=True, task="bbox")
    ds.set_epoch(0)
    for i in range(len(ds)):
        img, t = ds[i]
        assert tuple(img.shape) == (3, 80, 80) and len(t) > 0
        side = torch.minimum(t.boxes[:, 2] - t.boxes[:, 0], t.boxes[:, 3] - t.boxes[:, 1]) / 80
        assert (side > 0.01).all()
        assert (t.boxes >= 0).all() and (t.boxes <= 80).all()
        np.testing.assert_array_less(t.boxes[:, :2].numpy(), t.boxes[:, 2:].numpy())
