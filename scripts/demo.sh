#!/usr/bin/env bash
# make demo: the whole pipeline that exists so far, on the embedded sample
# model (samples/sample-model). Grows with the product.
set -eu
cd "$(dirname "$0")/.."
A3=./a3
M=samples/sample-model
out=demo-out
mkdir -p "$out"

echo "== 1. the model"
$A3 info "$M"
echo
echo "== 2. perplexity of the original on held-out text"
$A3 eval "$M" --text samples/eval.txt --seqlen 256
echo
echo "== 3. greedy generation"
$A3 generate "$M" --prompt "Once upon a time" -n 60
echo
echo "Calibration, planning, the A3 reduction and the TUI are not built yet"
echo "(issues 3-6); this demo will run them here as they land."
