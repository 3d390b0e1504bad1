"""Data loading for the engine: per-sample seeding, aspect-ratio grouped batches, rank sharding, resuming.

Determinism: :class:`SeededDataset` runs every ``dataset[i]`` under RNG states seeded from
``(seed, epoch, i)`` (torch CPU, numpy and python ``random``, restored afterwards), so random augmentation
gives the same result whatever the number of workers, processes, or where a run was resumed.

:class:`GroupedBatchSampler` draws *global* batches (``batch_size * world_size`` images) from a permutation
seeded by ``(seed, epoch)``, groups images by orientation (W/H >= 1 or < 1), and hands rank ``r`` the
``r``-th slice of each global batch. One process with batch 4 therefore sees the same images per iteration
as two processes with batch 2. ``set_epoch(epoch, start)`` skips the first ``start`` batches (resume).
"""

from __future__ import annotations

import io
import pickle
import random
import signal
import weakref
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lsvr_core.structures import collate


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (SplitMix64-style mixing)."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``i`` of epoch ``e`` is drawn under RNGs seeded by ``(seed, e, i)``.

    The caller's RNG states are restored after each item. ``classes`` and ``aspect_ratios()`` are forwarded.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (also passed on to the dataset's own ``set_epoch`` when it has one)."""
        self.epoch = epoch
        inner = getattr(self.dataset, "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # classes, aspect_ratios, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        seed = _mix(self.seed, self.epoch, int(index))
        torch_state = torch.get_rng_state()
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            torch.default_generator.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            np.random.set_state(np_state)
            random.setstate(py_state)


class GroupedBatchSampler(Sampler[list[int]]):
    """Yields this rank's index lists of each global batch, grouped by aspect ratio.

    Args:
        aspect_ratios: W/H per image (``len(dataset)`` values).
        batch_size: images per rank per iteration.
        rank, world_size: this process's slice of each global batch.
        seed: permutation seed (combined with the epoch).
        group: group landscape and portrait images into separate batches.
    Every epoch has ``ceil(N / (batch_size * world_size))`` batches; the last one is completed with the first
    images of the epoch's permutation, so every image is seen and every batch is full.
    """

    def __init__(self, aspect_ratios: Sequence[float], batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, group: bool = True) -> None:
        if len(aspect_ratios) == 0:
            raise ValueError("GroupedBatchSampler: the dataset is empty")
        self.groups = [int(ar >= 1.0) if group else 0 for ar in aspect_ratios]
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        self.epoch, self.start = 0, 0

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        return -(-len(self.groups) // self.global_batch)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start`` batches."""
        self.epoch, self.start = epoch, start

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of ``epoch`` (same on every rank)."""
        gen = torch.Generator().manual_seed(_mix(self.seed, epoch, 0x5A17))
        order = torch.randperm(len(self.groups), generator=gen).tolist()
        size = self.global_batch
        buckets: dict[int, list[int]] = {0: [], 1: []}
        batches: list[list[int]] = []
        for idx in order:
            bucket = buckets[self.groups[idx]]
            bucket.append(idx)
            if len(bucket) == size:
                batches.append(bucket[:])
                bucket.clear()
        rest = buckets[0] + buckets[1]
        rest += order[: (-len(rest)) % size]  # complete the last batch from the start of the permutation
        batches += [rest[i : i + size] for i in range(0, len(rest), size)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for batch in self.global_batches(self.epoch)[self.start :]:
            yield batch[lo:hi]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed, and ignore
    SIGINT/SIGTERM (Ctrl-C and schedulers such as SLURM signal every process of the job; the main process
    saves a checkpoint and then stops its workers; a worker whose parent died exits on its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


_LIVE_ITERATORS: weakref.WeakSet = weakref.WeakSet()


class _Loader(DataLoader):
    """A DataLoader whose worker iterators :func:`shutdown_workers` can stop."""

    def __iter__(self) -> Any:
        it = super().__iter__()
        if hasattr(it, "_shutdown_workers"):
            _LIVE_ITERATORS.add(it)
        return it


def shutdown_workers() -> None:
    """Stop the worker processes of every loader iterator still alive.

    An exception raised in the training or evaluation loop keeps its loader iterator referenced by the
    traceback; its workers ignore SIGTERM (see :func:`_seed_worker`), so without this the interpreter would
    wait for them forever at exit.
    """
    for it in list(_LIVE_ITERATORS):
        it._shutdown_workers()  # noqa: SLF001 (torch has no public way to stop an iterator's workers)
    _LIVE_ITERATORS.clear()


def _as_list(samples: list[Any]) -> list[Any]:
    return samples


# Tensors at least this large cross from a worker to the main process through shared memory (torch's default);
# smaller ones are pickled into one bytes object with the rest of the sample.
_SHARED_MIN_BYTES = 1 << 16


class _Packed:
    """A worker's samples: a pickle of everything except the large tensors, which travel beside it."""

    def __init__(self, data: bytes, tensors: list[torch.Tensor]) -> None:
        self.data, self.tensors = data, tensors


