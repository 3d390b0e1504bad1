"""Training progress: a tqdm bar on an interactive terminal, plain periodic lines otherwise; eval tables.

Progress lines always go to ``log.txt`` (every ``logging.interval`` iterations); on a terminal the bar
replaces them on screen.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from typing import Any


def _fmt_losses(values: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in values.items())


class Progress:
    """Reports iterations of one run (rank 0 only; other ranks get ``enabled=False``).

    Args:
        log: the engine logger (its terminal handler drops lines marked ``progress`` while a bar is shown).
        drop: the filter object whose ``active`` flag is set while the bar is shown.
        interval: iterations between plain lines.
        total_iters: iterations of the whole run (for ETA).
        enabled: False on ranks other than 0.
        use_bar: force the bar on/off (default: when stderr is a TTY).
    """

    def __init__(self, log: logging.Logger, drop: Any, *, interval: int, total_iters: int, enabled: bool = True,
                 use_bar: bool | None = None) -> None:
        self.log, self.drop = log, drop
        self.interval, self.total_iters = interval, total_iters
        self.enabled = enabled
        self.use_bar = (sys.stderr.isatty() if use_bar is None else use_bar) and enabled
        self.bar: Any = None
        self.window: dict[str, list[float]] = {}
        self.t_start = self.t_window = time.perf_counter()
        self.start_iter = self.window_iter = 0

    def start_epoch(self, epoch: int, epochs: int, iters: int, done: int, global_iter: int) -> None:
        """``done`` batches of this epoch were already trained (resume)."""
        self.epoch_label = f"epoch {epoch + 1}/{epochs}"
        self.epoch_iters = iters
        if self.start_iter == 0 and self.window_iter == 0:
            self.start_iter = self.window_iter = global_iter
        if self.use_bar:
            from tqdm import tqdm

            self.drop.active = True
            self.bar = tqdm(total=iters, initial=done, desc=self.epoch_label, dynamic_ncols=True, leave=True,
                            file=sys.stderr)

    def update(self, global_iter: int, epoch_iter: int, losses: dict[str, float], lr: float) -> None:
        """After iteration ``global_iter`` (1-based count of finished iterations)."""
        if not self.enabled:
            return
        for k, v in losses.items():
            self.window.setdefault(k, []).append(v)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {losses.get('loss', float('nan')):.4f} lr {lr:.2e}", refresh=False)
        if global_iter % self.interval == 0 or epoch_iter == self.epoch_iters:
            now = time.perf_counter()
            n = max(global_iter - self.window_iter, 1)
            rate = n / max(now - self.t_window, 1e-9)
            overall = (global_iter - self.start_iter) / max(now - self.t_start, 1e-9)
            eta = timedelta(seconds=int((self.total_iters - global_iter) / max(overall, 1e-9)))
            means = {k: sum(v) / len(v) for k, v in self.window.items()}
            self.log.info(
                f"{self.epoch_label} iter {epoch_iter}/{self.epoch_iters} (total {global_iter}/{self.total_iters}) "
                f"{_fmt_losses(means)} lr {lr:.3e} {rate:.2f} it/s eta {eta}",
                extra={"progress": True},
            )
            self.window.clear()
            self.t_window, self.window_iter = now, global_iter

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.drop.active = False

    def close(self) -> None:
        self.end_epoch()


def _cell(name: str, value: Any) -> str:
    if isinstance(value, float) and 0 <= value <= 1 and name.startswith(("AP", "AR", "mAP")):
        return f"{100 * value:.1f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict[str, float], per_class_columns: int = 4) -> str:
    """Metrics as text tables: one row per prefix (``bbox``, ``segm``, ...) and one column per stat, then the
    per-class APs (stats named ``AP_<class>`` / ``AP50_<class>``) of each prefix in a compact class/AP grid.

    Values in [0, 1] named like AP/AR are shown as percentages with one decimal; -1 (no ground truth) as is.
    """
    rows: dict[str, dict[str, float]] = {}
    classes: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, stat = key.rpartition("/")
        kind, sep, name = stat.partition("_")
        if sep and kind in ("AP", "AP50"):
            classes.setdefault(f"{prefix or '-'} {kind}", {})[name] = value
        else:
            rows.setdefault(prefix or "-", {})[stat] = value
    lines = []
    for prefix, stats in rows.items():
        names = list(stats)
        cells = [_cell(n, v) for n, v in stats.items()]
        widths = [max(len(n), len(c)) for n, c in zip(names, cells, strict=True)]
        head_w = max(len(prefix), 6)
        lines.append("| " + "type".ljust(head_w) + " | "
                     + " | ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)) + " |")
        lines.append("|-" + "-" * head_w + "-|-" + "-|-".join("-" * w for w in widths) + "-|")
        lines.append("| " + prefix.ljust(head_w) + " | "
                     + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |")
    for title, per_class in classes.items():
        items = [(n, _cell("AP", v)) for n, v in per_class.items()]
        name_w = max(len(n) for n, _ in items)
        lines.append(f"per-class {title}:")
        for i in range(0, len(items), per_class_columns):
            chunk = items[i : i + per_class_columns]
            lines.append("| " + " | ".join(f"{n.ljust(name_w)} {c.rjust(5)}" for n, c in chunk) + " |")
    return "\n".join(lines)


class EvalProgress:
    """Reports inference over the val set: a tqdm bar on a terminal, plain lines (every ``every_s`` seconds and
    at the end) in the log otherwise, with images/s and ETA.

    Args:
        log: the engine logger, or None for silence.
        total: images to predict (this rank's share).
        enabled: False on ranks other than 0.
    """

    def __init__(self, log: logging.Logger | None, total: int, *, enabled: bool = True, every_s: float = 10.0,
                 use_bar: bool | None = None) -> None:
        self.log, self.total, self.every_s = log, total, every_s
        self.enabled = enabled and log is not None
        self.done = 0
        self.t0 = self.t_last = time.perf_counter()
        use_bar = sys.stderr.isatty() if use_bar is None else use_bar
        self.bar: Any = None
        if self.enabled and use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="evaluating", unit="img", leave=False, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self.t_last >= self.every_s and self.done < self.total:
            self.t_last = now
            self.log.info(self._line(now))  # type: ignore[union-attr]

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            self.log.info(self._line(time.perf_counter()))  # type: ignore[union-attr]

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self.t0, 1e-9)
        eta = timedelta(seconds=int((self.total - self.done) / rate)) if rate > 0 else "?"
        return f"evaluating: {self.done}/{self.total} images, {rate:.1f} img/s, eta {eta}"


def console_logger(name: str = "lsvr.eval") -> logging.Logger:
    """A logger printing plain lines to stderr, for verbs without a run's log file (``lsvr eval``)."""
    log = logging.getLogger(name)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log
