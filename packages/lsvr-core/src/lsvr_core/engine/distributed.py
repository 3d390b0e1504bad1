"""Process groups for multi-process runs: torchrun environment, DDP helpers, and ``--nproc-per-node``.

A run is distributed when ``WORLD_SIZE > 1`` is set in the environment (torchrun, SLURM wrappers, or the
launcher below). Backend: NCCL on CUDA, gloo on CPU. Every rank seeds identically; rank 0 writes the work
dir, logs and checkpoints.

``lsvr run --nproc-per-node N`` on a single node re-launches ``lsvr run`` on the resolved config through
:func:`torch.distributed.launcher.api.elastic_launch` (what ``torchrun --standalone`` does).
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in [0, world_size).
        world_size: number of processes.
        local_rank: rank on this node (selects the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` gets the local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    from lsvr_core.errors import ConfigError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"runtime.device={name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device={name!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
    return device


def setup(device_name: str) -> tuple[DistInfo, torch.device]:
    """Initialise the default process group from torchrun's environment variables (no-op for 1 process).

    Returns:
        (dist info, this process's device).
    """
    world = env_world_size()
    if world <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        tdist.init_process_group(backend=backend, rank=rank, world_size=world,
                                 device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world, local_rank), device


def cleanup() -> None:
    """Destroy the default process group if this module created one."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def all_reduce_mean(values: torch.Tensor, dist: DistInfo) -> torch.Tensor:
    """Mean of a (K,) float tensor over ranks (identity for one process); returns a new tensor."""
    out = values.detach().clone()
    if dist.distributed:
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        out /= dist.world_size
    return out


def all_gather_objects(obj: Any, dist: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable, on the CPU), in rank order."""
    if not dist.distributed:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, dist: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not dist.distributed:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: DistInfo) -> None:
    if dist.distributed:
        tdist.barrier()


def launch(config_file: Path, nproc: int, *, resume: str | None, plugin_files: list[str]) -> int:
    """Run ``lsvr run CONFIG_FILE`` in ``nproc`` local processes (torchrun ``--standalone``).

    Args:
        config_file: the resolved config (YAML) every rank loads.
        nproc: processes on this node.
        resume: passed on as ``--resume``.
        plugin_files: passed on as ``--plugin`` (the children rebuild the plugin manager).
    Returns:
        0 when every rank succeeded, else the first failing rank's exit code; 128 + signal number when the
        launcher itself got SIGINT/SIGTERM (it forwards the signal; each rank saves and stops).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    args: list[str] = ["-m", "lsvr_core.cli.main"]
    for path in plugin_files:
        args += ["--plugin", str(path)]
    args += ["run", str(config_file)]
    if resume:
        args += ["--resume", resume]
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"lsvr-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    env_backup = os.environ.get("OMP_NUM_THREADS")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        elastic_launch(config, sys.executable)(*args)
    except SignalException as err:  # the launcher was signalled; it passed the signal on to every rank
        print(f"lsvr: launcher stopped by {err.sigval.name}; the ranks saved a checkpoint (continue with --resume)",
              file=sys.stderr)
        return 128 + int(err.sigval)
    except ChildFailedError as err:
        codes = [f.exitcode for _, f in sorted(err.failures.items())]
        print(f"lsvr: {len(codes)} of {nproc} processes failed (exit codes {codes}); see their messages above",
              file=sys.stderr)
        return next((c for c in codes if c), 1) if codes else 1
    finally:
        if env_backup is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return 0
