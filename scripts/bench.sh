#!/usr/bin/env bash
# make bench: speed figures, each printed beside the sgemm rate and the
# OpenBLAS kernel measured in the same run. Not part of `make check`.
#   - a3 doctor: CPU, kernel, sgemm GFLOP/s
#   - forward-pass throughput: stories260K (when ../shared/data exists), the
#     embedded sample, and a random-weight 2-layer model at d = 2048
#   - the same forward pass with the generic kernel (A3_NO_BLAS_FIX=1), to
#     show what the kernel fix is worth
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
A3=$PWD/$BUILD/a3
BF=$PWD/$BUILD/bench/bench_forward
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== machine"
"$A3" doctor || true

echo "== forward pass"
shared=../shared/data/models/stories260K
if [ -f "$shared/stories260K.bin" ]; then
    "$A3" convert "$shared/stories260K.bin" --tokenizer "$shared/tok512.bin" -o "$tmp/stories260K" >/dev/null
    "$BF" "$tmp/stories260K" 512 16 5
else
    echo "forward  stories260K skipped: ../shared/data not found"
fi
[ -d samples/sample-model ] && "$BF" samples/sample-model 256 16 5
"$A3" synth --like llama-1b --layers 2 -o "$tmp/d2048" >/dev/null
"$BF" "$tmp/d2048" 512 4 3
echo "== forward pass with the generic kernel (A3_NO_BLAS_FIX=1)"
A3_NO_BLAS_FIX=1 "$BF" "$tmp/d2048" 512 4 3
