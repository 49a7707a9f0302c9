#!/usr/bin/env bash
# Every GPU row of issue 18 in one command, each row time-bounded.
#
#   benchmarks/gpu_suite.sh              # CUDA: < 8 min on one H100 by construction
#   TINY=1 benchmarks/gpu_suite.sh       # CPU, tiny sizes: every row runs end to end
#   benchmarks/gpu_suite.sh --tiny       # the same
#
# Rows (GPU budget, seconds; a row that reaches its budget is killed, reported as TIMEOUT,
# and the suite goes on, so the whole run takes at most the sum, 450 s, plus start-up):
#   reader          45  bench_reader.py: per-clip stores vs frame pack vs the decode floor
#                       on this host (500 clips x 40 frames, 224 px); its store (packed)
#                       feeds the loader rows below
#   train           120  bench_train.py: reference vs asccl at batch 16, 32, 64, 128, bf16,
#                       channels_last; loader-fed (8 workers, the pack above) vs on-device;
#                       host syncs per step; peak memory; achieved TFLOP/s vs bf16 peak
#   train_compile   150  bench_train.py --compile at batch 64 (the same rows, compiled)
#   loss             25  bench_loss.py at batch 16, bf16, channels_last
#   spfem            40  bench_spfem.py at paper scale (GANmut 128 px, batch 16, n_critic 5,
#                       iresnet50 at 224, bf16)
#   eval             45  bench_eval.py: FID features (200 images) and LSE-D
#   render           25  bench_render.py at batch 16
#
# Environment: PYTHON (default .venv/bin/python, else python), SUITE_DIR (logs, the
# reader's store and the train rows' train.json / train_compile.json, written after every
# section of bench_train, so a row killed at its budget keeps what it measured; default a
# temp dir, removed at the end unless SUITE_KEEP=1).
# Before the train rows the suite checks that the reader row left its pairs.csv (without it
# the train rows run on random pixels with --no-loader: no loader-fed or reader rows) and
# prints the free size of /dev/shm (DataLoader workers pass batches through it).
set -u

tiny=${TINY:-0}
[ "${1:-}" = "--tiny" ] && tiny=1
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
py=${PYTHON:-}
if [ -z "$py" ]; then
    if [ -x "$root/.venv/bin/python" ]; then py="$root/.venv/bin/python"; else py=python; fi
fi
work=${SUITE_DIR:-$(mktemp -d -t gpu_suite.XXXXXX)}
mkdir -p "$work"
cleanup() { [ -z "${SUITE_DIR:-}" ] && [ "${SUITE_KEEP:-0}" != 1 ] && rm -rf "$work"; }
trap cleanup EXIT
export PYTHONPATH="$root/src:$here${PYTHONPATH:+:$PYTHONPATH}"

if [ "$tiny" = 1 ]; then
    mode="tiny (CPU)"
    # one thread per process: on a small shared CPU, 2+ OpenMP threads per process
    # measured several times slower than 1 (the tiny mode checks the rows run, not speed)
    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    dev=(--device cpu)
    reader=(--clips 24 --frames 6 --size 64 --distinct 4 --pairs 20 --rounds 1)
    train=(--backbone iresnet18 --image-size 64 --batches 1,2 --steps 1 --repeats 1
           --warmup 1 --loader-steps 1 --loader-warmup 1 --workers 2 --read-items 10)
    compile=(--compile --compile-backend eager --batches 2)  # dynamo without inductor
    loss=(--batch 2 --backbone iresnet18 --steps 1 --warmup 1)
    # metric size = image size: CPU has no bf16 antialiased resize (CUDA has)
    spfem=(--size 64 --batch 2 --width 8 --backbone iresnet18 --metric-size 64 --steps 1
           --warmup 1)
    eval=(--images 4 --frames 10 --batch 4 --repeats 1)
    render=(--batch 1 --backbone iresnet18 --size 64 --steps 1 --warmup 1 --threads 1)
    budgets=(reader=60 train=120 train_compile=120 loss=60 spfem=60 eval=90 render=60)
