"""The training loop: iterations, guard rails, periodic evaluation and checkpoints, lifecycle hooks.

One :class:`Trainer` per process. Each iteration: forward (under the precision policy) -> the loss terms
(keys starting with ``loss``) averaged over ranks together with a stop flag -> a non-finite check -> backward,
optional gradient clipping, optimizer and scheduler steps. Ranks agree on stopping through that flag, so a
signal that reaches one rank first never leaves the others waiting.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from lsvr_core import __version__
from lsvr_core.engine import checkpoint as C
from lsvr_core.engine import distributed as D
from lsvr_core.engine.build import build_dataset, build_evaluator, build_model, check_batch_size, setup_runtime
from lsvr_core.engine.corrupt import SkipLog, take_skipped
from lsvr_core.engine.data import GroupedBatchSampler, SeededDataset, shutdown_workers, train_loader
from lsvr_core.engine.ema import build_ema
from lsvr_core.engine.emergency import write_emergency
from lsvr_core.engine.evaluate import eval_subset, predict_dataset, score
from lsvr_core.engine.lr_scaling import effective_lr
from lsvr_core.engine.optim import build_optimizer, grad_norm_params, resolve_precision
from lsvr_core.engine.predict_io import checkpoint_meta
from lsvr_core.engine.progress import Progress, metrics_table
from lsvr_core.engine.rundir import select_run_dir
from lsvr_core.engine.schedule import build_scheduler
from lsvr_core.engine.workdir import WorkDir, close_logging, setup_logging
from lsvr_core.errors import LsvrError
from lsvr_core.specs import RunInfo


class NonFiniteLoss(LsvrError):
    """A loss term became NaN or infinite; the run stops and keeps the last good checkpoint."""


class Trainer:
    """Trains ``cfg`` on this process's share of the data.

    Args:
        cfg: the validated run config.
        manager: the plugin manager (components and lifecycle hooks).
        dist, device: from :func:`lsvr_core.engine.distributed.setup`.
        resume: checkpoint path, ``"auto"`` (the latest run's checkpoint, :mod:`lsvr_core.engine.rundir`) or None.
        source: the config reference the run was started with (logged).
    """

    def __init__(self, cfg: Any, manager: Any, *, dist: D.DistInfo, device: torch.device,
                 resume: str | None = None, source: str = "") -> None:
        cfg, resume, run_dir_note = select_run_dir(cfg, resume, dist)
        self.cfg, self.manager, self.dist, self.device = cfg, manager, dist, device
        self.work = WorkDir(Path(cfg.runtime.work_dir))
        if dist.is_main:
            self.work.create(cfg, manager.distributions())
        D.barrier(dist)
        self.log, self._drop = setup_logging(self.work.log, dist.is_main)
        self.skips = SkipLog(self.log)
        for tmp in C.remove_stale_temporaries(self.work.checkpoints) if dist.is_main else ():
            self.log.info(f"removed {tmp}, left by an interrupted checkpoint write")
        setup_runtime(cfg)
        self.precision = resolve_precision(cfg.runtime.precision, device)
        self.lr, lr_text = effective_lr(cfg.optim, cfg.data.batch_size, dist.world_size)
        auto = " (auto)" if cfg.runtime.precision == "auto" else ""
        self.log.info(f"lsvr {__version__} run {source or '(config object)'} -> {self.work.root} | device {device} "
                      f"x{dist.world_size} | {lr_text} | precision {self.precision.name}{auto} | "
                      f"torch {torch.__version__}")
        if run_dir_note:
            self.log.info(run_dir_note)

        self.train_ds = SeededDataset(build_dataset(cfg, manager, train=True), cfg.runtime.seed)
        check_batch_size(cfg, len(self.train_ds), dist.world_size)
        self.sampler = GroupedBatchSampler(
            self.train_ds.aspect_ratios() if cfg.data.aspect_ratio_grouping else [1.0] * len(self.train_ds),
            cfg.data.batch_size, rank=dist.rank, world_size=dist.world_size, seed=cfg.runtime.seed)
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        full = cfg.schedule.epochs * self.iters_per_epoch
        self.total_iters = min(full, cfg.schedule.max_iters or full)
        self.can_eval = cfg.data.val is not None and cfg.eval.evaluator is not None
        self.val_ds = build_dataset(cfg, manager, train=False) if self.can_eval else None
        self.evaluator = build_evaluator(cfg, manager, self.val_ds) if self.can_eval and dist.is_main else None

        model = build_model(cfg, manager).to(device)
        if cfg.runtime.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if cfg.model.init_from and cfg.model.init_from != "torchvision":
            C.load_weights(model, cfg.model.init_from, self.log, min_fraction=cfg.model.init_from_min_fraction,
                           strict=cfg.model.init_from_strict)
        self.model = model
        self.ema = build_ema(model, cfg.runtime.ema.decay, cfg.runtime.ema.tau) if cfg.runtime.ema else None
        self.optimizer = build_optimizer(model, cfg.optim.model_copy(update={"lr": self.lr}))
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, self.iters_per_epoch, self.total_iters)
        self.scaler = self.precision.grad_scaler()
        self.epoch = self.iter = self.batch_in_epoch = 0
        self.best: float | None = None
        self.best_iter = -1
        self.last_saved_iter: int | None = None
        resumed = self._resume(resume)
        self.ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                    if dist.distributed else model)
        self.run = RunInfo(config=cfg, work_dir=self.work.root, is_main_process=dist.is_main, resumed=resumed,
                           extras={"source": source, "world_size": dist.world_size})
        self.stop_signal: int | None = None

    # --- resume and checkpoints ----------------------------------------------------------------------

    def _resume(self, resume: str | None) -> bool:
        if not resume:
            return False
        path = Path(resume)  # "auto" was resolved by select_run_dir
        ckpt = C.load(path)
        C.check_resumable(ckpt, path)
        # with runtime.ema, "model" holds the averaged weights and "model_raw" the trained ones
        raw = {"model": ckpt["model_raw"]} if "model_raw" in ckpt else ckpt
        C.load_model_state(self.model, C.model_state(raw, path), path)
        if self.ema is not None and "ema" in ckpt:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.iter, self.batch_in_epoch = ckpt["epoch"], ckpt["iter"], ckpt["batch_in_epoch"]
        self.best, self.best_iter = ckpt["best"], ckpt["best_iter"]
        self.last_saved_iter = self.iter
        C.set_rng_state(ckpt["rng"])
        self.log.info(f"resumed from {path}: epoch {self.epoch + 1}, batch {self.batch_in_epoch}, "
                      f"iteration {self.iter}")
        return True

    def _state(self) -> dict[str, Any]:
        if self.ema is not None:  # the averaged weights are the run's weights; the trained ones resume it
            return {**self._train_state(), "model": self.ema.module.state_dict(),
                    "model_raw": self.model.state_dict(), "ema": self.ema.state_dict()}
        return self._train_state()

    def _train_state(self) -> dict[str, Any]:
        return {
            "format": C.FORMAT, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
            "iter": self.iter, "batch_in_epoch": self.batch_in_epoch, "best": self.best,
            "best_iter": self.best_iter, "rng": C.rng_state(),
            "meta": {"lsvr_core": str(__version__), "torch": str(torch.__version__), **checkpoint_meta(self.train_ds)},
        }

    def save(self, *, numbered: int | None = None, best: bool = False) -> None:
        """Write ``last.pt`` (and ``epoch_N.pt`` / ``best.pt``, per ``runtime.checkpoint``) on rank 0."""
        if self.dist.is_main:
            state = self._state()
            retention = self.cfg.runtime.checkpoint
            C.save_atomic(state, self.work.last)
            if numbered is not None and retention.keep_last > 1:
                C.save_atomic(state, self.work.epoch_checkpoint(numbered))
                C.prune_numbered(self.work.checkpoints, keep=retention.keep_last - 1)
            if best and retention.save_best:
                C.save_atomic(state, self.work.best)
        self.last_saved_iter = self.iter
        D.barrier(self.dist)

    # --- signals ---------------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:  # second signal: stop now
                raise KeyboardInterrupt
            self.stop_signal = signum
            self.log.warning(f"received {signal.Signals(signum).name}: saving a checkpoint after this iteration")

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _stop_requested(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal else 0.0])
        return bool(D.all_reduce_mean(flag, self.dist)[0] > 0)

    # --- the loop -------------------------------------------------------------------------------------

    def fit(self) -> int:
        """Train to the end (or to a stop signal); returns the exit code (128 + signal number when stopped)."""
        hook = self.manager.hook
        old_handlers = self._install_signals()
        status = "failed"
        try:
            hook.lsvr_run_start(run=self.run)
            code = self._loop()
            status = "completed" if code == 0 else "interrupted"
            return code
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception as err:
            if not isinstance(err, NonFiniteLoss):
                write_emergency(self, err)
            raise
        finally:
            shutdown_workers()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            try:
                hook.lsvr_run_end(run=self.run, status=status)
            finally:
                close_logging(self.log)

    def _loop(self) -> int:
        cfg = self.cfg
        if self.iter >= self.total_iters:
            self.log.info(f"nothing to train: iteration {self.iter} already reached {self.total_iters}")
            return 0
        progress = Progress(self.log, self._drop, interval=cfg.logging.interval, total_iters=self.total_iters,
                            enabled=self.dist.is_main)
        loader_args = dict(num_workers=cfg.data.num_workers, size_divisor=cfg.data.size_divisor,
                           pin_memory=cfg.data.pin_memory and self.device.type == "cuda")
        self.ddp.train()
        while self.epoch < cfg.schedule.epochs and self.iter < self.total_iters:
            self.train_ds.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            loader = train_loader(self.train_ds, self.sampler, seed=cfg.runtime.seed + self.epoch, **loader_args)
            progress.start_epoch(self.epoch, cfg.schedule.epochs, self.iters_per_epoch, self.batch_in_epoch, self.iter)
            for batch in loader:
                take_skipped(batch.targets, self.skips)
                stop = self._step(batch)
                self.batch_in_epoch += 1
                self.iter += 1
                lr = self._last_lr
                progress.update(self.iter, self.batch_in_epoch, self._last_losses, lr)
                if self.iter % cfg.logging.interval == 0:
                    scalars = {**self._last_losses, "lr": lr, "epoch": self.epoch}
                    if self.dist.is_main:
                        self.work.append_metrics({"step": self.iter, **scalars}, self.work.scalars)
                    self.manager.hook.lsvr_log_metrics(run=self.run, step=self.iter, metrics=scalars)
                if stop or (self.stop_signal is not None and not self.dist.distributed):
                    progress.close()
                    return self._interrupted()
                if self.iter >= self.total_iters:
                    break
            progress.end_epoch()
            finished_epoch = self.batch_in_epoch >= self.iters_per_epoch
            if finished_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
            final = self.iter >= self.total_iters or self.epoch >= cfg.schedule.epochs
            self._end_of_epoch(final, numbered=self.epoch if finished_epoch else None)
            if not final and self._stop_requested():
                return self._interrupted()
        self.log.info(f"done: {self.iter} iterations; checkpoints in {self.work.checkpoints}")
        self._plot_curves()
        return 0

    def _plot_curves(self) -> None:
        """Write ``curves.png`` (losses, lr, AP) on rank 0 and send it to the loggers; never fails the run."""
        if not self.dist.is_main:
            return
        from lsvr_core.engine.curves import plot_curves

        try:
            path = plot_curves(self.work.scalars, self.work.metrics, self.work.curves)
        except Exception as err:  # a plotting problem must not turn a finished run into a failed one
            self.log.warning(f"could not draw {self.work.curves}: {type(err).__name__}: {err}")
            return
        if path is not None:
            self.manager.hook.lsvr_log_images(run=self.run, step=self.iter, images={"curves": path})

    def _step(self, batch: Any) -> bool:
        """One optimisation step; returns True when some rank asked to stop (after this step)."""
        batch = batch.to(self.device)
        batch.progress = self.iter / max(self.total_iters, 1)
        if self.cfg.runtime.channels_last:
            batch.images = batch.images.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            out = self.ddp(batch)
        terms = {k: out[k] for k in sorted(out) if k.startswith("loss")}
        if not terms:
            raise LsvrError(f"the model returned no loss terms in training mode (keys: {sorted(out)})")
        total = sum(v.float() for v in terms.values())
        values = torch.stack([total.detach()] + [v.detach().float() for v in terms.values()]
                             + [total.new_tensor(1.0 if self.stop_signal else 0.0)])
        reduced = D.all_reduce_mean(values, self.dist).cpu().tolist()
        losses = dict(zip(["loss", *terms], reduced[:-1], strict=True))
        if not all(math.isfinite(v) for v in losses.values()):
            self._non_finite(losses)
        self._last_losses = losses
        self._last_lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(list(grad_norm_params(self.optimizer)), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.scheduler.step()
        return reduced[-1] > 0

    def _non_finite(self, losses: dict[str, float]) -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v) and k != "loss"] or ["loss"]
        terms = ", ".join(f"{k}={losses[k]}" for k in bad)
        if self.last_saved_iter is None:
            kept = "no checkpoint had been written yet"
        else:
            kept = f"the last good checkpoint is {self.work.last} (iteration {self.last_saved_iter})"
        raise NonFiniteLoss(f"non-finite loss at iteration {self.iter + 1} (epoch {self.epoch + 1}): {terms}; "
                            f"the run stopped without saving; {kept}. Lower optim.lr, raise schedule.warmup_iters "
                            f"or set optim.grad_clip")

    def _interrupted(self) -> int:
        self.save()
        signum = self.stop_signal or signal.SIGTERM
        self.log.warning(f"stopped by {signal.Signals(signum).name} at iteration {self.iter}; saved {self.work.last}; "
                         f"continue with --resume")
        return 128 + int(signum)

    def _end_of_epoch(self, final: bool, numbered: int | None) -> None:
        cfg = self.cfg
        keep_numbered = numbered if numbered is not None and numbered % cfg.runtime.checkpoint_interval == 0 else None
        self.save(numbered=keep_numbered)  # before evaluating: a failing evaluation loses nothing
        metrics: dict[str, float] = {}
        if self.can_eval and (final or (numbered is not None and numbered % cfg.eval.interval == 0)):
            metrics = self.evaluate(tag=f"iter_{self.iter}")
        main = metrics.get(cfg.eval.metric)
        if main is not None and math.isfinite(main) and (self.best is None or main > self.best):
            self.best, self.best_iter = main, self.iter
            self.save(best=True)  # last.pt again too, so that a resumed run knows the new best
        skipped = self.skips.flush()
        if skipped and self.dist.is_main:
            self.work.append_metrics({"epoch": self.epoch, "iter": self.iter, "skipped_images": skipped})
        self.manager.hook.lsvr_epoch_end(run=self.run, epoch=self.epoch, iteration=self.iter, metrics=metrics)

    def evaluate(self, tag: str) -> dict[str, float]:
        """Evaluate on the val set (rank 0 scores), append to ``metrics.jsonl``, print the table, draw samples."""
        cfg = self.cfg
        t0 = time.perf_counter()
        model = self.ddp.module if isinstance(self.ddp, DistributedDataParallel) else self.ddp
        model = self.ema.module if self.ema is not None else model
        subset = eval_subset(self.val_ds, cfg.eval.max_images)
        preds = predict_dataset(model, subset, device=self.device, precision=self.precision, dist=self.dist,
                                batch_size=cfg.data.val_batch_size, num_workers=cfg.data.num_workers,
                                size_divisor=cfg.data.size_divisor, channels_last=cfg.runtime.channels_last,
                                skip_log=self.skips, log=self.log)
        metrics: dict[str, float] = {}
        if self.dist.is_main:
            metrics = score(self.evaluator, preds)
            main = metrics.get(cfg.eval.metric)
            if main is None:
                self.log.warning(f"eval.metric {cfg.eval.metric!r} is not among the evaluator's metrics "
                                 f"{sorted(metrics)}; best.pt is not kept")
            self.work.append_metrics({"epoch": self.epoch, "iter": self.iter, **metrics})
            self.log.info(f"evaluation at iteration {self.iter} ({len(preds)} images, "
                          f"{time.perf_counter() - t0:.1f} s):\n{metrics_table(metrics)}")
            if cfg.eval.num_draw:
                from lsvr_core.gallery import draw_gallery

                gallery = draw_gallery(self.val_ds, preds, num=cfg.eval.num_draw,
                                       out_path=self.work.predictions / f"gallery_{tag}.png",
                                       class_names=getattr(self.val_ds, "classes", None))
                if gallery is not None:
                    self.manager.hook.lsvr_log_images(run=self.run, step=self.iter, images={f"gallery/{tag}": gallery})
        return D.broadcast_object(metrics, self.dist)
