#!/usr/bin/env bash
# The package as a user gets it: `python -m build` makes the sdist and, from the sdist, the wheel (so a
# file missing from the sdist fails here); the wheel must hold the three compiled kernel builds. A fresh
# virtual environment installs the wheel (the file itself; its dependencies from PyPI) and runs it from
# outside the checkout: `hybridref info`, a few steps of `train shakespeare` writing a checkpoint,
# --resume of the finished run (loads it, trains no further), and `evaluate` of it.
# Usage (from .ci/run, with the CI venv active): .ci/wheel_check.sh; HYBRIDREF_DATA names the data folder.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$SECONDS

python -m build --outdir "$work/dist" . > "$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
ls -l "$work/dist"
python - "$work/dist" <<'PY'
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + "/hybridref-*.whl")
names = zipfile.ZipFile(wheel).namelist()
for isa in ("scalar", "avx2", "avx512"):
    assert any(n.startswith(f"hybridref/_hrc_{isa}.") and n.endswith(".so") for n in names), (isa, "not in", wheel)
assert "hybridref/backends/c/library.py" in names and "hybridref/cli.py" in names
PY

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q "$work"/dist/hybridref-*.whl  # the file itself, never a package of that name
cd "$work"  # outside the checkout: nothing can be imported from the source tree
hr="$work/venv/bin/hybridref"
"$work/venv/bin/python" -c "import hybridref, sys; sys.exit(hybridref.__file__.startswith('$src'))"
"$hr" info
"$hr" train shakespeare --backend c --threads 1 --pattern MA --d-model 16 --steps 4 --batch-size 2 --block-size 32 \
    --warmup 1 --eval-every 2 --eval-batches 1 --checkpoint "$work/ck.safetensors" --checkpoint-every 2
"$hr" train shakespeare --backend c --threads 1 --pattern MA --d-model 16 --steps 4 --batch-size 2 --block-size 32 \
    --warmup 1 --eval-every 2 --eval-batches 1 --checkpoint "$work/ck.safetensors" --resume
"$hr" evaluate --backend c --threads 1 --checkpoint "$work/ck.safetensors" --block-size 32 --json
echo "wheel check: passed in $((SECONDS - start)) s"
