#!/usr/bin/env python3
"""make results (part "predict", issue 11): predicted against measured NLL
change, greedy against uniform, and the choice of defaults, written between
<!-- BEGIN predict --> and <!-- END predict --> in docs/RESULTS.md.

Models: the sample model (samples/sample-model) and stories260K
(../shared/data, converted with `a3 convert`). Each is calibrated once
with --mlp-full and probed once (`a3 probe`) on its CALIBRATION text
(never the evaluation text); every row reuses that cache and probe:
  sample       calibrate: samples/calib.txt (all of it, windows of 512);
               probe: the same file, 8 x 512 tokens, another seed;
               DEV / TEST: first / second half of samples/eval.txt
               (stream protocol, windows of 512)
  stories260K  calibrate: tinystories/train-head.txt, 64 x 512 tokens;
               probe: the same file, 8 x 512, another seed;
               DEV / TEST: valid-head.txt paragraphs 1-250 / 251-500
               (BOS, cut to 512 tokens)
Rows: method sets A3 + refit and A3, at params 10-40% and kv 10-30%, greedy
(with the probe: the default, since `a3 calibrate` runs the probe by
default on models this small) and uniform; greedy without the probe
(curves only: calibrate --no-probe, or a model too large for the default
probe) with several --weights settings, on DEV, to choose the weights. Every choice is made on DEV;
TEST is only reported.

Rows run in parallel (--jobs, default 2; each a3 process with
--threads 1), each in its own directory. Usage:
  scripts/results_predict.py [--out docs/RESULTS.md] [--a3 ./a3] [--jobs N]
                             [--models sample,stories260K] [--keep DIR]
--keep DIR keeps the caches, sidecars, plans and a JSON of every
measurement there (for analysis); otherwise a temporary directory is
removed at the end (also on SIGINT/SIGTERM).
"""
import argparse, concurrent.futures, hashlib, json, os, shutil, sys, threading, time

import resultslib as R

BUDGETS = ["params=10%", "params=20%", "params=30%", "params=40%", "kv=10%", "kv=20%", "kv=30%"]
METHOD_SETS = [  # name, (qk, ov, mlp)
    ("A3 + refit", ("a3", "a3", "a3-refit")),
    ("A3", ("a3", "a3", "a3")),
]
# --weights for greedy without the probe, compared on DEV (the first is
# the default of `a3 plan`).
WEIGHTS = ["qk=1,ov=1,mlp=1", "qk=3,ov=1,mlp=1", "qk=1,ov=1,mlp=3", "qk=3,ov=1,mlp=3"]
TOL = 1e-3  # nats: |measured| below this is "no measurable change" (paired
            # evaluation on the same tokens; the NLL is printed to 1e-4)


class Model:
    def __init__(self, a3, work, name, path, calib, proto, dev, test, calib_extra):
        self.a3, self.work, self.name, self.path, self.calib, self.proto = a3, work, name, path, calib, proto
        self.split = {"dev": dev, "test": test}
        self.calib_extra = calib_extra

    def nll(self, model, split):
        return R.evaluate(self.a3, model, self.split[split], self.proto, None, 512, ["--threads", "1"])[0]

    def prepare(self, memo):
        self.cache = os.path.join(self.work, self.name + ".cache")
        self.curves_only = self.cache + ".curves.pred"
        done = os.path.join(self.work, self.name + ".prepared.json")
        if memo is not None and os.path.exists(done):  # --keep: reuse the calibration and probe
            with open(done) as f:
                d = json.load(f)
            self.cpu_calib, self.cpu_probe, self.probe_tokens, self.base = d["cpu_calib"], d["cpu_probe"], \
                d["probe_tokens"], d["base"]
            return
        r = R.calibrate(self.a3, self.path, self.calib, self.cache, extra=self.calib_extra)
        self.cpu_calib = r.cpu
        # calibrate writes the exact curves (CACHE.pred); keep a copy without
        # the probe: the state of a user who did not run `a3 probe`
        shutil.copyfile(self.cache + ".pred", self.curves_only)
        r = R.run_full([self.a3, "probe", self.path, "--cache", self.cache, "--text", self.calib, "--samples", "8",
                        "--seqlen", "512", "--seed", "7"])
        self.cpu_probe = r.cpu
        with open(self.cache + ".pred") as f:
            self.probe_tokens = json.load(f)["probe"]["tokens"]
        self.base = {s: self.nll(self.path, s) for s in ("dev", "test")}
        if memo is not None:
            with open(done, "w") as f:
                json.dump({"cpu_calib": self.cpu_calib, "cpu_probe": self.cpu_probe,
                           "probe_tokens": self.probe_tokens, "base": self.base}, f)


