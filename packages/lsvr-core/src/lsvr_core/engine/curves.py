"""``curves.png``: training losses, learning rate and evaluation AP over iterations (matplotlib, Agg backend).

Reads the run's ``scalars.jsonl`` (one line per ``logging.interval``: ``{"step", "loss", "loss_<term>", "lr",
...}``) and ``metrics.jsonl`` (one line per evaluation: ``{"iter", "<iou_type>/AP", ...}``), so a resumed run
plots its whole history.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def plot_curves(scalars: Path, metrics: Path, out_path: Path) -> Path | None:
    """Draw three panels (losses, lr, AP metrics) and write ``out_path``; None when nothing was logged.

    Loss panel: every key starting with ``loss`` against ``step``. AP panel: every ``*/AP`` and ``*/AP50``
    metric against ``iter``.
    """
    train = _read_jsonl(scalars)
    evals = _read_jsonl(metrics)
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss")}, key=lambda k: (k != "loss", k))
    for key in loss_keys:
        pts = [(r["step"], r[key]) for r in train if _finite(r.get(key))]
        if pts:
            axes[0].plot(*zip(*pts, strict=True), label=key, linewidth=2 if key == "loss" else 1)
    axes[0].set(title="training losses", xlabel="iteration")
    if loss_keys:
        axes[0].legend(fontsize=7)
    lr = [(r["step"], r["lr"]) for r in train if _finite(r.get("lr"))]
    if lr:
        axes[1].plot(*zip(*lr, strict=True))
    axes[1].set(title="learning rate", xlabel="iteration")
    ap_keys = sorted({k for r in evals for k in r if k.endswith(("/AP", "/AP50"))})
    for key in ap_keys:
        pts = [(r["iter"], r[key]) for r in evals if _finite(r.get(key))]
        if pts:
            axes[2].plot(*zip(*pts, strict=True), marker="o", label=key)
    axes[2].set(title="evaluation", xlabel="iteration", ylim=(0, 1))
    if ap_keys:
        axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
