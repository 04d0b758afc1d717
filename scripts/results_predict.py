#!/usr/bin/env python3
"""make results (part "predict", issue 11): predicted against measured NLL
change, greedy against uniform, and the choice of defaults, written between
<!-- BEGIN predict --> and <!-- END predict --> in docs/RESULTS.md.

Models: stories260K (../shared/data, converted with `a3 convert`) and the
sample model (samples/sample-model). Each is calibrated with --mlp-full and
probed (`a3 probe`) on its CALIBRATION text (never the evaluation text):
  stories260K  calibrate: tinystories/train-head.txt, 64 x 512 tokens;
               probe: the same file, 8 windows x 512, another seed;
               DEV: valid-head.txt paragraphs 1-250, TEST: paragraphs
               251-500 (reference protocol: BOS, cut to 512 tokens)
  sample       calibrate: samples/calib.txt, 64 x 512; probe: same file,
               8 x 512, another seed; DEV: first half of samples/eval.txt,
               TEST: second half (stream protocol, windows of 512)
Defaults are chosen on DEV (greedy plans of each method set at every
budget); every table of predicted vs measured reports TEST.
Usage: scripts/results_predict.py [--out docs/RESULTS.md] [--a3 ./a3]
"""
import argparse, json, math, os, re, shutil, subprocess, sys, tempfile, time

