"""The emergency checkpoint: what a run that fails with an exception keeps of its progress.

When training or evaluation raises (an unreadable image, a full disk, a bug in a plugin, ...), rank 0 writes
``checkpoints/emergency.pt`` before the error is reported, unless ``last.pt`` already holds the current
iteration. It is a normal checkpoint (same keys, ``--resume`` accepts it) plus ``"emergency": {"reason",
"iter"}``; it holds the state after the last completed iteration (the failing batch was not trained), so
``lsvr run CONFIG --resume`` continues from there once the cause is fixed (``--resume`` without a path takes
the newer of ``last.pt`` and ``emergency.pt``). A non-finite loss writes none: its weights are the ones that
diverged. If writing fails too, the failure is logged and the original error is still the one reported.
"""

from __future__ import annotations

from typing import Any

from lsvr_core.engine import checkpoint as C


def write_emergency(trainer: Any, err: BaseException) -> None:
    """Write ``checkpoints/emergency.pt`` for ``trainer`` (rank 0) after ``err``; never raises."""
    if not trainer.dist.is_main:
        return
    reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    path = trainer.work.checkpoints / "emergency.pt"
    if trainer.last_saved_iter == trainer.iter:
        trainer.log.error(f"run failed at iteration {trainer.iter}; {trainer.work.last} holds that iteration "
                          f"(continue with --resume once the cause is fixed)")
        return
    try:
        state = trainer._state()
        state["emergency"] = {"reason": reason, "iter": trainer.iter}
        C.save_atomic(state, path)
    except Exception as save_err:  # a full disk: say so, and let the original error through
        trainer.log.error(f"run failed at iteration {trainer.iter}; writing the emergency checkpoint {path} failed "
                          f"too: {type(save_err).__name__}: {save_err}")
        return
    trainer.log.error(f"run failed at iteration {trainer.iter}: wrote the emergency checkpoint {path} (continue with "
                      f"--resume once the cause is fixed)")
