"""``data.on_corrupt``: what happens when an image (or its annotations) cannot be loaded during a run.

``error`` (the default, as in mmdetection): the run stops with a one-line error naming the file; an
emergency checkpoint keeps the progress (see the trainer), and ``lsvr data check CONFIG`` lists every bad
file up front. ``skip``: training replaces the item by the next loadable one (index + 1, + 2, ...; so the
batch size, the number of iterations and the run's determinism are kept); evaluation drops the image (no
prediction is scored for it). Every skipped file is logged once as a warning and listed in
``metrics.jsonl`` (a ``{"epoch", "iter", "skipped_images": [...]}`` line after the epoch that met it).

The wrapper marks what it skipped on the :class:`~lsvr_core.structures.Targets` it returns (attribute
``lsvr_skipped``: the error messages), which survives DataLoader worker processes; the trainer and
:func:`lsvr_core.engine.evaluate.predict_dataset` read the marks with :func:`take_skipped`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from lsvr_core.errors import DataError
from lsvr_core.structures import Targets

MAX_TRIES = 16
_HINT = ("set data.on_corrupt: skip to skip unreadable images, or list them all with `lsvr data check CONFIG`; "
         "then continue with --resume")


def _message(index: int, err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if isinstance(err, DataError) else f"item {index}: {type(err).__name__}: {text}"


class CorruptPolicy(torch.utils.data.Dataset):
    """Wraps a dataset with the ``data.on_corrupt`` policy.

    Args:
        dataset: a map-style dataset of ``(image (3, H, W) uint8, Targets)``.
        policy: ``"error"`` or ``"skip"``.
        train: skip by substitution (train) or by dropping the image (evaluation).
    Raises (from ``__getitem__``):
        DataError: policy ``error`` (the dataset's message plus what to do), or more than ``MAX_TRIES``
            consecutive items failed under ``skip``.
    """

    def __init__(self, dataset: Any, policy: str, *, train: bool) -> None:
        self.dataset, self.policy, self.train = dataset, policy, train

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # classes, coco_gt, label_to_cat_id, prepare, aspect_ratios, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("dataset", "policy", "train"):
            object.__setattr__(self, name, value)
        else:  # e.g. aug_seed: set on the wrapped dataset
            setattr(self.dataset, name, value)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Targets]:
        try:
            return self.dataset[index]
        except Exception as err:
            if self.policy != "skip":
                raise DataError(f"{_message(index, err)}; {_HINT}") from err
            skipped = [_message(index, err)]
        if not self.train:
            image = torch.zeros((3, 32, 32), dtype=torch.uint8)
            meta = Targets(boxes=torch.zeros((0, 4)), labels=torch.zeros((0,), dtype=torch.int64), image_id=-1,
                           orig_size=(32, 32), image_size=(32, 32))
            return image, _mark(meta, skipped)
        for k in range(1, MAX_TRIES + 1):
            other = (index + k) % len(self.dataset)
            try:
                image, meta = self.dataset[other]
                return image, _mark(meta, skipped)
            except Exception as err:
                skipped.append(_message(other, err))
        raise DataError(f"{len(skipped)} consecutive items from {index} failed to load; first: {skipped[0]}")


def _mark(meta: Targets, skipped: list[str]) -> Targets:
    meta.lsvr_skipped = list(skipped)  # type: ignore[attr-defined]
    return meta


def is_placeholder(meta: Targets) -> bool:
    """True for the blank stand-in of an image dropped from evaluation."""
    return bool(getattr(meta, "lsvr_skipped", None)) and meta.image_id == -1


class SkipLog:
    """The files skipped in this run (main process): each logged once, listed in ``metrics.jsonl``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.seen: list[str] = []
        self.unreported = 0

    def note(self, targets: list[Targets]) -> None:
        """Record the skip marks of a batch's targets (call before ``batch.to(device)``)."""
        for meta in targets:
            for message in getattr(meta, "lsvr_skipped", None) or ():
                if message not in self.seen:
                    self.seen.append(message)
                    self.unreported += 1
                    self.log.warning(f"data.on_corrupt=skip: skipped {message} ({len(self.seen)} skipped so far)")

    def flush(self) -> list[str]:
        """The files skipped since the last call (for ``metrics.jsonl``)."""
        new = self.seen[len(self.seen) - self.unreported :] if self.unreported else []
        self.unreported = 0
        return new


def take_skipped(targets: list[Targets], log: SkipLog | None) -> None:
    """Pass a batch's skip marks to ``log`` (no-op without one)."""
    if log is not None:
        log.note(targets)
