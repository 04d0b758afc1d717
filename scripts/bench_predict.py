#!/usr/bin/env python3
"""make bench-predict: the "predict" section of docs/PERFORMANCE.md
(between <!-- BEGIN predict --> and <!-- END predict -->; issue 11).

On a 7B-shaped synthetic model (`a3 synth --like llama-7b`, d 4096,
d_ff 11008, 32 heads of 128; LAYERS layers, default 2, random weights) it
measures:
  1. the exact curves of every method of one layer (`a3 probe
     --curves-only` after `calibrate --mlp-full`): the whole command's
     CPU time (from wait4: its own user + system seconds, all threads)
     and wall time, and the curves' own wall time as printed;
  2. the NLL probe (`a3 probe --ids`, 8 x 256 random tokens by default): CPU and
     wall seconds, the number of forward-pass equivalents it makes
     (counted from the layer runs: 1 clean pass, per layer 6 cuts run from
     that layer to the end, 1 joint pass), and from the measured seconds
     per layer-run the projection to 32 layers.
Under load the CPU seconds are the figures to read (the wall clock mostly
waits for other jobs); the load average is recorded. Takes 5-20 minutes
(the calibration with Ru is most of it). Usage:
  scripts/bench_predict.py [--out docs/PERFORMANCE.md] [--a3 ./a3]
                           [--layers N] [--probe-samples N] [--probe-seqlen L]
                           [--keep DIR]
"""
import argparse, json, os, re, struct, sys, time

import resultslib as R

def write_ids(path, n, vocab, seed=1):
    """n pseudo-random token ids (LCG, reproducible) as little-endian u32."""
    x = seed
    with open(path, "wb") as f:
        for _ in range(n):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            f.write(struct.pack("<I", 1 + x % (vocab - 1)))


