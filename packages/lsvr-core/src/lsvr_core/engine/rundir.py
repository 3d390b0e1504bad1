"""Which folder a run writes to: a run never overwrites another.

``runtime.work_dir`` (e.g. ``work_dirs/lsnet_demo``) names the first run's folder. When that folder already
holds a run, a new run goes to the next numbered sibling, as ultralytics numbers its ``exp``, ``exp2``,
``exp3`` run folders: ``work_dirs/lsnet_demo2``, ``work_dirs/lsnet_demo3``, ... (the highest number so far
plus one). A folder "holds a run" when it has any of ``config.resolved.yaml``, ``metrics.jsonl``,
``log.txt`` or ``checkpoints/``; an empty or unrelated folder is used as it is.

``--resume`` without a path continues the latest run of that family: the highest-numbered folder with a
checkpoint (the newer of ``checkpoints/last.pt`` and ``checkpoints/emergency.pt``). ``--resume CKPT``
continues in the run folder that holds ``CKPT`` (``<run>/checkpoints/CKPT``); a checkpoint from anywhere
else starts a new numbered folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from lsvr_core.errors import ConfigError

RUN_MARKERS = ("config.resolved.yaml", "metrics.jsonl", "log.txt", "checkpoints")
RESUMABLE = ("last.pt", "emergency.pt")


def has_run(folder: Path) -> bool:
    """True when ``folder`` holds (part of) a run."""
    return folder.is_dir() and any((folder / m).exists() for m in RUN_MARKERS)


def family(base: Path) -> list[tuple[int, Path]]:
    """``[(number, folder)]`` of ``base`` (number 1) and its existing numbered siblings ``<base>N`` (N >= 2),
    sorted by number."""
    out = [(1, base)]
    parent = base.parent
    if parent.is_dir():
        pattern = re.compile(re.escape(base.name) + r"(\d+)")
        for entry in parent.iterdir():
            m = pattern.fullmatch(entry.name)
            if m and int(m.group(1)) >= 2 and entry.is_dir():
                out.append((int(m.group(1)), entry))
    return sorted(out)


def next_run_dir(base: Path) -> Path:
    """``base`` when it holds no run, else ``<base>N`` with N one more than the highest number in use."""
    if not has_run(base):
        return base
    highest = max(n for n, folder in family(base) if folder.exists())
    return base.with_name(f"{base.name}{max(highest, 1) + 1}")


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The newer (modification time) of ``checkpoints/last.pt`` and ``checkpoints/emergency.pt``, or None."""
    found = [run_dir / "checkpoints" / name for name in RESUMABLE]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def latest_run(base: Path) -> tuple[Path, Path] | None:
    """``(run folder, checkpoint)`` of the highest-numbered run of ``base``'s family with a checkpoint."""
    for _, folder in reversed(family(base)):
        ckpt = resume_checkpoint(folder)
        if ckpt is not None:
            return folder, ckpt
    return None


def choose_run_dir(base: Path, resume: str | None) -> tuple[Path, Path | None]:
    """The folder this run writes to and the checkpoint it resumes from.

    Args:
        base: ``runtime.work_dir``.
        resume: None (a new run), ``"auto"`` (the latest run of the family) or a checkpoint path.
    Returns:
        (run folder, checkpoint path or None).
    Raises:
        ConfigError: ``base`` exists and is not a folder; ``--resume`` finds no checkpoint.
    """
    base = Path(base)
    if base.exists() and not base.is_dir():
        raise ConfigError(f"runtime.work_dir={str(base)!r} is a file, not a folder; choose another runtime.work_dir")
    if resume is None:
        return next_run_dir(base), None
    if resume == "auto":
        found = latest_run(base)
        if found is None:
            raise ConfigError(f"--resume: no checkpoint (checkpoints/last.pt) in {base} or its numbered runs "
                              f"{base.name}2, {base.name}3, ...; start without --resume or give --resume CKPT")
        return found
    ckpt = Path(resume)
    if ckpt.parent.name == "checkpoints" and has_run(ckpt.parent.parent):
        return ckpt.parent.parent, ckpt
    return next_run_dir(base), ckpt


def select_run_dir(cfg: object, resume: str | None, dist: object) -> tuple[object, str | None, str | None]:
    """Pick the run folder on rank 0 and share it with every rank.

    Returns:
        (``cfg`` with ``runtime.work_dir`` set to the run folder (a copy when it changed), the checkpoint to
        resume from or None, a note to log when the run does not write to ``runtime.work_dir`` itself).
    """
    from lsvr_core.engine import distributed as D

    base = Path(cfg.runtime.work_dir)  # type: ignore[attr-defined]
    choice = choose_run_dir(base, resume) if dist.is_main else None  # type: ignore[attr-defined]
    run_dir, ckpt = D.broadcast_object(choice, dist)  # type: ignore[arg-type]
    note = None
    if Path(run_dir) != base:
        cfg = cfg.model_copy(deep=True)  # type: ignore[attr-defined]
        cfg.runtime.work_dir = Path(run_dir)  # type: ignore[attr-defined]
        if resume is None:
            note = (f"{base} already holds a run: this run writes to {run_dir} (continue the latest run with "
                    f"--resume; set runtime.work_dir to choose the folder)")
    return cfg, (str(ckpt) if ckpt is not None else None), note
