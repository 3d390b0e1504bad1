"""The map-style dataset shared by ``coco``, ``voc`` and ``synthetic``: records -> Sample -> pipeline -> Targets.

An item is ``(image (3, H, W) uint8, Targets)`` in the input frame (after the pipeline). Landmarks are
computed on the fly in the original frame (LSNet spec §7.1/§7.3) and transformed with the image.

Determinism: the random steps of item ``i`` draw from a generator seeded with ``(aug_seed, epoch, i)`` once
:meth:`DetectionDataset.set_epoch` was called, so results do not depend on the number of workers or the order
of loading; before that the seed is drawn from torch's global RNG (which DataLoader seeds per worker).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from lsvr_core.api import ConfigError, DataError, TargetFieldSpec, Targets, resolve_target_fields
from lsvr_data.config import PipelineConfig
from lsvr_data.fields import CONTOURS, DIFFICULT, EXTREME_POINTS
from lsvr_data.landmarks import contour_36, extreme_points, extreme_points_from_mask, polygons_from_coco
from lsvr_data.records import ImageRecord
from lsvr_data.sample import Sample
from lsvr_data.transforms import Pipeline

TASKS = ("bbox", "segm", "pose_bbox", "pose_kbox")


def check_task(task: str, name: str) -> None:
    if task not in TASKS:
        raise DataError(f"dataset {name!r}: unknown task {task!r}; expected one of {', '.join(TASKS)}")


def resolve(root: Path, path: str | Path) -> Path:
    """``path`` if absolute, else ``root / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root) / p


def read_image(path: Path, image_id: int, exif: bool = False) -> Tensor:
    """Decode an image file to (3, H, W) uint8 RGB (``exif``: apply the EXIF orientation tag).

    Raises:
        DataError: the file is missing or cannot be decoded (names the file and image id).
    """
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_image(str(path), mode=ImageReadMode.RGB, apply_exif_orientation=exif)
    except (RuntimeError, OSError, ValueError) as err:
        reason = "file not found" if not path.exists() else f"cannot decode ({err})"
        raise DataError(f"image {path} (image id {image_id}): {reason}") from None


def segm_to_rle(segm: object, height: int, width: int) -> dict:
    """COCO polygons / RLE (compressed or not) -> one compressed RLE at (height, width)."""
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, height, width)
    return segm  # type: ignore[return-value]


def resolve_extra_fields(names: list[str], registry: object | None, dataset: str) -> tuple[TargetFieldSpec, ...]:
    """The declared specs of a dataset config's ``extra_fields``.

    Args:
        names: field names (``extra_fields`` of the dataset config).
        registry: the plugin manager that builds the dataset (its ``target_fields()``); None only when
            ``names`` is empty.
        dataset: the dataset type, named in errors.
    Raises:
        ConfigError: an undeclared name (the message lists the declared fields), a field without ``derive``,
            or names given without a registry.
    """
    if not names:
        return ()
    if registry is None:
        raise ConfigError(f"dataset {dataset!r}: extra_fields {names} need the plugin registry to look them up")
    specs = resolve_target_fields(names, registry.target_fields(), where=f"dataset {dataset!r} extra_fields")
    for spec in specs:
        if spec.derive is None:
            raise ConfigError(f"dataset {dataset!r} extra_fields: target field {spec.name!r} ({spec.distribution}) "
                              "declares no derive function, so no dataset can compute it")
    return tuple(specs)


