#!/usr/bin/env python3
"""make results (after scripts/results.py): the "A3 + quantization" table of
docs/RESULTS.md, between <!-- BEGIN gguf --> and <!-- END gguf -->.

For stories260K (../shared/data, converted with `a3 convert`) and the
embedded sample model: the original, and A3 at 20% and 40% of the
compressible parameters removed (greedy plans on a calibration cache), each
exported with `a3 export` as F16 and as Q8_0 GGUF; file size and perplexity
measured by llama.cpp itself (node-llama-cpp, F32 KV cache, no flash
attention, one thread), and by `a3 eval` on the model directory where a3
can run it (not Q8_0). Both score the same paragraphs: blank-line-separated,
BOS first, cut to --seqlen tokens; the predicted-token counts of the two
are compared as a check that they tokenized alike.
Usage: scripts/gguf_results.py [--out docs/RESULTS.md] [--a3 ./a3]
"""
import argparse, json, math, os, re, shutil, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results import SHARED, run  # noqa: E402  (the same command runner as the main table)

PEERS = "tests/peers"
N_PARAS = 100
BUDGETS = [20, 40]


def paragraphs(text, n):
    """The first n paragraphs as a3 eval's paragraphs protocol cuts them:
    separated by lines holding only spaces, tabs or CRs."""
    out, cur = [], []
    for line in text.split("\n"):
        if line.strip(" \t\r") == "":
            if cur:
                out.append("\n".join(cur))
                cur = []
            if len(out) == n:
                break
        else:
            cur.append(line)
    if cur and len(out) < n:
        out.append("\n".join(cur))
    return out[:n]


def a3_eval(a3, model, text_file, seqlen):
    out = run([a3, "eval", model, "--text", text_file, "--protocol", "paragraphs", "--seqlen", str(seqlen)])
    ppl = float(re.search(r"perplexity\s+([0-9.]+)", out).group(1))
    n_pred = int(re.search(r"([0-9]+) predicted", out).group(1))
    return ppl, n_pred


def export(a3, model, path, typ):
    out = run([a3, "export", model, "-o", path, "--type", typ, "--force"])
    m = re.search(r"([0-9]+) weights stored f16 instead", out)
    return os.path.getsize(path), int(m.group(1)) if m else 0


def llama_ppl(jobs, tmp):
    job_path = os.path.join(tmp, "job.json")
    with open(job_path, "w") as f:
        json.dump({"jobs": jobs}, f)
    out = run(["node", os.path.join(PEERS, "llama_check.mjs"), job_path])
    return [r["ppl"] for r in json.loads(out)["results"]]


def one_model(a3, name, model, calib, eval_text, seqlen, calib_args, tmp):
    paras = paragraphs(open(eval_text, encoding="utf-8").read(), N_PARAS)
    eval_file = os.path.join(tmp, name + "-eval.txt")
    with open(eval_file, "w", encoding="utf-8") as f:
        f.write("\n\n".join(paras) + "\n")
    cache = os.path.join(tmp, name + ".cache")
    run([a3, "calibrate", model, "--text", calib, "--seed", "0", "-o", cache] + calib_args)
    variants = [("original", model, None)]
    for b in BUDGETS:
        plan = os.path.join(tmp, "%s-%d.json" % (name, b))
        out = os.path.join(tmp, "%s-a3-%d" % (name, b))
        s = run([a3, "plan", cache, "--budget", "params=%d%%" % b, "-o", plan])
        run([a3, "apply", model, "--cache", cache, "--plan", plan, "-o", out])
        variants.append(("A3, %d%% params removed" % b, out, plan))
    rows, jobs = [], []
    for label, d, _ in variants:
        a3_ppl, a3_n = a3_eval(a3, d, eval_file, seqlen)
        info = run([a3, "info", d])
        params = re.search(r"parameters\s+([0-9]+)", info)
        for typ in ["f16", "q8_0"]:
            path = os.path.join(tmp, "%s-%d-%s.gguf" % (name, len(rows), typ))
            size, fallback = export(a3, d, path, typ)
            rows.append({"label": label + (" + Q8_0" if typ == "q8_0" else ""), "type": typ, "size": size,
                         "fallback": fallback, "a3_ppl": a3_ppl if typ == "f16" else None, "a3_n": a3_n,
                         "params": params.group(1) if params else "?"})
            jobs.append({"model": path, "context": seqlen, "ppl": {"texts": paras, "seqlen": seqlen}})
        print("gguf_results: %s %s exported" % (name, label), file=sys.stderr)
    for r, p in zip(rows, llama_ppl(jobs, tmp)):
        r["llama_ppl"] = math.exp(p["nll_sum"] / p["n_pred"])
        r["llama_n"] = p["n_pred"]
    return rows