class Memo:
    """--keep only: measured NLLs by (model, plan widths and methods,
    split), so that a rerun after a change to the prediction (not to apply
    or eval) re-plans every row but evaluates only new plans. Use a fresh
    directory after changing apply or eval."""

    def __init__(self, path):
        self.path, self.lock = path, threading.Lock()
        self.d = json.load(open(path)) if os.path.exists(path) else {}

    @staticmethod
    def key(m, plan_path, split):
        with open(plan_path) as f:
            p = json.load(f)
        return hashlib.sha256(json.dumps([m.name, p["methods"], p["layers"], split]).encode()).hexdigest()

    hits = 0

    def get(self, k):
        with self.lock:
            v = self.d.get(k)
            self.hits += v is not None
            return v

    def put(self, k, v):
        with self.lock:
            self.d[k] = v
            R.write_atomic(self.path, json.dumps(self.d))


def row_job(m, memo, kind, label, methods, budget, strategy, extra, splits, n):
    """One plan: write, apply, evaluate on SPLITS; return a dict."""
    d = os.path.join(m.work, "%s-%03d" % (m.name, n))
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "plan.json")
    s = R.plan(m.a3, m.cache, budget, strategy, methods, p, extra)
    keys = {sp: Memo.key(m, p, sp) for sp in splits} if memo else {}
    nll = {sp: memo.get(keys[sp]) for sp in splits} if memo else {}
    if any(nll.get(sp) is None for sp in splits):
        out = os.path.join(d, "model")
        R.apply(m.a3, m.path, m.cache, p, out, ["--threads", "1"])
        for sp in splits:
            nll[sp] = m.nll(out, sp)
            if memo:
                memo.put(keys[sp], nll[sp])
        shutil.rmtree(out, ignore_errors=True)
    meas = {sp: nll[sp] - m.base[sp] for sp in splits}
    pred = s["predicted"]["nll_change"]
    return {"model": m.name, "kind": kind, "set": label, "budget": budget, "strategy": strategy,
            "extra": list(extra), "plan": p, "predicted": pred, "measured": meas,
            "params": s["removed_percent"]["params"], "kv": s["removed_percent"]["kv"]}


def jobs_for(m):
    """(kind, label, methods, budget, strategy, extra plan args, splits)."""
    J = []
    for label, methods in METHOD_SETS:
        for b in BUDGETS:
            for strat in ("greedy", "uniform"):
                J.append(("probe", label, methods, b, strat, [], ("dev", "test")))
    for w in WEIGHTS:  # greedy without the probe: curves only
        for b in BUDGETS:
            J.append(("weights", w, METHOD_SETS[0][1], b, "greedy", ["--pred", m.curves_only, "--weights", w],
                      ("dev", "test")))
    return J


def ratio(r):
    t = r["measured"]["test"]
    return r["predicted"] / t if r["predicted"] is not None and abs(t) >= TOL else None


def within(r, tol=0.25):
    q = ratio(r)
    return q is not None and abs(q - 1) <= tol