class DetectionDataset(torch.utils.data.Dataset):
    """Records plus a pipeline.

    Args:
        records: per-image annotations (original frame).
        classes: class names in label order.
        pipeline: transform config; ``train`` switches its random steps on.
        task: ``bbox``, ``segm``, ``pose_bbox`` or ``pose_kbox``.
        landmarks: fill the declared fields ``extreme_points`` and ``contours`` in ``Targets.extras`` (always on
            for ``segm``).
        with_masks: fill ``masks`` (N, H, W) uint8.
        aug_seed: seed of the augmentation stream.
        extra_fields: declared fields computed by their ``derive`` function from the original-frame targets of
            each item, before the pipeline (see :func:`resolve_extra_fields`).
    """

    name = "dataset"

    def __init__(self, records: list[ImageRecord], classes: list[str], pipeline: PipelineConfig, *, train: bool,
                 task: str, landmarks: bool = False, with_masks: bool = False, aug_seed: int = 0,
                 extra_fields: tuple[TargetFieldSpec, ...] = ()) -> None:
        check_task(task, self.name)
        self.records = records
        self.classes = list(classes)
        self.train = train
        self.task = task
        self.landmarks = landmarks or task == "segm"
        self.with_masks = with_masks
        self.pipeline = Pipeline(pipeline, train)
        self.aug_seed = aug_seed
        self.extra_fields = tuple(extra_fields)
        self.epoch: int | None = None
        self._index = {r.image_id: i for i, r in enumerate(records)}

    def __len__(self) -> int:
        return len(self.records)

    def aspect_ratios(self) -> list[float]:
        """W / H of every image, from the annotations (no decoding)."""
        return [r.width / r.height for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Make the augmentation of every item a function of (aug_seed, epoch, index) only."""
        self.epoch = int(epoch)

    def index_of(self, image_id: int) -> int:
        """Position of ``image_id`` in the dataset (KeyError if absent)."""
        return self._index[image_id]

    def load_image(self, record: ImageRecord) -> Tensor:
        """(3, H, W) uint8 RGB of a record (subclasses that generate images override this)."""
        assert record.file is not None
        image = read_image(record.file, record.image_id)
        if tuple(image.shape[-2:]) == (record.height, record.width):
            return image
        rotated = read_image(record.file, record.image_id, exif=True)
        if tuple(rotated.shape[-2:]) == (record.height, record.width):
            # annotated in the EXIF-rotated frame (as viewers show it): use that frame
            if not getattr(self, "_warned_exif", False):
                self._warned_exif = True
                logging.getLogger("lsvr_data").warning(
                    "%s: image %s has an EXIF orientation and its annotations are in the rotated frame; such "
                    "images are loaded rotated", self.name, record.file)
            return rotated
        exif = ""
        if rotated.shape[-2:] != image.shape[-2:]:
            exif = f" (its EXIF orientation tag rotates it to {rotated.shape[-1]}x{rotated.shape[-2]}, no match either)"
        raise DataError(
            f"image {record.file} (image id {record.image_id}) is {image.shape[-1]}x{image.shape[-2]} but "
            f"{record.source} says {record.width}x{record.height}{exif}"
        )

    def __getitem__(self, index: int) -> tuple[Tensor, Targets]:
        """``(image (3, H, W) uint8, Targets)`` in the input frame.

        Raises:
            DataError: anything going wrong while loading, naming the item, image id, file and annotations.
        """
        try:
            sample = self.original_sample(index)
            sample = self.pipeline(sample, self._generator(index))
            return sample.image, sample.to_targets()
        except DataError:
            raise
        except Exception as err:  # name the item instead of failing anonymously inside a DataLoader worker
            rec = self.records[index]
            raise DataError(
                f"{self.name}: cannot load item {index} (image id {rec.image_id}, file {rec.file}, annotations "
                f"{rec.ann_ids.tolist()} from {rec.source}): {type(err).__name__}: {err}"
            ) from err

    def __getstate__(self) -> dict:
        """Pickled into DataLoader workers without the (large) pycocotools ground truth."""
        state = self.__dict__.copy()
        if "_coco_gt" in state:
            state["_coco_gt"] = None
        return state

    def prepare(self, image: Tensor, image_id: int = -1) -> tuple[Tensor, Targets]:
        """Apply the test-time pipeline to a loose image (``lsvr predict``).

        Args:
            image: (3, H, W) uint8 RGB in the file's pixel grid.
            image_id: id recorded in the returned metadata.
        Returns:
            ``(image (3, H', W') uint8, Targets)`` with no instances and ``scale``/``orig_size``/``image_size``
            set, exactly as ``self[i]`` would give for an image of that size with ``train=False``.
        """
        h, w = int(image.shape[-2]), int(image.shape[-1])
        sample = Sample(
            image=image, boxes=torch.zeros((0, 4), dtype=torch.float32), labels=torch.zeros((0,), dtype=torch.int64),
            iscrowd=torch.zeros((0,), dtype=torch.bool), ann_ids=torch.zeros((0,), dtype=torch.int64),
            image_id=image_id, orig_size=(h, w),
        )
        if self.task.startswith("pose"):
            sample.keypoints = torch.zeros((0, 17, 3), dtype=torch.float32)
        sample = Pipeline(self.pipeline.cfg, False)(sample, torch.Generator().manual_seed(0))
        return sample.image, sample.to_targets()

    def targets(self, index: int) -> Targets:
        """Targets of item ``index`` in the original frame, without decoding the image."""
        return self.original_sample(index, with_image=False).to_targets()

    def _generator(self, index: int) -> torch.Generator:
        gen = torch.Generator()
        if not self.train:  # nothing random happens: leave torch's global RNG alone
            return gen.manual_seed(0)
        if self.epoch is None:
            seed = int(torch.randint(0, 2**62, ()))
        else:
            seed = int(np.random.SeedSequence([self.aug_seed, self.epoch, index]).generate_state(1, np.uint64)[0])
        return gen.manual_seed(seed % (2**63))

    # --- record -> Sample ---------------------------------------------------------------------------------

    def original_sample(self, index: int, with_image: bool = True) -> Sample:
        """The record of item ``index`` as a :class:`Sample` in the file's pixel grid (no transforms)."""
        rec = self.records[index]
        h, w = rec.height, rec.width
        image = self.load_image(rec) if with_image else torch.zeros((3, 1, 1), dtype=torch.uint8).expand(3, h, w)
        n = len(rec)
        sample = Sample(
            image=image, boxes=torch.tensor(rec.boxes, dtype=torch.float32).reshape(n, 4),
            labels=torch.tensor(rec.labels, dtype=torch.int64), iscrowd=torch.tensor(rec.iscrowd, dtype=torch.bool),
            ann_ids=torch.tensor(rec.ann_ids, dtype=torch.int64), image_id=rec.image_id, orig_size=(h, w),
        )
        if rec.difficult is not None:
            sample.extras.add(DIFFICULT, torch.tensor(rec.difficult, dtype=torch.bool))
        if self.task.startswith("pose"):
            kp = rec.keypoints if rec.keypoints is not None else np.zeros((n, 17, 3), np.float32)
            sample.keypoints = torch.tensor(kp, dtype=torch.float32).reshape(n, 17, 3)
        if self.landmarks:
            self._add_landmarks(sample, rec)
        if self.with_masks:
            sample.masks = self._masks(rec)
        if self.extra_fields:
            original = sample.to_targets()
            for spec in self.extra_fields:
                sample.extras.add(spec, spec.derive_fn()(original))
        return sample

    def _add_landmarks(self, sample: Sample, rec: ImageRecord) -> None:
        polys, extremes, contours = [], [], []
        for i, segm in enumerate(rec.segms if rec.segms is not None else [None] * len(rec)):
            box = rec.boxes[i]
            comps = polygons_from_coco(segm) if isinstance(segm, list) else []
            polys.append([torch.as_tensor(c, dtype=torch.float32) for c in comps])
            if rec.extreme_points is not None:
                extremes.append(rec.extreme_points[i])
            elif comps:
                extremes.append(extreme_points(comps))
            elif isinstance(segm, dict):
                m = mask_utils.decode(segm_to_rle(segm, rec.height, rec.width))
                extremes.append(extreme_points_from_mask(m) if m.any() else _box_extremes(box))
            else:
                extremes.append(_box_extremes(box))
            contours.append(contour_36(comps, box))
        n = len(rec)
        sample.polygons = polys
        sample.extras.add(EXTREME_POINTS, torch.as_tensor(np.asarray(extremes, np.float32)).reshape(n, 4, 2))
        sample.extras.add(CONTOURS, torch.as_tensor(np.asarray(contours, np.float32)).reshape(n, 36, 2))

    def _masks(self, rec: ImageRecord) -> Tensor:
        h, w = rec.height, rec.width
        masks = np.zeros((len(rec), h, w), dtype=np.uint8)
        for i in range(len(rec)):
            segm = rec.segms[i] if rec.segms is not None else None
            if segm is None or (isinstance(segm, list) and not segm):
                x1, y1, x2, y2 = rec.boxes[i]
                segm = [[x1, y1, x1, y2, x2, y2, x2, y1]]
            masks[i] = mask_utils.decode(segm_to_rle(segm, h, w))
        return torch.from_numpy(masks)


def _box_extremes(box: np.ndarray) -> np.ndarray:
    """Border mid-points (top, left, bottom, right) of an xyxy box: the fallback without a shape."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[cx, y1], [x1, cy], [cx, y2], [x2, cy]], dtype=np.float32)
