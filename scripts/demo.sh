#!/usr/bin/env bash
# make demo: the whole pipeline on the embedded sample model
# (samples/sample-model): calibrate, plan under a budget, apply, evaluate
# the original against the compressed model, and how to open the TUI.
# Everything it makes goes to demo-out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
A3=./a3
M=samples/sample-model
OUT=demo-out
BUDGET=${A3_DEMO_BUDGET:-params=25%}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "1/6  the sample model"
$A3 info "$M"

step "2/6  calibrate: statistics, loss curves and the NLL probe from samples/calib.txt"
$A3 calibrate "$M" --text samples/calib.txt --samples 32 --seqlen 256 --allow-short \
    -o "$OUT/sample.cache"
$A3 cache info "$OUT/sample.cache" | head -n 14

step "3/6  plan: remove ${BUDGET#*=} of the compressible parameters (greedy)"
$A3 plan "$OUT/sample.cache" --budget "$BUDGET" --strategy greedy --model "$M" -o "$OUT/plan.json"

step "4/6  apply: write the compressed model"
$A3 apply "$M" --cache "$OUT/sample.cache" --plan "$OUT/plan.json" -o "$OUT/sample-a3" --force

step "5/6  evaluate on held-out text: original and compressed side by side"
$A3 eval "$M" --text samples/eval.txt --seqlen 256 >"$OUT/eval-original.txt"
$A3 eval "$OUT/sample-a3" --text samples/eval.txt --seqlen 256 >"$OUT/eval-compressed.txt"
$A3 info "$M" >"$OUT/info-original.txt"
$A3 info "$OUT/sample-a3" >"$OUT/info-compressed.txt"
# One row per figure: original, compressed, and the change (compressed /
# original - 1) from the two runs' own outputs.
awk '
    function row(name, a, b) {
        printf "  %-20s %14s %14s %+9.1f%%\n", name, a, b, (a > 0 ? 100 * (b / a - 1) : 0)
    }
    FNR == 1 { f++ }
    /^mean NLL/    { nll[f] = $3 }
    /^perplexity/  { ppl[f] = $2 }
    /^speed/       { tps[f] = $2 }
    /^parameters/  { par[f] = $2 }
    /^KV cache/    { kv[f] = $3 }
    END {
        printf "  %-20s %14s %14s %10s\n", "", "original", "compressed", "change"
        row("perplexity", ppl[1], ppl[2])
        row("mean NLL (nats)", nll[1], nll[2])
        row("parameters", par[3], par[4])
        row("KV cache bytes/tok", kv[3], kv[4])
        row("tokens/s", tps[1], tps[2])
    }' "$OUT/eval-original.txt" "$OUT/eval-compressed.txt" "$OUT/info-original.txt" "$OUT/info-compressed.txt" |
    tee "$OUT/side-by-side.txt"
# The sample model was trained on lowercased stories.
for m in "$M" "$OUT/sample-a3"; do
    printf '\n%s:\n  ' "$m"
    $A3 generate "$m" --prompt "once upon a time" -n 48 | tr '\n' ' '
    echo
done

step "6/6  plan interactively"
echo "  ./a3 tui $OUT/sample.cache --plan $OUT/plan.json --model $M"