def section(models, rows, secs, jobs, reused):
    L = ["## Predicted against measured NLL change (issue 11)", "",
         "Produced by `make results` (scripts/results_predict.py, %d rows, %d in parallel) in %.0f s wall "
         "(%s). NLL figures do not depend on the machine's load; the times do (CPU seconds of the a3 "
         "process are given for calibration and probe).%s" % (
             len(rows), jobs, secs, R.machine(models[0].a3),
             " This run reused an earlier run's calibration, probe and measurements of identical plans "
             "(--keep), so its time is not the cost of a full run." if reused else ""), "",
         "Each model is calibrated once with `--mlp-full` and probed once (`a3 probe`, 8 x 512 tokens) on "
         "its **calibration** text (the procedure `a3 calibrate` now runs by default on models this small, "
         "with one difference: calibrate's own probe takes the first 8 of its calibration windows, this "
         "table's probe 8 other windows of the same text, drawn with another seed); every plan comes "
         "from `a3 plan` on that cache and is applied and "
         "evaluated. **Measured** = change of the mean next-token NLL against the original model on the "
         "**TEST** split; **predicted** = the plan summary's `predicted.nll_change` (made before any "
         "evaluation text is read); ratio = predicted / measured (n/a when |measured| < %g nats). "
         "**DEV** = the measured change on the DEV split, where the choices (NLL model form, defaults) "
         "are made; TEST is only reported. DEV / TEST: sample model `samples/eval.txt` first / second "
         "half (stream, windows of 512); stories260K `valid-head.txt` paragraphs 1-250 / 251-500 (BOS, "
         "cut to 512 tokens)." % TOL, "",
         "The prediction (include/a3/pred.h): per layer and component, the NLL change f_i at the plan's "
         "exact relative loss, piecewise linear through (0, 0) and the probe's two cuts (relative loss ~0.3 "
         "and the component removed), constant past the removal; the plan's total is (1 - kappa) S + kappa "
         "R^2 with S = sum f_i, R = sum sqrt(f_i) and kappa fitted on the probe's joint run (every component "
         "cut at once). Method sets (qk/ov/mlp): " + "; ".join(
             "%s = %s" % (n, "/".join(m)) for n, m in METHOD_SETS) + "; `A3 + refit` is the default of "
         "`a3 plan` for a cache with Ru (`--mlp-full`). **Greedy with the probe is the default** for both "
         "models: greedy is the default strategy with a budget, it uses the probe when the sidecar has it, "
         "and `a3 calibrate` runs the probe by default when its estimated cost is at most 1e12 flops or a "
         "quarter of the calibration's (both models here; a 7B-sized one does not qualify). Here the "
         "probe is run by `a3 probe` (8 x 512 tokens, seed 7) after `calibrate --no-probe`, so that the "
         "curves-only state is kept for the rows without it; calibrate's own default probe uses its first "
         "8 calibration windows instead.", ""]
    for m in models:
        L.append("- %s: base NLL DEV %.4f, TEST %.4f; calibration %.1f CPU s, probe %.1f CPU s (%d tokens)." % (
            m.name, m.base["dev"], m.base["test"], m.cpu_calib, m.cpu_probe, m.probe_tokens))
    L.append("")
    for m in models:
        L += ["### %s: greedy (with the probe) and uniform" % m.name, "",
              "| method set | budget | strategy | params removed | KV removed | predicted | measured (TEST) | ratio "
              "| DEV |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["model"] != m.name or r["kind"] != "probe":
                continue
            q = ratio(r)
            L.append("| %s | %s | %s | %.1f%% | %.1f%% | %+.4f | %+.4f | %s | %+.4f |" % (
                r["set"], r["budget"], r["strategy"], r["params"], r["kv"], r["predicted"], r["measured"]["test"],
                "%.2f" % q if q is not None else "n/a", r["measured"]["dev"]))
        L.append("")
        L += ["### %s: greedy without the probe (exact curves only: `calibrate --no-probe`), by --weights, "
              "A3 + refit" % m.name, "",
              "Measured NLL change, DEV / TEST; uniform (A3 + refit) for reference.", "",
              "| budget | " + " | ".join("`%s`" % w for w in WEIGHTS) + " | uniform |",
              "|---|" + "---:|" * (len(WEIGHTS) + 1)]
        for b in BUDGETS:
            cells = []
            for w in WEIGHTS:
                r = find(rows, m.name, "weights", w, b, "greedy")
                cells.append("%+.4f / %+.4f" % (r["measured"]["dev"], r["measured"]["test"]))
            u = find(rows, m.name, "probe", METHOD_SETS[0][0], b, "uniform")
            cells.append("%+.4f / %+.4f" % (u["measured"]["dev"], u["measured"]["test"]))
            L.append("| %s | %s |" % (b, " | ".join(cells)))
        L.append("")
    L += ["### Findings (computed from the tables above)", ""] + findings(models, rows)
    return "\n".join(L)


def find(rows, model, kind, label, budget, strategy):
    for r in rows:
        if (r["model"], r["kind"], r["set"], r["budget"], r["strategy"]) == (model, kind, label, budget, strategy):
            return r
    raise KeyError((model, kind, label, budget, strategy))


def findings(models, rows):
    F = []
    P = [r for r in rows if r["kind"] == "probe"]
    meas = [r for r in P if ratio(r) is not None]
    ins = [r for r in meas if within(r)]
    F.append("- Prediction within +-25%% of the measured TEST change for %d of %d plans with a measurable "
             "change (%d plans changed the NLL by less than %g nats)." % (len(ins), len(meas), len(P) - len(meas), TOL))
    dev = [r for r in P if abs(r["measured"]["dev"]) >= TOL]
    F.append("- On DEV (where the form of the NLL model was chosen): within +-25%% for %d of %d plans." % (
        sum(1 for r in dev if abs(r["predicted"] / r["measured"]["dev"] - 1) <= 0.25), len(dev)))
    for m in models:
        mm = [r for r in meas if r["model"] == m.name and not within(r)]
        if not mm:
            F.append("- %s: every measurable plan within +-25%%." % m.name)
            continue
        over = sum(1 for r in mm if ratio(r) > 1)
        F.append("- %s misses: %d plans (%d over-, %d under-predicted): %s." % (
            m.name, len(mm), over, len(mm) - over,
            ", ".join("%s %s %s %.2f (%+.4f vs %+.4f)" % (r["set"], r["budget"], r["strategy"], ratio(r),
                                                        r["predicted"], r["measured"]["test"]) for r in mm)))
        for strat in ("greedy", "uniform"):
            k = [r for r in mm if r["strategy"] == strat]
            tot = [r for r in meas if r["model"] == m.name and r["strategy"] == strat]
            F.append("  %s: %d of its %d measurable %s plans missed (%d under-predicted)." % (
                m.name, len(k), len(tot), strat, sum(1 for r in k if ratio(r) < 1)))
        small = [r for r in mm if abs(r["measured"]["test"]) < 0.02]
        if small:
            F.append("  %d of these misses measured below 0.02 nats, where the probe's own noise (8 x 512 "
                     "tokens) is of the order of the change." % len(small))
    for m in models:
        for label, _ in METHOD_SETS:
            g = {b: find(rows, m.name, "probe", label, b, "greedy")["measured"] for b in BUDGETS}
            u = {b: find(rows, m.name, "probe", label, b, "uniform")["measured"] for b in BUDGETS}
            ok = [b for b in BUDGETS if g[b]["test"] <= u[b]["test"] + 1e-4]
            F.append("- %s, %s: default greedy (with the probe) beats or ties uniform on TEST at %d of %d budgets%s." % (
                m.name, label, len(ok), len(BUDGETS), "" if len(ok) == len(BUDGETS) else " (loses at %s)" % ", ".join(
                    "%s: %+.4f vs %+.4f" % (b, g[b]["test"], u[b]["test"]) for b in BUDGETS if b not in ok)))
    for m in models:
        refit = [b for b in BUDGETS if find(rows, m.name, "probe", "A3 + refit", b, "greedy")["measured"]["dev"]
                 <= find(rows, m.name, "probe", "A3", b, "greedy")["measured"]["dev"] + 1e-4]
        refit_u = [b for b in BUDGETS if find(rows, m.name, "probe", "A3 + refit", b, "uniform")["measured"]["dev"]
                   <= find(rows, m.name, "probe", "A3", b, "uniform")["measured"]["dev"] + 1e-4]
        F.append("- %s, DEV: the MLP refit is at least as good as plain A3 (within 1e-4 nats) at %d of %d budgets "
                 "with greedy, %d of %d with uniform." % (m.name, len(refit), len(BUDGETS), len(refit_u), len(BUDGETS)))
        mean = {w: sum(find(rows, m.name, "weights", w, b, "greedy")["measured"]["dev"] for b in BUDGETS) / len(BUDGETS)
                for w in WEIGHTS}
        best = min(WEIGHTS, key=lambda w: mean[w])
        F.append("- %s, DEV, greedy without the probe: mean NLL change over the budgets %s; lowest: `%s`." % (
            m.name, ", ".join("`%s` %+.4f" % (w, mean[w]) for w in WEIGHTS), best))
        d = WEIGHTS[0]
        lose = [b for b in BUDGETS if find(rows, m.name, "weights", d, b, "greedy")["measured"]["test"]
                > find(rows, m.name, "probe", "A3 + refit", b, "uniform")["measured"]["test"] + 1e-4]
        F.append("- %s, TEST, greedy without the probe (`--no-probe`, default weights `%s`, A3 + refit) beats or "
                 "ties uniform "
                 "at %d of %d budgets%s." % (m.name, d, len(BUDGETS) - len(lose), len(BUDGETS),
                                             "" if not lose else " (loses at %s)" % ", ".join(lose)))
    best = {}
    for m in models:
        mean = {w: sum(find(rows, m.name, "weights", w, b, "greedy")["measured"]["dev"] for b in BUDGETS)
                for w in WEIGHTS}
        best[m.name] = min(WEIGHTS, key=lambda w: mean[w])
    if len(set(best.values())) > 1:
        F.append("- Default --weights (greedy without the probe): the lowest DEV setting differs between the "
                 "models (%s), so the default stays `%s`; with the probe the weights only scale the measured "
                 "sensitivities." % (", ".join("%s `%s`" % kv for kv in best.items()), WEIGHTS[0]))
    else:
        F.append("- Default --weights (greedy without the probe): `%s` is the lowest on DEV for every model." %
                 list(best.values())[0])
    F.append("- Why the misses (an interpretation, not a measurement of this table): the interaction term is "
             "one kappa, fitted where every component of every layer is cut at once; plans that cut attention "
             "only, in every layer (uniform kv budgets), and the moderate uniform plans interact more than that "
             "kappa says, so they are under-predicted; changes of a few hundredths of a nat are within the "
             "probe's noise. Greedy plans, the default, concentrate cuts in few components and are predicted "
             "best.")
    return F


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/RESULTS.md")
    ap.add_argument("--a3", default="./a3")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", default="sample,stories260K")
    ap.add_argument("--keep", help="keep the work directory here (caches, sidecars, plans, rows.json)")
    args = ap.parse_args()
    a3 = os.path.abspath(args.a3)
    R.need_shared()
    want = args.models.split(",")
    t0 = time.time()
    ctx = R.workdir("a3pred.") if not args.keep else R.kept_dir(args.keep)
    with ctx as work:
        models = []
        if "sample" in want:
            sm_dev, sm_test = os.path.join(work, "sm-dev.txt"), os.path.join(work, "sm-test.txt")
            split_half("samples/eval.txt", sm_dev, sm_test)
            models.append(Model(a3, work, "sample", os.path.abspath("samples/sample-model"), "samples/calib.txt",
                                "stream", sm_dev, sm_test, ["--allow-short"]))
        if "stories260K" in want:
            st = os.path.join(work, "stories260K")
            if not os.path.exists(os.path.join(st, "config.json")):  # --keep: converted before
                R.convert_stories(a3, st)
            paras = R.paragraphs(R.VALID)[:500]
            models.append(Model(a3, work, "stories260K", st, R.TRAIN, "paragraphs",
                                R.write_text(os.path.join(work, "st-dev.txt"), paras[:250]),
                                R.write_text(os.path.join(work, "st-test.txt"), paras[250:]), []))
        if not models:
            R.die("--models: none of sample, stories260K")
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            memo = Memo(os.path.join(work, "memo.json")) if args.keep else None
            list(ex.map(lambda m: m.prepare(memo), models))
            for m in models:
                print("results_predict: %s calibrated (%.1f CPU s), probed (%.1f CPU s); base NLL dev %.4f test %.4f"
                      % (m.name, m.cpu_calib, m.cpu_probe, m.base["dev"], m.base["test"]), file=sys.stderr)
            todo = [(m, j, n) for m in models for n, j in enumerate(jobs_for(m))]
            futs = [ex.submit(row_job, m, memo, *j, n) for m, j, n in todo]
            rows = []
            for i, f in enumerate(futs):
                r = f.result()
                rows.append(r)
                el = time.time() - t0
                print("results_predict: [%d/%d %.0f s] %s %-16s %-10s %-7s pred %s dev %+.4f test %+.4f" % (
                    i + 1, len(futs), el, r["model"], r["set"], r["budget"], r["strategy"],
                    "%+.4f" % r["predicted"] if r["predicted"] is not None else "n/a",
                    r["measured"]["dev"], r["measured"]["test"]), file=sys.stderr)
        with open(os.path.join(work, "rows.json"), "w") as f:
            json.dump({"rows": rows, "base": {m.name: m.base for m in models}}, f, indent=1)
        R.replace_section(args.out, "predict", section(models, rows, time.time() - t0, args.jobs, memo is not None and memo.hits > 0))
    print("results_predict: wrote the predict section of %s" % args.out, file=sys.stderr)


def split_half(src, dev, test):
    """First / second half of a text file, cut at a line end."""
    with open(src, encoding="utf-8") as f:
        text = f.read()
    cut = text.rfind("\n", 0, len(text) // 2) + 1
    with open(dev, "w", encoding="utf-8") as f:
        f.write(text[:cut])
    with open(test, "w", encoding="utf-8") as f:
        f.write(text[cut:])


if __name__ == "__main__":
    main()