SHARED = "../shared/data"
BUDGETS = ["params=10%", "params=20%", "params=30%", "params=40%", "kv=10%", "kv=20%", "kv=30%"]
METHOD_SETS = [  # name, qk, ov, mlp
    ("A3 + refit", "a3", "a3", "a3-refit"),
    ("A3", "a3", "a3", "a3"),
]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("results_predict: command failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr[-2000:]))
    return r.stdout


def split_paragraphs(src, dst_dev, dst_test, n=500):
    paras = [p for p in re.split(r"\n\s*\n", open(src, encoding="utf-8").read()) if p.strip()][:n]
    half = len(paras) // 2
    open(dst_dev, "w").write("\n\n".join(paras[:half]) + "\n")
    open(dst_test, "w").write("\n\n".join(paras[half:]) + "\n")


def split_bytes(src, dst_dev, dst_test):
    text = open(src, encoding="utf-8").read()
    cut = text.rfind("\n", 0, len(text) // 2) + 1
    open(dst_dev, "w").write(text[:cut])
    open(dst_test, "w").write(text[cut:])


class Model:
    def __init__(self, a3, name, path, calib, proto, dev, test):
        self.a3, self.name, self.path, self.calib, self.proto = a3, name, path, calib, proto
        self.dev, self.test = dev, test

    def nll(self, model, split):
        args = [self.a3, "eval", model, "--text", self.dev if split == "dev" else self.test, "--seqlen", "512"]
        if self.proto == "paragraphs":
            args += ["--protocol", "paragraphs"]
        return float(re.search(r"mean NLL\s+([0-9.]+)", run(args)).group(1))


def prepare(a3, m, tmp):
    m.cache = os.path.join(tmp, m.name + ".cache")
    t0 = time.time()
    run([a3, "calibrate", m.path, "--text", m.calib, "--samples", "64", "--seqlen", "512", "--seed", "0",
         "--mlp-full", "--allow-short", "-o", m.cache])
    m.t_calib = time.time() - t0
    t0 = time.time()
    run([a3, "probe", m.path, "--cache", m.cache, "--text", m.calib, "--samples", "8", "--seqlen", "512",
         "--seed", "7"])
    m.t_probe = time.time() - t0
    m.base = {s: m.nll(m.path, s) for s in ("dev", "test")}


def plan_eval(a3, m, tmp, budget, strategy, ms, splits):
    _, qk, ov, mlp = ms
    p = os.path.join(tmp, "p.json")
    run([a3, "plan", m.cache, "--budget", budget, "--strategy", strategy, "--method-qk", qk, "--method-ov", ov,
         "--method-mlp", mlp, "-o", p])
    s = json.load(open(p))["summary"]
    out = os.path.join(tmp, "out")
    run([a3, "apply", m.path, "--cache", m.cache, "--plan", p, "-o", out, "--force"])
    meas = {sp: m.nll(out, sp) - m.base[sp] for sp in splits}
    return s["predicted"]["nll_change"], meas, s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/RESULTS.md")
    ap.add_argument("--a3", default="./a3")
    args = ap.parse_args()
    a3 = os.path.abspath(args.a3)
    if not os.path.exists(SHARED + "/models/stories260K/stories260K.bin"):
        sys.exit("results_predict: ../shared/data not found")
    t_start = time.time()
    tmp = tempfile.mkdtemp(prefix="a3pred.")
    rows, chosen, notes = [], {}, []
    try:
        st = os.path.join(tmp, "stories260K")
        run([a3, "convert", SHARED + "/models/stories260K/stories260K.bin", "--tokenizer",
             SHARED + "/models/stories260K/tok512.bin", "-o", st])
        split_paragraphs(SHARED + "/text/tinystories/valid-head.txt", tmp + "/st-dev.txt", tmp + "/st-test.txt")
        split_bytes("samples/eval.txt", tmp + "/sm-dev.txt", tmp + "/sm-test.txt")
        models = [Model(a3, "sample", os.path.abspath("samples/sample-model"), "samples/calib.txt", "stream",
                        tmp + "/sm-dev.txt", tmp + "/sm-test.txt"),
                  Model(a3, "stories260K", st, SHARED + "/text/tinystories/train-head.txt", "paragraphs",
                        tmp + "/st-dev.txt", tmp + "/st-test.txt")]
        done = []
        for m in models:
            prepare(a3, m, tmp)
            print("results_predict: %s calibrated (%.0f s) and probed (%.0f s); base NLL dev %.4f test %.4f"
                  % (m.name, m.t_calib, m.t_probe, m.base["dev"], m.base["test"]), file=sys.stderr)
            dev_of = {}
            for ms in METHOD_SETS:
                for b in BUDGETS:
                    for strat in ("greedy", "uniform"):
                        pred, meas, s = plan_eval(a3, m, tmp, b, strat, ms, ("dev", "test"))
                        rows.append((m.name, ms[0], b, strat, pred, meas["test"], s["removed_percent"]))
                        dev_of[(ms[0], b, strat)] = meas["dev"]
                        print("results_predict: %s %-28s %-10s %-7s pred %+.4f test %+.4f dev %+.4f"
                              % (m.name, ms[0], b, strat, pred, meas["test"], meas["dev"]), file=sys.stderr)
            # defaults on DEV: the method set with the lowest dev NLL change, budget by budget
            wins = {}
            for b in BUDGETS:
                best = min(METHOD_SETS, key=lambda ms: dev_of[(ms[0], b, "greedy")])[0]
                wins[best] = wins.get(best, 0) + 1
            chosen[m.name] = (wins, dev_of)
            done.append(m)
            write(args.out, rows, chosen, done, time.time() - t_start)  # after each model
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write(path, rows, chosen, models, secs):
    L = ["<!-- BEGIN predict -->", "## Predicted against measured NLL change (issue 11)", "",
         "Produced by `make results` (scripts/results_predict.py) in %.0f s on the shared 2-core machine "
         "(OpenBLAS Zen kernel; load from other jobs varies, so no timing here is a benchmark). "
         "Each model is calibrated with `--mlp-full` (64 x 512 tokens) and probed with `a3 probe` (8 x 512 "
         "tokens) on its calibration text; plans come from `a3 plan` with the probe (greedy ranks removals by "
         "predicted NLL per unit of cost); every plan is applied and evaluated. **Measured** is the change of "
         "the mean next-token NLL on the **TEST** split against the original model; **predicted** is the plan "
         "summary's `predicted.nll_change`; ratio = predicted / measured. DEV/TEST: stories260K "
         "`valid-head.txt` paragraphs 1-250 / 251-500 (BOS, 512 tokens each); sample model "
         "`samples/eval.txt` first / second half (stream, windows of 512)." % secs, ""]
    for m in models:
        L.append("Base NLL %s: DEV %.4f, TEST %.4f (calibration %.0f s, probe %.0f s)." % (
            m.name, m.base["dev"], m.base["test"], m.t_calib, m.t_probe))
    L.append("")
    for mname in [m.name for m in models]:
        L += ["### %s" % mname, "",
              "| method set | budget | strategy | params removed | KV removed | predicted | measured (TEST) | ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
        for (mn, ms, b, strat, pred, meas, rp) in rows:
            if mn != mname:
                continue
            ratio = pred / meas if meas > 1e-9 else float("nan")
            L.append("| %s | %s | %s | %.1f%% | %.1f%% | %+.4f | %+.4f | %.2f |" % (
                ms, b, strat, rp["params"], rp["kv"], pred, meas, ratio))
        L.append("")
    # findings, computed
    L.append("### Findings (computed from the tables above)")
    L.append("")
    inside = [r for r in rows if r[5] > 1e-9 and abs(r[4] / r[5] - 1) <= 0.25]
    L.append("- Prediction within +-25%% of the measured TEST change for %d of %d plans." % (len(inside), len(rows)))
    misses = [r for r in rows if not (r[5] > 1e-9 and abs(r[4] / r[5] - 1) <= 0.25)]
    for mname in [m.name for m in models]:
        mm = [r for r in misses if r[0] == mname]
        if mm:
            under = sum(1 for r in mm if r[4] < r[5])
            L.append("- %s misses: %d plans (%d under-, %d over-predicted): %s." % (
                mname, len(mm), under, len(mm) - under,
                ", ".join("%s %s %s %.2f" % (r[1], r[2], r[3], r[4] / r[5] if r[5] > 1e-9 else float("nan"))
                          for r in mm[:12]) + (" ..." if len(mm) > 12 else "")))
    for mname in [m.name for m in models]:
        for ms in METHOD_SETS:
            g = {r[2]: r[5] for r in rows if r[0] == mname and r[1] == ms[0] and r[3] == "greedy"}
            u = {r[2]: r[5] for r in rows if r[0] == mname and r[1] == ms[0] and r[3] == "uniform"}
            ok = [b for b in BUDGETS if g[b] <= u[b] + 1e-4]
            L.append("- %s, %s: greedy beats or ties uniform (TEST, within 1e-4 nats) at %d of %d budgets%s." % (
                mname, ms[0], len(ok), len(BUDGETS),
                "" if len(ok) == len(BUDGETS) else " (loses at %s)" % ", ".join(
                    "%s: %+.4f vs %+.4f" % (b, g[b], u[b]) for b in BUDGETS if b not in ok)))
    for mname, (wins, dev_of) in chosen.items():
        L.append("- %s, DEV: best method set per budget (greedy): %s." % (
            mname, ", ".join("%s %d of %d" % (k, v, len(BUDGETS)) for k, v in sorted(wins.items()))))
        refit_all = all(dev_of[("A3 + refit", b, "greedy")] <= dev_of[("A3", b, "greedy")] + 1e-4
                        for b in BUDGETS if b.startswith("params"))
        L.append("- %s, DEV: MLP refit at least as good as plain A3 at every params budget: %s." % (
            mname, "yes" if refit_all else "no"))
    L.append("<!-- END predict -->")
    block = "\n".join(L) + "\n"
    old = open(path).read() if os.path.exists(path) else ""
    a, b = old.find("<!-- BEGIN predict -->"), old.find("<!-- END predict -->")
    if a >= 0 and b > a:
        new = old[:a] + block + old[b + len("<!-- END predict -->") + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    with open(path + ".tmp", "w") as f:
        f.write(new)
    os.replace(path + ".tmp", path)
    print("results_predict: wrote %s" % path, file=sys.stderr)


if __name__ == "__main__":
    main()
