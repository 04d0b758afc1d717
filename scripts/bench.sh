#!/usr/bin/env bash
# make bench: speed figures, each printed beside the OpenBLAS kernel (and,
# for the forward pass, the sgemm rate) measured in the same run. Not part
# of `make check`; `make bench-scale` writes the longer report.
#   - a3 doctor: CPU, kernel, sgemm GFLOP/s
#   - forward pass: stories260K (when ../shared/data exists), the sample
#     model, a random-weight 2-layer model at d = 2048; the latter again with
#     the generic kernel (A3_NO_BLAS_FIX=1) to show what the fix is worth
#   - calibration: tokens/s, time over the forward pass, peak RSS vs estimate
#   - apply: seconds per layer; planner: allocation on a 7B-shaped cache
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
A3=$PWD/$BUILD/a3
B=$PWD/$BUILD/bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Benchmark programs are not the a3 binary: give them the kernel the a3
# binary would pick (a3 doctor prints it) unless the user chose one.
core=$("$A3" doctor 2>/dev/null | sed -n 's/.*kernel=\([A-Za-z0-9]*\).*/\1/p' | head -n 1)
[ -n "${OPENBLAS_CORETYPE:-}" ] || [ -z "$core" ] || export OPENBLAS_CORETYPE=$core

echo "== machine"
"$A3" doctor || true

echo "== forward pass"
shared=../shared/data/models/stories260K
"$A3" synth --like llama-1b --layers 2 -o "$tmp/d2048" >/dev/null
if [ -f "$shared/stories260K.bin" ]; then
    "$A3" convert "$shared/stories260K.bin" --tokenizer "$shared/tok512.bin" -o "$tmp/stories260K" >/dev/null
    "$B/bench_forward" "$tmp/stories260K" 512 16 5
else
    echo "forward  stories260K skipped: ../shared/data not found"
fi
[ -d samples/sample-model ] && "$B/bench_forward" samples/sample-model 256 16 5
"$B/bench_forward" "$tmp/d2048" 512 4 3
# What the kernel selection is worth: the same run on the generic kernel
# that OpenBLAS falls back to on CPUs it does not recognise.
echo "== forward pass on the generic kernel (OPENBLAS_CORETYPE=Prescott), same run"
OPENBLAS_CORETYPE=Prescott A3_NO_BLAS_FIX=1 "$B/bench_forward" "$tmp/d2048" 512 4 3

echo "== calibration"
[ -d "$tmp/stories260K" ] && "$B/bench_calib" "$tmp/stories260K" 64 512
"$B/bench_calib" "$tmp/d2048" 8 512

echo "== apply (solve + write, half of every component)"
[ -d "$tmp/stories260K" ] && "$B/bench_apply" "$tmp/stories260K" 8 128
"$B/bench_apply" "$tmp/d2048" 2 128

echo "== planner"
"$B/bench_plan" 5
echo "== planner TUI (synthetic 7B-shaped cache)"
"$A3" cache synth --like llama-7b --kv-heads 8 -o "$tmp/7b.a3c" >/dev/null
"$B/bench_tui" "$tmp/7b.a3c"

echo "== decoding and prefill against the bandwidth bound, llama.cpp and PyTorch"
BUILD=$BUILD scripts/bench_speed.py
