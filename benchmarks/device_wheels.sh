#!/usr/bin/env bash
# Wheels that benchmarks/gpu_suite.sh needs on a lent GPU machine and that its image lacks,
# downloaded (or built) here into .whl/ at the repo root (git-ignored), for `carry`.
#
#   benchmarks/device_wheels.sh          # then run the suite as benchmarks/README.md shows
#
# The image has Python 3.12 with torch, numpy, scipy, opencv-python-headless, pillow,
# safetensors, tqdm, matplotlib, torchmetrics (its list: the device's KINDS.md). What the
# suite's rows import beyond that (checked by running `TINY=1 benchmarks/gpu_suite.sh` in a
# venv holding only those packages):
#   python_speech_features  bench_eval's LSE-D (the SyncNet MFCC, both paths); PyPI has
#                           only its source, so pip builds the pure-Python wheel here.
# PyAV is not needed: asccl.data.video imports it where it decodes or encodes, and no row
# does. Refuses when the wheels pass MAX_MIB (the working tree that travels is 64 MiB).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.whl"
py=${PYTHON:-python3}
max_mib=${MAX_MIB:-50}

# binary wheels: NAME==VERSION for cp312 manylinux x86_64 (none needed at present)
binary=()
# pure-Python packages that PyPI serves as source only: built here, py3-none-any
pure=("python_speech_features==0.6")

mkdir -p "$out"
rm -f "$out"/*.whl  # one version of each: two stop the install there
for spec in "${binary[@]}"; do
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$out" "$spec"
done
for spec in "${pure[@]}"; do
    "$py" -m pip wheel -q --no-deps -w "$out" "$spec"
done
for whl in "$out"/*.whl; do
    case "$(basename "$whl")" in
        *-py3-none-any.whl | *-cp312-*manylinux*x86_64*.whl) ;;
        *) echo "device_wheels: $whl will not install on the device (cp312 x86_64)" >&2; exit 1 ;;
    esac
done

total=0
for whl in "$out"/*.whl; do
    size=$(stat -c %s "$whl")
    total=$((total + size))
    printf '%10d  %s\n' "$size" "$(basename "$whl")"
done
printf '%10d  total bytes in %s (limit %d MiB)\n' "$total" "$out" "$max_mib"
if [ "$total" -gt $((max_mib * 1024 * 1024)) ]; then
    echo "device_wheels: over $max_mib MiB: the working tree that travels is 64 MiB" >&2
    exit 1
fi