def table(name, rows, eval_desc):
    base = rows[0]["size"]
    lines = ["\n### %s\n" % name, eval_desc + "\n",
             "| model | parameters | GGUF weights | file size | vs original F16 | PPL (llama.cpp) | PPL (a3) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        w = "F16" if r["type"] == "f16" else "Q8_0" + (" (%d tensors F16: rows not a multiple of 32)" % r["fallback"] if r["fallback"] else "")
        lines.append("| %s | %s | %s | %.1f KB | %.0f%% | %.3f | %s |" % (
            r["label"], r["params"], w, r["size"] / 1024, 100.0 * r["size"] / base, r["llama_ppl"],
            "%.3f" % r["a3_ppl"] if r["a3_ppl"] is not None else "n/a (a3 runs float weights)"))
    # Findings computed from the rows: what Q8_0 adds, and whether A3 + Q8_0
    # is smaller than Q8_0 alone (reduced MLP widths that are not multiples
    # of 32 keep their down projections in F16).
    q8 = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    worst = max(b["llama_ppl"] / a["llama_ppl"] for a, b in q8)
    lines.append("\nQ8_0 changes llama.cpp's perplexity by at most %+.2f%% (F16 -> Q8_0, same model)." % (100 * (worst - 1)))
    for a, b in q8[1:]:
        lines.append("%s + Q8_0: %.1f KB, %s than Q8_0 alone (%.1f KB)%s." % (
            a["label"], b["size"] / 1024, "smaller" if b["size"] < q8[0][1]["size"] else "LARGER",
            q8[0][1]["size"] / 1024,
            "; %d down projections stay F16 because their reduced widths are not multiples of 32 "
            "(`a3 plan --multiple 32` avoids it, but also keeps heads narrower than 32 whole)" % b["fallback"] if b["fallback"] > q8[0][1]["fallback"] else ""))
    mism = [r["label"] for r in rows if r["llama_n"] != r["a3_n"]]
    lines.append("\nPredicted tokens: llama.cpp %d, a3 %d per model%s." % (
        rows[0]["llama_n"], rows[0]["a3_n"],
        "" if not mism else "; MISMATCH for " + ", ".join(mism)))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/RESULTS.md")
    ap.add_argument("--a3", default="./a3")
    args = ap.parse_args()
    a3 = os.path.abspath(args.a3)
    if not os.path.exists(os.path.join(PEERS, "node_modules/node-llama-cpp/package.json")):
        sys.exit("gguf_results: node-llama-cpp not installed (run scripts/setup_peers.sh)")
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="a3gguf.")
    sections = []
    try:
        if os.path.exists(SHARED + "/models/stories260K/stories260K.bin"):
            model = tmp + "/stories260K"
            run([a3, "convert", SHARED + "/models/stories260K/stories260K.bin", "--tokenizer",
                 SHARED + "/models/stories260K/tok512.bin", "-o", model])
            rows = one_model(a3, "stories260K", model, SHARED + "/text/tinystories/train-head.txt",
                             SHARED + "/text/tinystories/valid-head.txt", 512, ["--samples", "64", "--seqlen", "512"], tmp)
            sections += table("stories260K (llama2.c, converted; F32 weights)", rows,
                              "Calibration: `tinystories/train-head.txt`, 64 windows x 512 tokens, seed 0. "
                              "Evaluation: `tinystories/valid-head.txt`, first %d paragraphs, BOS, cut to 512 tokens." % N_PARAS)
        else:
            sections.append("\n(stories260K skipped: ../shared/data not found)\n")
        rows = one_model(a3, "sample", "samples/sample-model", "samples/calib.txt", "samples/eval.txt", 256,
                         ["--samples", "64", "--seqlen", "256"], tmp)
        sections += table("Sample model (`samples/sample-model`, F16 weights)", rows,
                          "Calibration: `samples/calib.txt`, 64 windows x 256 tokens, seed 0. "
                          "Evaluation: `samples/eval.txt`, first %d paragraphs, BOS, cut to 256 tokens." % N_PARAS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join([
        "<!-- BEGIN gguf -->",
        "## A3 + quantization (GGUF, measured by llama.cpp)\n",
        "Produced by `make results` (scripts/gguf_results.py) in %.0f s. Each model is compressed with "
        "greedy `a3 plan --budget params=P%%` plans and the A3 methods, exported with `a3 export` "
        "(F16 or Q8_0; norms F32; QK/OV of reduced width zero-padded, so attention saves no file size) "
        "and run by llama.cpp itself (node-llama-cpp 3.21.1, CPU, F32 KV cache, flash attention off). "
        "PPL (a3) is `a3 eval` on the model directory (float32 compute of the stored weights), "
        "on the same paragraphs. The plans were chosen on the calibration text; the evaluation text "
        "is a different split. Sizes include the tokenizer." % (time.time() - t0)] + sections + ["<!-- END gguf -->"])
    doc = open(args.out, encoding="utf-8").read() if os.path.exists(args.out) else ""
    m = re.search(r"<!-- BEGIN gguf -->.*?<!-- END gguf -->", doc, re.S)
    doc = doc[:m.start()] + text + doc[m.end():] if m else doc.rstrip("\n") + "\n\n" + text + "\n"
    with open(args.out + ".tmp", "w", encoding="utf-8") as f:
        f.write(doc)
    os.replace(args.out + ".tmp", args.out)
    print("gguf_results: wrote %s" % args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