class _SamplePickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, tensors: list[torch.Tensor]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tensors = tensors

    def persistent_id(self, obj: Any) -> int | None:
        if isinstance(obj, torch.Tensor) and obj.numel() * obj.element_size() >= _SHARED_MIN_BYTES:
            self.tensors.append(obj)
            return len(self.tensors) - 1
        return None


class _SampleUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, tensors: list[torch.Tensor]) -> None:
        super().__init__(file)
        self.tensors = tensors

    def persistent_load(self, pid: Any) -> torch.Tensor:
        return self.tensors[pid]


def _pack(samples: list[Any]) -> _Packed:
    """Worker-side ``collate_fn``: samples as one pickle plus their large tensors (the images, masks).

    torch sends every tensor of a worker's result through its own shared-memory segment and file descriptor;
    a COCO sample's half-dozen small target tensors then cost ~4x the transfer of its image
    (``benchmarks/data_pipeline.txt``). Pickled in-band they cost a few microseconds each.
    """
    tensors: list[torch.Tensor] = []
    buf = io.BytesIO()
    _SamplePickler(buf, tensors).dump(samples)
    return _Packed(buf.getvalue(), tensors)


def _unpack(samples: Any) -> Any:
    """Inverse of :func:`_pack` (anything else passes through)."""
    if not isinstance(samples, _Packed):
        return samples
    return _SampleUnpickler(io.BytesIO(samples.data), samples.tensors).load()


def worker_collate(num_workers: int) -> Any:
    """The loader's ``collate_fn``: :func:`_pack` in worker processes, the identity without workers."""
    return _pack if num_workers > 0 else _as_list


class MainProcessCollate:
    """Iterate a loader whose workers return lists of samples and collate them here, in the main process.

    Workers then ship each image as decoded (uint8, 4x smaller than the padded float32 batch) and the padding
    copy runs once, in the process that consumes the batch; the samples' small tensors arrive pickled in one
    piece (:func:`_pack`; ``benchmarks/data_pipeline.txt``). Pinning (CUDA) happens after the collate.
    """

    def __init__(self, loader: DataLoader, collate_fn: Any, pin_memory: bool) -> None:
        self.loader, self.collate_fn, self.pin_memory = loader, collate_fn, pin_memory

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def sampler(self) -> Any:
        """The wrapped loader's sampler (evaluation: this rank's :class:`ShardSampler`)."""
        return self.loader.sampler

    def __iter__(self) -> Iterator[Any]:
        for samples in self.loader:
            batch = self.collate_fn(_unpack(samples))
            if self.pin_memory:
                images = batch[0].images if isinstance(batch, tuple) else batch.images
                pinned = images.pin_memory()
                if isinstance(batch, tuple):
                    batch[0].images = pinned
                else:
                    batch.images = pinned
            yield batch


def train_loader(dataset: SeededDataset, sampler: GroupedBatchSampler, *, num_workers: int, pin_memory: bool,
                 size_divisor: int, seed: int) -> MainProcessCollate:
    """A training loader over ``sampler``; a private generator keeps the global torch RNG untouched."""
    loader = _Loader(dataset, batch_sampler=sampler, num_workers=num_workers,
                     collate_fn=worker_collate(num_workers),
                     worker_init_fn=_seed_worker, generator=torch.Generator().manual_seed(seed),
                     persistent_workers=False)
    return MainProcessCollate(loader, partial(collate, size_divisor=size_divisor), pin_memory)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` (evaluation: every image exactly once over all ranks)."""

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_loader(dataset: Any, *, batch_size: int, rank: int, world_size: int, num_workers: int,
                pin_memory: bool, size_divisor: int) -> MainProcessCollate:
    """A sequential, rank-sharded loader that also yields each batch's dataset indices.

    Batches are ``(Batch, list[int])``; ``sampler`` is the :class:`ShardSampler` (its length is this rank's
    image count).
    """
    sampler = ShardSampler(len(dataset), rank, world_size)
    loader = _Loader(_Indexed(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                     collate_fn=worker_collate(num_workers), worker_init_fn=_seed_worker)
    return MainProcessCollate(loader, partial(_collate_indexed, size_divisor=size_divisor), pin_memory)


class _Indexed(Dataset):
    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index], index


def _collate_indexed(samples: list[tuple[Any, int]], size_divisor: int) -> tuple[Any, list[int]]:
    return collate([s for s, _ in samples], size_divisor), [i for _, i in samples]
