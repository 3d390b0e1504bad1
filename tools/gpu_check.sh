#!/usr/bin/env bash
# One command that proves the GPU path on a bare GPU machine (issue 15): offline install, `lsvr env`, then
#   (a) pytest -m gpu on the ops and LESA kernels
#   (b) tools/bench_ops.py --mode cuda          DCN / pyramid DCN vs torchvision at the LSNet head shapes
#   (c) tools/bench_attention.py                relpos attention vs reference, SDPA and FlexAttention (LESA shapes)
#   (d) tools/bench_train_step.py               LSNet R-50 FPN train step 1333x800 batch 2: fp32+torchvision DCN
#                                               vs bf16+Triton kernels
#   (e) lsvr run lsnet:coco_mini_bbox           50 iterations on the GPU (loss falls, metrics written)
# each time-boxed within --budget-s (later steps are skipped with a note when the budget is spent), and one report
# (report.md + report.json: device, driver, versions, commit, every step's status, time and results) in --out.
#
#   tools/gpu_check.sh [--wheels DIR] [--out DIR] [--budget-s N] [--data DIR] [--python PY] [--dry-run]
#                      [--steps abcde] [--caps a=110,b=130,c=100,d=90,e=150]
#
#   --wheels DIR   wheels from tools/gpu_wheels.sh (run on a networked machine); installed with
#                  pip --no-index --no-deps into a venv that sees the system site-packages (torch, triton, ...)
#   --out DIR      report folder (default gpu_check_out/, git-ignored)
#   --budget-s N   total seconds for install + steps (default 480)
#   --data DIR     folder holding coco_mini/ (default: $LSVR_DATA, ./shared/data or ../shared/data)
#   --python PY    interpreter with torch preinstalled (default python3)
#   --steps LIST   run only these steps (the others are reported as not selected)
#   --caps LIST    per-step time boxes in seconds (defaults above; a step never gets more than the budget left)
#   --dry-run      no install (uses the current environment), CPU: the Triton interpreter, tiny shapes, few
#                  iterations; proves the script works (CI runs it: tests/test_gpu_check_dry_run.py)
# Exit status: 0 when every step that ran passed, 1 when a step failed, 2 for a usage error.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
start=$(date +%s)
wheels="" out="$root/gpu_check_out" budget=480 data="" python="${PYTHON:-python3}" dry_run=0 steps=abcde caps=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) wheels="${2:?--wheels needs a folder}"; shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --budget-s) budget="${2:?--budget-s needs seconds}"; shift 2 ;;
    --data) data="${2:?--data needs a folder}"; shift 2 ;;
    --python) python="${2:?--python needs an interpreter}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --steps) steps="${2:?--steps needs letters, e.g. abd}"; shift 2 ;;
    --caps) caps="${2:?--caps needs e.g. a=150,b=100}"; shift 2 ;;
    -h|--help) usage ;;
    *) echo "gpu_check: unknown argument '$1' (see tools/gpu_check.sh --help)" >&2; exit 2 ;;
  esac
done
[[ "$budget" =~ ^[0-9]+$ ]] || { echo "gpu_check: --budget-s must be whole seconds, got '$budget'" >&2; exit 2; }
mkdir -p "$out" || exit 2
out="$(cd "$out" && pwd)"
install_log="$out/install.log"
: > "$install_log"

packages=(lsvr-core lsvr-ops-triton lsvr-data lsvr-lsnet lsvr-lesa lsvr-mutualguide)
if [[ $dry_run -eq 1 ]]; then
  echo "gpu_check: dry run: nothing installed, using $(command -v "$python")" | tee -a "$install_log"
else
  # A venv that sees the given interpreter's packages: torch/triton/torchvision stay the box's own, nothing in
  # that environment changes. --system-site-packages covers a system/conda python; a .pth listing the
  # interpreter's own site-packages covers one that is itself a venv (whose packages the flag would not show).
  venv="$out/venv"
  if "$python" -m venv --system-site-packages "$venv" >>"$install_log" 2>&1; then
    base_sites=$("$python" -c "import site; print('\n'.join(site.getsitepackages()))")
    venv_site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    printf '%s\n' "$base_sites" > "$venv_site/_gpu_check_base_env.pth"
    python="$venv/bin/python"
  else
    echo "gpu_check: could not create a venv; installing into $python's environment" | tee -a "$install_log"
  fi
  pip=("$python" -m pip install --no-index --no-deps --disable-pip-version-check)
  if [[ -n "$wheels" ]]; then
    # setuptools/wheel only when the box's cannot build the packages: pyproject asks setuptools>=68, and an
    # editable build needs bdist_wheel (built into setuptools>=70.1, else the wheel package)
    if ! "$python" - 2>/dev/null <<'EOF'
import importlib.util, sys, setuptools
v = tuple(int(x) for x in setuptools.__version__.split(".")[:2])
sys.exit(0 if v >= (70, 1) or (v >= (68, 0) and importlib.util.find_spec("wheel")) else 1)
EOF
    then
      "${pip[@]}" "$wheels"/setuptools-*.whl "$wheels"/wheel-*.whl >>"$install_log" 2>&1
    fi
    mapfile -t deps < <(ls "$wheels"/*.whl | grep -v -E '/(setuptools|wheel)-[0-9]')
    echo "gpu_check: installing ${#deps[@]} wheels from $wheels" | tee -a "$install_log"
    "${pip[@]}" "${deps[@]}" >>"$install_log" 2>&1 || { echo "gpu_check: wheel install failed, see $install_log" >&2; }
  fi
  editable=()
  for p in "${packages[@]}"; do editable+=(-e "$root/packages/$p"); done
  echo "gpu_check: installing the lsvr packages (editable, --no-build-isolation)" | tee -a "$install_log"
  if ! "${pip[@]}" --no-build-isolation "${editable[@]}" >>"$install_log" 2>&1; then
    echo "gpu_check: installing the lsvr packages failed (tail of $install_log):" >&2
    tail -n 20 "$install_log" >&2
    echo "gpu_check: continuing; the steps below will report what cannot be imported" >&2
  fi
fi
"$python" -c "import sys; from lsvr_core.cli.main import main; sys.exit(main(['env']))" 2>&1 | tee "$out/lsvr_env.txt"

args=(--out "$out" --budget-s "$budget" --started "$start" --install-log "$install_log" --steps "$steps")
[[ -n "$caps" ]] && args+=(--caps "$caps")
[[ -n "$data" ]] && args+=(--data "$data")
[[ $dry_run -eq 1 ]] && args+=(--dry-run)
exec "$python" "$root/tools/gpu_check.py" "${args[@]}"