def probe_counts(n):
    """(layer runs, NLL evaluations) of the probe of an n-layer model
    (src/calib/probe.c): the clean pass (n layer runs, 1 NLL), 6 cuts per
    layer l each run from l to the end (6 (n - l) runs, 6 NLLs), the joint
    pass (n runs, 1 NLL)."""
    return n + sum(6 * (n - l) for l in range(n)) + n, 1 + 6 * n + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/PERFORMANCE.md")
    ap.add_argument("--a3", default="./a3")
    ap.add_argument("--layers", type=int, default=2, help="layers of the synthetic model (>= 2: the "
                    "probe's cost is split into layer runs and NLL evaluations from two equations)")
    ap.add_argument("--like", default="llama-7b", help="a3 synth preset (another one only for a smoke test)")
    ap.add_argument("--probe-samples", type=int, default=8, help="probe windows (a3 probe's default 8)")
    ap.add_argument("--probe-seqlen", type=int, default=256, help="probe tokens per window (default 256)")
    ap.add_argument("--keep", help="work in DIR and keep it (the model is reused when present)")
    args = ap.parse_args()
    a3 = os.path.abspath(args.a3)
    PROBE_SAMPLES, PROBE_SEQLEN = args.probe_samples, args.probe_seqlen
    if args.layers < 2:
        R.die("--layers: at least 2 (the probe's cost is solved for from two equations)")
    t_start = time.time()
    load0 = os.getloadavg()[0]
    ctx = R.workdir("a3bpred.") if not args.keep else R.kept_dir(args.keep)
    with ctx as w:
        model, ids, cache = os.path.join(w, "m7b"), os.path.join(w, "ids.bin"), os.path.join(w, "c.cache")
        if not os.path.exists(os.path.join(model, "config.json")):
            R.run([a3, "synth", "--like", args.like, "--layers", str(args.layers), "-o", model])
        with open(os.path.join(model, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        write_ids(ids, 8 * 512, vocab)
        print("bench_predict: calibrating (--mlp-full, 4 x 512 tokens)...", file=sys.stderr)
        cal = R.run_full([a3, "calibrate", model, "--ids", ids, "--samples", "4", "--seqlen", "512", "--mlp-full",
                          "--no-probe", "-o", cache])
        os.remove(cache + ".pred")  # calibrate wrote the curves; time them alone
        print("bench_predict: exact curves...", file=sys.stderr)
        cur = R.run_full([a3, "probe", model, "--cache", cache, "--curves-only"])
        m = re.search(r"exact curves \((\w+) MLP\).*\(([0-9.]+) s\)", cur.err)
        if not m or m.group(1) != "exact":
            R.die("a3 probe --curves-only did not report exact MLP curves:\n" + cur.err[-500:])
        curves_wall = float(m.group(2))
        print("bench_predict: NLL probe (%d x %d tokens)..." % (PROBE_SAMPLES, PROBE_SEQLEN), file=sys.stderr)
        prb = R.run_full([a3, "probe", model, "--cache", cache, "--ids", ids, "--samples", str(PROBE_SAMPLES),
                          "--seqlen", str(PROBE_SEQLEN)])
        m = re.search(r"NLL sensitivities of (\d+) layers on (\d+) tokens.*\(([0-9.]+) s\)", prb.err)
        if not m:
            R.die("a3 probe printed no summary:\n" + prb.err[-500:])
        probe_wall = float(m.group(3))
        # one plain forward pass + NLL over the same tokens: separates the
        # cost of a layer run from that of an NLL evaluation (lm_head)
        ev = R.run_full([a3, "eval", model, "--ids", ids, "--seqlen", str(PROBE_SEQLEN), "--max-seqs",
                         str(PROBE_SAMPLES)])
        machine = R.machine(a3)
    nl = args.layers
    runs, nlls = probe_counts(nl)
    # CPU model: the probe's CPU seconds are proportional to its flops
    # (the same count a3_probe_cost_flops makes: a layer run is the
    # projections plus causal attention over seqlen / 2 keys per token; an
    # NLL evaluation the lm_head over the vocabulary), one rate fitted on
    # the probe itself. (Solving two equations from the probe and the eval
    # row instead gave a negative layer cost: eval's fixed costs, opening
    # the model and faulting its pages, weigh on one pass and not on 22.)
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    d, ff, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or d // nh
    q, kv = nh * hd, nkv * hd
    layer_f = 2 * d * (q + 2 * kv) + 2 * q * d + 6 * d * ff + 2 * q * PROBE_SEQLEN  # per token
    nll_f = 2 * d * vocab
    tokens0 = PROBE_SAMPLES * PROBE_SEQLEN
    rate = prb.cpu / (tokens0 * (runs * layer_f + nlls * nll_f))  # CPU s per flop
    a, b = rate * tokens0 * layer_f, rate * tokens0 * nll_f
    runs32, nlls32 = probe_counts(32)
    tokens = PROBE_SAMPLES * PROBE_SEQLEN
    tokens_cal = 4 * 512
    L = ["## Exact curves and the NLL probe (issue 11)", "",
         "Produced by `make bench-predict` (scripts/bench_predict.py) in %.0f s wall; %s at the end (%.1f "
         "at the start; OPENBLAS_CORETYPE=%s in the environment), a3 on its default threads (all %d cores). "
         "CPU seconds are the a3 process's own (user + system, all threads, from wait4): the figures to "
         "compare; wall seconds depend on the other jobs on the machine." % (
             time.time() - t_start, machine, load0, os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
             os.cpu_count() or 0), "",
         "Model: `a3 synth --like %s --layers %d`%s, calibrated with `--mlp-full` on 4 x 512 random "
         "tokens (%.0f CPU s, %.0f s wall)." % (
             args.like, nl, " (d 4096, d_ff 11008, 32 heads of 128, random weights)" if args.like == "llama-7b"
             else " (NOT the 7B shape: a smoke test)", cal.cpu, cal.wall), "",
         "| step | CPU s | wall s |", "|---|---:|---:|",
         "| `a3 probe --curves-only`, %d layer(s) (whole command: load the cache with Ru, every curve of "
         "every method) | %.1f | %.1f |" % (nl, cur.cpu, cur.wall),
         "| of which the curves (as printed by a3) | | %.1f |" % curves_wall,
         "| `a3 probe --ids`, %d x %d = %d tokens (curves reused): %d layer runs, %d NLL evaluations | "
         "%.1f | %.1f |" % (PROBE_SAMPLES, PROBE_SEQLEN, tokens, runs, nlls, prb.cpu, prb.wall),
         "| `a3 eval --ids` on the same tokens (%d layer runs, 1 NLL evaluation) | %.1f | %.1f |" % (
             nl, ev.cpu, ev.wall),
         "", "- **Exact curves of one 7B-shaped layer: %.1f CPU s, %.1f s wall** (the whole `--curves-only` "
         "command divided by the %d layer(s), loading the cache with its Ru included; the curves alone "
         "%.1f s wall per layer, as printed); a 32-layer model: %.0f CPU s, linear in the layers. The "
         "work (include/a3/pred.h) is d_ff^2 d flops for G = W_d[P,:] W_d[P,:]^T (dsyrk), d_ff^3 / 3 for "
         "the Cholesky factor of Ru in the A3 order P (dpotrf: the growing-Cholesky recurrence in blocked "
         "form) and d_ff^2 d for Y = L^T W_d[P,:] (dtrmm): about 1.44e12 flops in double precision, all "
         "BLAS-3, plus O(d_ff^2 + d_ff d) sequential passes (the CUR curves of both orders from H = G o "
         "Ru[P,P]); work space 2 d_ff^2 + d_ff d doubles = 2.1 GiB, on top of the cache's Ru (0.9 GiB "
         "per layer). %s" % (cur.cpu / nl, cur.wall / nl, nl, curves_wall / nl, 32 * cur.cpu / nl,
                             ("Here Ru is singular (rank at most %d calibration tokens < d_ff %d): the "
                              "undamped dpotrf is expected to stop near column %d and be redone damped, "
                              "up to ~2e11 extra flops (~14%%, estimated, not timed) that a calibration "
                              "with more tokens than d_ff does not make." % (tokens_cal, 11008, tokens_cal)) if args.like == "llama-7b" else ""),
         "- Calibration (`--mlp-full`, %d tokens): %.1f CPU s per layer." % (tokens_cal, cal.cpu / nl),
         "- **Probe cost**: per layer run (one layer over the %d probe tokens) %.2f CPU s, per NLL "
         "evaluation (final norm, lm_head over the vocabulary, NLL) %.2f CPU s: the probe's CPU seconds "
         "split by flops, i.e. %.1f GFLOP per CPU second (a plain `a3 eval` pass over the same tokens ran "
         "at %.1f, the probe's runs carry more bookkeeping per flop). A 32-layer 7B model makes %d layer runs (= %.0f forward-pass equivalents) "
         "and %d NLL evaluations: projected **%.0f CPU s (%.1f CPU min)** for %d probe tokens, linear in "
         "the token count (a projection from the measured costs, not a 32-layer timing). The probe is "
         "optional (`a3 plan` works on the exact curves without it; `a3 calibrate` runs it by default only "
         "when it is estimated at most 1e12 flops or a quarter of the calibration, which a 7B model "
         "does not meet) and resumable (saved after every layer)." % (
             tokens, a, b, 1e-9 / rate, 1e-9 * tokens0 * (nl * layer_f + nll_f) / ev.cpu, runs32, runs32 / 32, nlls32, runs32 * a + nlls32 * b,
             (runs32 * a + nlls32 * b) / 60, tokens)]
    text = "\n".join(L)
    R.replace_section(args.out, "predict", text)
    print("bench_predict: wrote the predict section of %s" % args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
