#!/usr/bin/env bash
# Download, on a machine with network access, the wheels that tools/gpu_check.sh installs offline on a bare GPU box.
#
#   tools/gpu_wheels.sh DIR          # e.g. tools/gpu_wheels.sh gpu_wheels   (gpu_wheels/ is git-ignored)
#
# The GPU box is assumed to have CPython 3.12 on x86_64 Linux with torch (>= 2.11) and its triton and torchvision,
# pytest, numpy, Pillow, PyYAML and pluggy preinstalled, and no network. What the lsvr packages import beyond that:
#   pydantic (+ pydantic-core, annotated-types, typing-extensions, typing-inspection)   lsvr-core's configs
#   pycocotools                                                                         lsvr-data's COCO loader/evaluator
#   tqdm                                                                                lsvr-core's progress bars
#   setuptools, wheel                                                                   building the lsvr packages
#                                                                                       (--no-build-isolation; only
#                                                                                       installed if the box lacks them)
# Binary wheels only, for CPython 3.12 manylinux x86_64 (override with PY_VERSION=3.11 etc.). The list of what was
# downloaded goes to DIR/MANIFEST.txt.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -* ]]; then
  echo "usage: tools/gpu_wheels.sh DIR   (downloads the GPU check's wheels into DIR)" >&2
  exit 2
fi
dir="$1"
py_version="${PY_VERSION:-3.12}"
pip=(python3 -m pip)
mkdir -p "$dir"

# Each line: one requirement; --no-deps with every dependency listed explicitly, so nothing the box already has
# (numpy, torch, ...) is pulled in, and the set is reviewable here.
requirements=(
  "pydantic>=2.7,<3"
  "pydantic-core"          # exact version pinned by the pydantic wheel: resolved below
  "annotated-types>=0.6"
  "typing-extensions>=4.12"
  "typing-inspection>=0.4"
  "pycocotools>=2.0.7"
  "tqdm>=4.66"
  "setuptools>=70.1,<82"    # torch 2.11 asks setuptools<82
  "wheel>=0.43"
)
common=(download --only-binary=:all: --no-deps --python-version "$py_version" --implementation cp
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
        --dest "$dir")

# pydantic pins one pydantic-core version: download pydantic first and read the pin from its metadata.
"${pip[@]}" "${common[@]}" "${requirements[0]}"
pyd_wheel=$(ls -t "$dir"/pydantic-[0-9]*.whl | head -n 1)
core_pin=$(python3 - "$pyd_wheel" <<'EOF'
import re, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    text = zf.read(meta).decode()
print(re.search(r"^Requires-Dist: pydantic-core\s*\(?(==\s*[^;,\s)]+)", text, re.M).group(1).replace(" ", ""))
EOF
)
"${pip[@]}" "${common[@]}" "pydantic-core${core_pin}"
for req in "${requirements[@]:2}"; do
  "${pip[@]}" "${common[@]}" "$req"
done
(cd "$dir" && ls -1 ./*.whl | sed 's|^\./||' > MANIFEST.txt)
echo "gpu_wheels: $(wc -l < "$dir/MANIFEST.txt") wheels in $dir for CPython $py_version manylinux x86_64:"
cat "$dir/MANIFEST.txt"
