"""Steps (a)-(e) of the GPU check and its report; called by ``tools/gpu_check.sh`` after the offline install.

    python tools/gpu_check.py --out DIR [--budget-s 480] [--started EPOCH] [--data DIR] [--dry-run]

Each step runs in a subprocess under ``timeout`` (its cap, or what is left of the budget if less); a step that
would start with less than its minimum left is skipped with a note. ``--dry-run`` runs the same steps on CPU (the
Triton interpreter, tiny shapes, a few iterations). Writes ``report.json`` and ``report.md`` in ``--out`` (device,
driver, versions, commit, then each step: command, status, seconds, results) and one log per step. Exit status 0
when no step failed or timed out, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
RESERVE_S = 5  # kept for writing the report


@dataclass
class Step:
    key: str
    title: str
    cap_s: int  # time box on the GPU
    min_s: int  # skip when less than this is left
    dry_cap_s: int
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def find_data(explicit: Path | None) -> Path | None:
    """The folder holding ``coco_mini/`` (``--data``, ``$LSVR_DATA``, ``./shared/data``, ``../shared/data``)."""
    candidates = [explicit] if explicit else []
    if os.environ.get("LSVR_DATA"):
        candidates.append(Path(os.environ["LSVR_DATA"]))
    candidates += [ROOT / "shared" / "data", ROOT.parent / "shared" / "data"]
    return next((c.resolve() for c in candidates if c and (c / "coco_mini" / "annotations").is_dir()), None)


def lsvr_cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from lsvr_core.cli.main import main; sys.exit(main(sys.argv[1:]))",
            *args]


def build_steps(out: Path, dry: bool, data: Path | None) -> list[Step]:
    py = sys.executable
    cpu = {"TRITON_INTERPRET": "1", "LSVR_KERNEL_BACKEND": "triton", "OMP_NUM_THREADS": "1"} if dry else {}
    tests = ["packages/lsvr-ops-triton/tests", "packages/lsvr-lesa/tests"]
    steps = [
        Step("a", "pytest -m gpu (ops and LESA kernels)", 110, 30, 40,
             [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs", *tests,
              f"--junitxml={out / 'a_pytest.xml'}"], {}),
        Step("b", "deformable ops vs torchvision (LSNet head shapes)", 130, 40, 60,
             [py, str(TOOLS / "bench_ops.py"), "--mode", "cuda", "--out", str(out / "ops")]
             + (["--dry-run"] if dry else ["--batches", "2", "--reps", "10", "--offset-stds", "2"]), cpu),
        Step("c", "relpos attention vs reference / SDPA / FlexAttention (LESA 1024^2 stages)", 100, 30, 60,
             [py, str(TOOLS / "bench_attention.py"), "--out", str(out / "attention")]
             + (["--device", "cpu", "--smoke", "--shapes", "0", "--dtypes", "float32", "--warmup", "0", "--iters",
                 "1"] if dry else ["--shapes", "r50", "--warmup", "2", "--iters", "10"]), cpu),
        Step("d", "LSNet R-50 FPN train step 1333x800 b2: fp32+torchvision vs bf16+Triton", 90, 30, 60,
             [py, str(TOOLS / "bench_train_step.py"), "--out", str(out / "train_step")]
             + (["--dry-run"] if dry else []), cpu),
    ]
    work = out / "lsnet_run"
    if data is not None:
        recipe, note = "lsnet:coco_mini_bbox", f"data {data / 'coco_mini'}"
        overrides = [f"data.root={data / 'coco_mini'}"]
    else:  # no coco_mini on this machine: the synthetic-data LSNet recipe keeps the step meaningful
        recipe, note = "lsnet:demo", "coco_mini not found (--data, $LSVR_DATA, shared/data): lsnet:demo instead"
        overrides = []
    iters = 3 if dry else 50
    overrides += [f"schedule.max_iters={iters}", f"runtime.work_dir={work}",
                  "logging.interval=" + ("1" if dry else "5"), "runtime.device=" + ("cpu" if dry else "cuda")]
    if dry:
        overrides += ["eval.max_images=2", "eval.num_draw=0", "runtime.threads=1", "data.batch_size=2",
                      "data.train.pipeline.scale=[256,160]", "data.val.pipeline.scale=[256,160]"]
    e = Step("e", f"lsvr run {recipe}, {iters} iterations", 150, 40, 60,
             lsvr_cli("run", recipe, *[x for o in overrides for x in ("-o", o)]),
             {"LSVR_KERNEL_BACKEND": "torch"} if dry else {})
    e.results["note"] = note
    e.results["work_dir"] = str(work)
    return [*steps, e]


# ---------------------------------------------------------------------------------------------- results
def parse_step(step: Step, out: Path, log: str) -> None:
    """Fill ``step.results`` from the step's outputs (benchmark JSON, pytest counts, run logs)."""
    r = step.results
    if step.key == "a":
        m = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", log)
        r["counts"] = {k: int(v) for v, k in m}
    elif step.key == "b":
        for f in sorted((out / "ops").glob("ops_*.json")):
            data = json.loads(f.read_text())
            r["device_peaks"] = data.get("device_peaks")
            r["rows"] = [{k: row.get(k) for k in ("op", "shape", "baseline", "speedup_fwd", "speedup_fwd_bwd",
                                                   "mem_ratio_fwd_bwd", "ours_fwd_tflops", "ours_fwd_bwd_tflops",
                                                   "ours_fwd_frac_of_bf16_matmul", "ours_fwd_bwd_peak_mib",
                                                   "baseline_fwd_bwd_peak_mib")} for row in data["rows"]]
    elif step.key == "c":
        for f in sorted((out / "attention").glob("attention_*.json")):
            data = json.loads(f.read_text())
            r["runs"] = data["runs"]
            md = f.with_suffix(".md")
            r["markdown"] = md.read_text() if md.exists() else ""
    elif step.key == "d":
        f = out / "train_step" / "train_step.json"
        if f.exists():
            r.update(json.loads(f.read_text()))
    elif step.key == "e":
        work = Path(r["work_dir"])
        losses = []
        log_file = work / "log.txt"
        if log_file.exists():
            losses = [float(v) for v in re.findall(r"\) loss (\S+)", log_file.read_text())]
        r["logged_losses"] = losses
        if len(losses) >= 2:
            k = max(1, len(losses) // 4)
            r["loss_first"], r["loss_last"] = sum(losses[:k]) / k, sum(losses[-k:]) / k
            r["loss_falls"] = r["loss_last"] < r["loss_first"]
        metrics = work / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        r["metrics"] = json.loads(lines[-1]) if lines else None


def environment(dry: bool, budget: int) -> dict[str, Any]:
    env: dict[str, Any] = {"mode": "dry run (CPU, Triton interpreter)" if dry else "GPU", "budget_s": budget,
                           "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                           "python": platform.python_version(), "platform": platform.platform(),
                           "host_cpus": os.cpu_count()}
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        env["commit_dirty"] = bool(dirty.strip())
    except (OSError, subprocess.CalledProcessError):
        env["commit"] = "unknown (not a git checkout)"
    for name in ("torch", "torchvision", "triton", "numpy", "pydantic", "pycocotools", "pytest"):
        try:
            module = __import__(name)
            env[name] = getattr(module, "__version__", "installed")
        except Exception as err:  # noqa: BLE001 - report whatever is missing
            env[name] = f"unavailable ({type(err).__name__}: {err})"
    try:
        import torch

        env["cuda_runtime"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["device"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}, " \
                            f"{props.multi_processor_count} SMs)"
        else:
            env["device"] = f"CPU: {platform.processor() or platform.machine()}"
    except Exception as err:  # noqa: BLE001
        env["device"] = f"unknown ({err})"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        env["driver"] = smi.stdout.split(",")[1].strip() if smi.returncode == 0 and "," in smi.stdout else "n/a"
    except (OSError, subprocess.TimeoutExpired):
        env["driver"] = "n/a (no nvidia-smi)"
    return env


# ----------------------------------------------------------------------------------------------- report
def _fmt(v: Any, spec: str = ".2f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else ("" if v is None else str(v))


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check ({env['mode']})", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += ["", "## Steps", "", "| step | what | status | seconds | note |", "|---|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['key']} | {s['title']} | {s['status']} | {_fmt(s.get('seconds'), '.0f')} | "
                     f"{s.get('note', '')} |")
    for s in report["steps"]:
        r = s.get("results", {})
        lines += ["", f"## ({s['key']}) {s['title']}", "", f"`{s.get('command', '')}`", ""]
        if s["key"] == "a" and r.get("counts"):
            lines.append("pytest: " + ", ".join(f"{v} {k}" for k, v in r["counts"].items()))
        if s["key"] == "b" and r.get("rows"):
            lines.append(f"measured device peaks: {json.dumps(r.get('device_peaks'))}")
            lines += ["", "| op | shape | baseline | fwd speedup | fwd+bwd speedup | mem ours/baseline (fwd+bwd) | "
                      "ours fwd TFLOP/s | of bf16 matmul |", "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {w['op']} | {w['shape']} | {w['baseline']} | {_fmt(w['speedup_fwd'], '.3g')} | "
                      f"{_fmt(w['speedup_fwd_bwd'], '.3g')} | {_fmt(w['mem_ratio_fwd_bwd'], '.3g')} | "
                      f"{_fmt(w['ours_fwd_tflops'], '.3g')} |"
                      f" {_fmt(w['ours_fwd_frac_of_bf16_matmul'], '.1%')} |" for w in r["rows"]]
        if s["key"] == "c" and r.get("markdown"):
            lines.append(r["markdown"].replace("\n# ", "\n### ").replace("\n## ", "\n#### "))
        if s["key"] == "d" and r.get("variants"):
            lines += ["| variant | images/s | step ms | peak MiB |", "|---|---|---|---|"]
            lines += [f"| {v['name']} | {_fmt(v.get('images_per_s'))} | {_fmt(v.get('step_ms'), '.1f')} | "
                      f"{_fmt(v.get('peak_mib'), '.0f')} |" + (f" error: {v['error']}" if v.get("error") else "")
                      for v in r["variants"]]
            if r.get("ratios"):
                lines.append("\nratios: " + json.dumps(r["ratios"]))
        if s["key"] == "e":
            lines.append(f"{r.get('note', '')}; losses logged: {len(r.get('logged_losses', []))}; first "
                         f"{_fmt(r.get('loss_first'), '.4f')} → last {_fmt(r.get('loss_last'), '.4f')} (falls: "
                         f"{r.get('loss_falls')}); last metrics: {json.dumps(r.get('metrics'))}")
        if s.get("tail") and s["status"] != "passed":
            lines += ["", "```", s["tail"], "```"]
    return "\n".join(lines) + "\n"


def run_step(step: Step, timeout_s: int, out: Path, dry: bool) -> dict[str, Any]:
    log_path = out / f"{step.key}.log"
    env = {**os.environ, **step.env}
    t0 = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(["timeout", "-k", "10", str(timeout_s), *step.command], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - t0
    text = log_path.read_text(errors="replace")
    status = "timed out" if proc.returncode in (124, 137) else "passed" if proc.returncode == 0 else "failed"
    entry: dict[str, Any] = {"status": status, "returncode": proc.returncode, "seconds": seconds,
                             "log": str(log_path), "timeout_s": timeout_s}
    if status == "timed out":
        entry["note"] = f"stopped after its time box of {timeout_s} s"
    try:
        parse_step(step, out, text)
    except Exception as err:  # noqa: BLE001 - a parse problem must not lose the report
        step.results["parse_error"] = f"{type(err).__name__}: {err}"
    if step.key == "e" and status == "passed" and not step.results.get("metrics"):
        entry["status"], entry["note"] = "failed", "no metrics written"
    elif step.key == "e" and status == "passed" and step.results.get("loss_falls") is False:
        # 3 dry-run iterations need not lower the loss; 50 on the GPU must
        entry["status"], entry["note"] = ("passed", "loss did not fall (dry run)") if dry else ("failed",
                                                                                             "loss did not fall")
    entry["tail"] = "\n".join(text.splitlines()[-25:])
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=int, default=480)
    parser.add_argument("--started", type=float, default=None, help="epoch seconds the budget counts from")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--install-log", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--steps", default="abcde", help="which steps to run, e.g. 'abd' (others: skipped)")
    parser.add_argument("--caps", default="", help="time boxes in seconds, e.g. 'a=150,b=100' (default per step)")
    args = parser.parse_args(argv)
    caps = {k: int(v) for k, v in (item.split("=") for item in args.caps.split(",") if item)}
    started = args.started or time.time()
    deadline = started + args.budget_s
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"environment": environment(args.dry_run, args.budget_s), "steps": []}
    if args.install_log and args.install_log.exists():
        report["install_log_tail"] = args.install_log.read_text(errors="replace").splitlines()[-15:]
    data = find_data(args.data)
    failed = False
    for step in build_steps(out, args.dry_run, data):
        left = int(deadline - time.time() - RESERVE_S)
        cap = caps.get(step.key, step.dry_cap_s if args.dry_run else step.cap_s)
        entry: dict[str, Any] = {"key": step.key, "title": step.title, "command": shlex.join(step.command),
                                 "env": step.env}
        min_s = min(step.min_s, cap) if not args.dry_run else 3
        if step.key not in args.steps:
            entry.update(status="skipped", seconds=0.0, note=f"not selected (--steps {args.steps})")
        elif left < min_s:
            entry.update(status="skipped", seconds=0.0,
                         note=f"budget exhausted: {max(left, 0)} s left, the step needs at least {min_s} s")
        else:
            print(f"gpu_check: ({step.key}) {step.title} [time box {min(cap, left)} s]", flush=True)
            entry.update(run_step(step, min(cap, left), out, args.dry_run))
            failed |= entry["status"] in ("failed", "timed out")
            print(f"gpu_check: ({step.key}) {entry['status']} in {entry['seconds']:.0f} s", flush=True)
        entry["results"] = step.results
        report["steps"].append(entry)
        report["total_s"] = time.time() - started
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "report.md").write_text(markdown(report))
    print(f"gpu_check: report in {out / 'report.md'} and report.json ({report['total_s']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