else
    mode="GPU (CUDA)"
    dev=(--device cuda)
    reader=(--clips 500 --frames 40 --pairs 1000 --rounds 3)
    train=(--batches 16,32,64,128 --steps 10 --repeats 3 --warmup 3 --loader-steps 40
           --loader-warmup 5 --workers 8)
    compile=(--compile --batches 64)
    loss=(--batch 16)
    spfem=(--model ganmut --size 128 --batch 16 --backbone iresnet50 --metric-size 224
           --n-critic 5 --steps 10)
    eval=(--images 200)
    render=(--batch 16)
    budgets=(reader=45 train=120 train_compile=150 loss=25 spfem=40 eval=45 render=25)
fi
budget() { for kv in "${budgets[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; }

declare -a summary
row() {  # row NAME COMMAND...: run with its budget, log, one summary line
    local name=$1; shift
    local limit; limit=$(budget "$name")
    echo
    echo "=== ROW $name (budget ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$work/$name.log" 2>&1
    local rc=$? took=$((SECONDS - start))
    grep -v -e '^pack:' -e 'it/s\]' "$work/$name.log" | tail -n 80
    local status=OK
    if [ $rc = 124 ] || [ $rc = 137 ]; then status=TIMEOUT; elif [ $rc != 0 ]; then status="FAILED (exit $rc)"; fi
    summary+=("$(printf '%-14s %-18s %4d s / %4d s' "$name" "$status" "$took" "$limit")")
}

echo "gpu_suite: $mode; python $py; logs in $work"
"$py" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(),
    '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"

row reader "$py" "$here/bench_reader.py" "${reader[@]}" --dir "$work/reader"
echo
if [ -f "$work/reader/pairs.csv" ]; then
    data=(--data "$work/reader")
else
    echo "train rows: the reader row left no $work/reader/pairs.csv; the loader-fed (c) and"
    echo "  reader parts are SKIPPED (--no-loader: on-device rows on random pixels only)"
    data=(--no-loader)
fi
shm_kib=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -z "$shm_kib" ]; then
    echo "/dev/shm: not found; DataLoader workers may fail (fewer --workers, or 0)"
else
    echo "/dev/shm: $((shm_kib / 1024)) MiB free"
    if [ "$shm_kib" -lt $((2 * 1024 * 1024)) ]; then
        echo "  warning: under 2 GiB; DataLoader workers can die of SIGBUS (Bus error) on it:"
        echo "  give the container more (docker run --shm-size=8g) or use fewer --workers"
    fi
fi
amp=(--amp bf16 --channels-last)
row train "$py" "$here/bench_train.py" "${dev[@]}" "${amp[@]}" --flops "${train[@]}" \
    "${data[@]}" --json "$work/train.json"
row train_compile "$py" "$here/bench_train.py" "${dev[@]}" "${amp[@]}" --flops "${train[@]}" \
    "${data[@]}" "${compile[@]}" --json "$work/train_compile.json"
row loss "$py" "$here/bench_loss.py" "${dev[@]}" "${amp[@]}" "${loss[@]}"
row spfem "$py" "$here/bench_spfem.py" "${dev[@]}" --amp bf16 "${spfem[@]}"
row eval "$py" "$here/bench_eval.py" "${dev[@]}" "${amp[@]}" "${eval[@]}"
row render "$py" "$here/bench_render.py" "${dev[@]}" "${render[@]}"

echo
echo "=== SUMMARY ($mode): row, status, seconds / budget"
failed=0
for line in "${summary[@]}"; do
    echo "$line"
    case "$line" in *OK*) ;; *) failed=1 ;; esac
done
echo
for name in train train_compile; do
    if [ -f "$work/$name.json" ]; then echo "$name results (JSON): $work/$name.json"
    else echo "$name results (JSON): none written"; fi
done
if [ -z "${SUITE_DIR:-}" ] && [ "${SUITE_KEEP:-0}" != 1 ]; then
    echo "(logs and JSON are removed at exit: set SUITE_DIR=DIR or SUITE_KEEP=1 to keep them)"
fi
exit $failed
