#!/usr/bin/env python3
"""bench_speed.py: decoding and prefill speed of a3 against the memory
bandwidth bound, llama.cpp and PyTorch (issue 13), run by `make bench`.

Models: random-weight F16 models with the layer shapes of LLaMA-1B (d 2048,
GQA 32/8, MLP 8192; 8 of its 16 layers) and LLaMA-7B (d 4096, MLP 11008;
4 of its 32 layers), vocabulary 32000, made by `a3 synth`; each also
compressed by a3 (calibrate on samples/calib.txt, plan params=30%, apply).
Fewer layers keep the files (1.1 and 2.1 GB) and the run time small; every
bound is computed for the file that ran.

Decoding: `a3 generate` tokens/s (its stderr line: the steps after the
prompt) against (a) the bandwidth bound = bytes of weights read per token
(every tensor but the embedding table, of which one row) / read bandwidth
measured here (bench_membw, a threaded streaming read of 1 GiB), and (b)
llama.cpp (node-llama-cpp, prebuilt, tests/peers) on a GGUF of the same
model made by `a3 export`. Interleaved rounds; each run is paired with the
bandwidth read right before and after it, and the ratio to the bound is
the median of the runs' ratios to their own bounds; tokens/s figures are
medians over the rounds.
The kernel alone (bench_matvec) against a read of the same bytes, once per
thread count, separates the kernel from the rest of the step.

Prefill: `a3 eval --ids` (one window of N ids, logits of every position)
against llama.cpp (one batch of N) and PyTorch (Debian python3-torch,
float32 weights, logits of every position), N = 512 and 2048, 1 and 2
threads, interleaved: best of A3_BENCH_PREFILL_ROUNDS for a3 and PyTorch
(one run of llama.cpp); a3 / PyTorch is the median over the rounds of each
round's pair (which side runs first alternates by round), with the count
of rounds a3 won. a3's and PyTorch's NLLs on the same ids are compared as a
check that both computed the same thing.
One product alone (bench_gemm) compares a3's prefill GEMM with
conversion + sgemm and with sgemm on float32 weights (PyTorch's case).

Writes its section of docs/PERFORMANCE.md between the speed markers and
prints it. Environment: BUILD (build dir), A3_BENCH_DIR (scratch for the
models, default build/bench-speed; removed unless A3_BENCH_KEEP=1),
A3_BENCH_ROUNDS (decode rounds, default 3; 0 skips decoding),
A3_BENCH_PREFILL=0 (skip the prefill part), A3_BENCH_PREFILL_ROUNDS
(default 3), A3_BENCH_SEQLENS (prefill lengths, default 512,2048),
A3_BENCH_THREADS (default 1,2), A3_BENCH_MODELS (default llama-1b,llama-7b),
A3_BENCH_COMPRESS=0 (skip the compressed models), A3_BENCH_DECODE_N (new
tokens per decoding run, default 32), A3_BENCH_DOC=0 (print the section,
do not write it into docs/PERFORMANCE.md). The defaults are the full report;
the others exist to get partial figures on a crowded machine."""
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
A3 = os.path.join(BUILD, "a3")
MEMBW = os.path.join(BUILD, "bench", "bench_membw")
MATVEC = os.path.join(BUILD, "bench", "bench_matvec")
GEMM = os.path.join(BUILD, "bench", "bench_gemm")
WORK = os.path.abspath(os.environ.get("A3_BENCH_DIR", os.path.join(BUILD, "bench-speed")))
KEEP = os.environ.get("A3_BENCH_KEEP") == "1"
ROUNDS = int(os.environ.get("A3_BENCH_ROUNDS", "3"))
DO_PREFILL = os.environ.get("A3_BENCH_PREFILL", "1") != "0"
PREFILL_ROUNDS = int(os.environ.get("A3_BENCH_PREFILL_ROUNDS", "3"))
PEERS = os.path.join(ROOT, "tests", "peers")
LLAMA_PEER = os.path.join(ROOT, "tests", "bench", "llama_peer.mjs")
TORCH_PEER = os.path.join(ROOT, "tests", "bench", "torch_peer.py")
DOC = os.path.join(ROOT, "docs", "PERFORMANCE.md")
MODELS = [m for m in [("llama-1b", 8), ("llama-7b", 4)]
          if m[0] in os.environ.get("A3_BENCH_MODELS", "llama-1b,llama-7b").split(",")]
COMPRESS = os.environ.get("A3_BENCH_COMPRESS", "1") != "0"
DECODE_N = int(os.environ.get("A3_BENCH_DECODE_N", "32"))
THREADS = [int(x) for x in os.environ.get("A3_BENCH_THREADS", "1,2").split(",")]
SEQLENS = [int(x) for x in os.environ.get("A3_BENCH_SEQLENS", "512,2048").split(",")]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
    return r


def load():
    return os.getloadavg()[0]


def warm(path):
    """Read a model's files (a directory's, or one file) into the page
    cache before a timed run. a3 and llama.cpp map their weights and read
    them during the timed pass, PyTorch reads them at load, untimed; the
    bench's models (about 21 GB with the GGUFs) and PyTorch's float32 copy
    do not all fit in this machine's page cache, so without this a3 or
    llama.cpp would time disk reads of weights the previous run evicted."""
    files = [os.path.join(path, f) for f in sorted(os.listdir(path))] if os.path.isdir(path) else [path]
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(16 << 20):
                pass


def st_bytes(model_dir):
    """Bytes of weights a decoding step reads: every tensor except the
    embedding table (one row of it) -- with tied embeddings the table is
    the lm_head and counts whole."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    files = [os.path.join(model_dir, "model.safetensors")]
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted({os.path.join(model_dir, v) for v in json.load(f)["weight_map"].values()})
    total = emb = 0
    for p in files:
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            h = json.loads(f.read(n))
        for name, t in h.items():
            if name == "__metadata__":
                continue
            b = t["data_offsets"][1] - t["data_offsets"][0]
            total += b
            if name == "model.embed_tokens.weight" and not cfg.get("tie_word_embeddings"):
                emb = b
    row = emb // cfg["vocab_size"] if emb else 0
    return total - emb + row, total


GGUF_TYPE_BYTES = {0: (4, 1), 1: (2, 1), 30: (2, 1), 8: (34, 32)}  # f32, f16, bf16, q8_0: bytes per block, block


def gguf_bytes(path):
    """Bytes of weights llama.cpp reads per decoded token from a GGUF:
    every tensor but token_embd (one row of it; all of it when there is no
    separate output matrix). For the compressed model this differs from
    a3's figure: export zero-pads reduced QK/OV heads to the head size."""
    def rd(f, fmt):
        return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def skip(f, t):
        if t == 8:
            f.seek(rd(f, "Q"), 1)
        elif t == 9:
            et, n = rd(f, "I"), rd(f, "Q")
            if et in scalar:
                f.seek(struct.calcsize("<" + scalar[et]) * n, 1)
            else:
                for _ in range(n):
                    skip(f, et)
        else:
            f.seek(struct.calcsize("<" + scalar[t]), 1)

    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise RuntimeError(f"{path}: not a GGUF file")
        rd(f, "I")
        n_t, n_kv = rd(f, "Q"), rd(f, "Q")
        for _ in range(n_kv):
            f.seek(rd(f, "Q"), 1)
            skip(f, rd(f, "I"))
        sizes = {}
        for _ in range(n_t):
            name = f.read(rd(f, "Q")).decode()
            dims = [rd(f, "Q") for _ in range(rd(f, "I"))]
            t = rd(f, "I")
            rd(f, "Q")
            if t not in GGUF_TYPE_BYTES:
                raise RuntimeError(f"{path}: {name}: tensor type {t} not counted here")
            bb, blk = GGUF_TYPE_BYTES[t]
            n = 1
            for d in dims:
                n *= d
            sizes[name] = n // blk * bb
            if name == "token_embd.weight":
                emb_row = dims[0] // blk * bb
    total = sum(sizes.values())
    if "output.weight" in sizes:
        total -= sizes["token_embd.weight"] - emb_row
    return total


def write_ids(path, n):
    """Pseudo-random ids in [3, 500): valid for any of the vocabularies."""
    s, ids = 12345, []
    for _ in range(n):
        s = (s * 1103515245 + 12345) % 2147483648
        ids.append(3 + s % 497)
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{n}I", *ids))


def doctor():
    out = run([A3, "doctor"]).stdout
    m = re.search(r"sgemm_gflops=([\d.]+) kernel=(\S+) threads=(\d+)", out)
    d = {"gflops": float(m.group(1)), "kernel": m.group(2), "threads": int(m.group(3))} if m else {}
    mv = re.search(r"^\s*matvec\s+(\S+)", out, re.M)  # the a3 binary's own decoding kernel
    d["matvec"] = mv.group(1) if mv else "?"
    pf = re.search(r"^\s*prefill\s+(.+)$", out, re.M)  # what F16/BF16 prefill products run on
    d["prefill"] = pf.group(1).strip() if pf else "?"
    return d


def membw(threads):
    out = run([MEMBW, "1024", str(threads), "3"]).stdout
    m = re.search(r"read_gbs=([\d.]+).*matvec=(\S+)", out)
    return float(m.group(1)), m.group(2)


def kernel_ratio(threads):
    """The matvec kernel alone on llama-1b-shaped F16 layers against a
    streaming read of the same bytes (bench_matvec): how much of the
    bound the kernel can reach, apart from the rest of the decoding step;
    also each prefetch policy fixed, and the one the tuner chose."""
    out = run([MATVEC, "2048", "8192", "8", str(threads), "3"]).stdout
    m = re.search(r"ratio=([\d.]+)", out)
    p = re.search(r"none_vs_read=([\d.]+) l1_vs_read=([\d.]+) l2_vs_read=([\d.]+) auto=(\S+)", out)
    pol = f"none {float(p.group(1)):.0%}, l1 {float(p.group(2)):.0%}, l2 {float(p.group(3)):.0%}, " \
          f"tuner chose {p.group(4)}" if p else "per-policy figures missing"
    return float(m.group(1)), pol


def gemm_ratios(threads):
    """One prefill product alone (bench_gemm, the llama-7b gate/up shape at
    512 tokens): a3_k_gemm against conversion + sgemm and against sgemm on
    a float32 copy made beforehand (PyTorch's case), medians of the ratios
    of runs made back to back."""
    if not os.path.exists(GEMM):
        return None
    out = run([GEMM, "512", "4096", "11008", str(threads), "5"]).stdout
    m = re.search(r"own ([\d.]+)\s+conv ([\d.]+)\s+sgemm ([\d.]+) GFLOP/s; own/conv ([\d.]+)x\s+own/sgemm ([\d.]+)x",
                  out)
    return tuple(float(g) for g in m.groups()) if m else None


def have_llama():
    return (shutil.which("node") and os.path.isdir(os.path.join(PEERS, "node_modules", "node-llama-cpp")))


def have_torch():
    return subprocess.run(["/usr/bin/python3", "-c", "import torch, numpy"], capture_output=True).returncode == 0


def setup_peers():
    setup = os.path.join(ROOT, "scripts", "setup_peers.sh")
    if os.path.exists(setup):
        subprocess.run([setup])
    if not have_torch() and shutil.which("apt-get"):
        log("bench_speed: installing python3-torch (Debian) for the PyTorch peer")
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        subprocess.run(sudo + ["apt-get", "install", "-y", "-q", "python3-torch", "python3-numpy"],
                       capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def make_models():
    """(name, original dir, compressed dir or None, gguf paths) per preset."""
    os.makedirs(WORK, exist_ok=True)
    out = []
    tok = os.path.join(ROOT, "samples", "sample-model", "tokenizer.json")
    for preset, layers in MODELS:
        d = os.path.join(WORK, f"{preset}-{layers}l")
        if not os.path.exists(os.path.join(d, "config.json")):
            log(f"bench_speed: a3 synth --like {preset} --layers {layers}")
            run([A3, "synth", "--like", preset, "--layers", str(layers), "--dtype", "f16", "-o", d])
        if not os.path.exists(os.path.join(d, "tokenizer.json")):
            # generate and export need a tokenizer; ids stay below its 512 entries
            shutil.copy(tok, os.path.join(d, "tokenizer.json"))
        comp = d + "-a3" if COMPRESS else None
        if comp and not os.path.exists(os.path.join(comp, "config.json")):
            try:
                cache, plan = d + ".a3c", d + ".plan.json"
                log(f"bench_speed: compressing {preset} (calibrate, plan params=30%, apply)")
                if not os.path.exists(cache):
                    run([A3, "calibrate", d, "--text", os.path.join(ROOT, "samples", "calib.txt"),
                         "--samples", "8", "--seqlen", "128", "-o", cache])
                run([A3, "plan", cache, "--budget", "params=30%", "-o", plan])
                run([A3, "apply", d, "--cache", cache, "--plan", plan, "-o", comp])
            except RuntimeError as e:
                log(f"bench_speed: compressed {preset} skipped: {e}")
                comp = None
        ggufs = {}
        for tag, m in (("orig", d), ("a3", comp)):
            if not m:
                continue
            g = m + ".gguf"
            if not os.path.exists(g):
                try:
                    run([A3, "export", m, "-o", g, "--type", "f16"])
                except RuntimeError as e:
                    log(f"bench_speed: GGUF of {m} skipped (llama.cpp figures missing): {e}")
                    continue
            ggufs[tag] = g
        out.append((f"{preset} ({layers} layers)", d, comp, ggufs))
    return out


PREFETCH = []  # software prefetch policy each `a3 generate` run chose


def prefetch_summary():
    return ", ".join(f"{p} in {PREFETCH.count(p)} of {len(PREFETCH)} runs" for p in sorted(set(PREFETCH)))


def a3_decode(model, threads):
    warm(model)
    r = run([A3, "generate", model, "--prompt", "a", "-n", str(DECODE_N),
             "--threads", str(threads)])
    m = re.search(r"decoded (\d+) tokens in ([\d.]+) s", r.stderr)
    pf = re.search(r"prefetch (\S+)", r.stderr)  # the tuner's choice (kernels.c)
    PREFETCH.append(pf.group(1) if pf else "?")
    return int(m.group(1)) / float(m.group(2))


def llama(gguf, mode, threads, n):
    warm(gguf)
    r = run(["node", LLAMA_PEER, gguf, mode, str(threads), str(n), PEERS])
    m = re.search(r"tokens_per_s=([\d.]+).*cpu_backend=(\S+)", r.stdout)
    return float(m.group(1)), m.group(2)


def a3_prefill(model, ids, n, threads):
    warm(model)
    r = run([A3, "eval", model, "--ids", ids, "--seqlen", str(n), "--max-seqs", "1", "--threads", str(threads)])
    speed = re.search(r"speed\s+([\d.]+) tokens/s", r.stdout)
    nll = re.search(r"mean NLL\s+([\d.]+)", r.stdout)
    return float(speed.group(1)), float(nll.group(1))


TORCH_CORETYPE = None  # set in main(): the OpenBLAS kernel a3 doctor reports


def torch_prefill(model, ids, threads):
    # torch.set_num_threads does not reach Debian's pthreads OpenBLAS, which
    # starts one thread per core: without these PyTorch's "1 thread" rows
    # ran its GEMMs on 2 (measured 51.9 vs 27.7 tok/s, llama-1b, N = 512).
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    # PyTorch loads the same Debian OpenBLAS, which falls back to its generic
    # Prescott kernel on CPUs it does not know; a3 re-executes itself with
    # the right OPENBLAS_CORETYPE (a3 doctor), PyTorch does not. Give it
    # the kernel a3 runs, so that the two compare on the same sgemm
    # (measured on a Xeon OpenBLAS misdetects: 32.6 tok/s with Prescott).
    if TORCH_CORETYPE and "OPENBLAS_CORETYPE" not in os.environ:
        env["OPENBLAS_CORETYPE"] = TORCH_CORETYPE
    r = run(["/usr/bin/python3", TORCH_PEER, model, ids, str(threads)], env=env)
    m = re.search(r"tokens_per_s=([\d.]+).*nll=([\d.]+) torch=(\S+)(?: blas=(\S+))?", r.stdout)
    return float(m.group(1)), float(m.group(2)), f"{m.group(3)} ({m.group(4) or 'BLAS ?'})"


def fmt_ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def main():
    if not all(os.path.exists(p) for p in (A3, MEMBW, MATVEC)):
        raise SystemExit("bench_speed: build a3 and the benchmarks first (make bench)")
    setup_peers()
    doc = doctor()
    global TORCH_CORETYPE
    TORCH_CORETYPE = doc.get("kernel")
    models = make_models()
    use_llama, use_torch = have_llama(), have_torch()
    lines = []
    notes = []
    if not use_llama:
        notes.append("llama.cpp: skipped (node or tests/peers/node_modules missing; scripts/setup_peers.sh)")
    if not use_torch:
        notes.append("PyTorch: skipped (python3-torch not installed and could not be installed)")
    t_start, load0 = time.time(), load()

    # ---- decoding ------------------------------------------------------
    pair = {}  # ("a3"|"ll", model, tag, threads) -> [(tokens/s, GB/s read around that run)]
    backend = "?"
    impl, bench_impl = doc.get("matvec", "?"), "?"
    kern = {}
    dec_bw_all = []  # every bandwidth measurement, to say how much it moved

    def paired(key, threads, fn):
        """Run fn() between two reads of the bandwidth: the bound of that
        run is taken at the load it ran under (this VM's bandwidth moved
        18-25 GB/s between runs minutes apart)."""
        nonlocal bench_impl
        b0, bench_impl = membw(threads)
        v = fn()
        b1, _ = membw(threads)
        dec_bw_all.extend((b0, b1))
        pair.setdefault(key, []).append((v, (b0 + b1) / 2))
        return v

    for rnd in range(ROUNDS):
        for threads in THREADS:
            if rnd == 0:
                kern[threads] = kernel_ratio(threads)
            for name, d, comp, ggufs in models:
                for tag, m in (("orig", d), ("a3", comp)):
                    if not m:
                        continue
                    k = (name, tag, threads)
                    paired(("a3",) + k, threads, lambda: a3_decode(m, threads))
                    if use_llama and tag in ggufs:
                        def ll_run():
                            nonlocal backend
                            v, backend = llama(ggufs[tag], "decode", threads, DECODE_N)
                            return v
                        paired(("ll",) + k, threads, ll_run)
        log(f"bench_speed: decode round {rnd + 1}/{ROUNDS} done (load {load():.1f})")
    load_dec = load()

    if ROUNDS < 1:
        lines.append("Decoding: not run (A3_BENCH_ROUNDS=0).")
        lines.append("")
    else:
        lines.append(f"Decoding: `a3 generate -n {DECODE_N}` (greedy, prompt \"a\"; rate of the steps "
                     f"after the prompt), {ROUNDS} interleaved rounds. a3 matvec code: {impl}, "
                     f"software prefetch as tuned by each run: {prefetch_summary()}; "
                     f"llama.cpp {'CPU backend ' + backend if use_llama else 'skipped'}. Each run is paired "
                     f"with the read bandwidth measured right before and right after it (bench_membw: "
                     f"threaded streaming read of 1 GiB, best of plain and the kernel's two software-prefetch "
                     f"patterns; the two averaged): its bound = that bandwidth / weight bytes read per token. / bound is the "
                     f"median over the rounds of each run's tokens/s over its own bound (range in brackets); "
                     f"bandwidth, bound and tok/s columns (and the ratios of tok/s) are medians over the rounds "
                     f"too (bandwidth: of a3's pairs). llama.cpp / bound uses the bytes of its own GGUF.")
        lines.append("")
        lines.append("| model | threads | bandwidth GB/s | weights read/token | bound tok/s | a3 tok/s | a3 / bound "
                     "| llama.cpp tok/s | llama.cpp / bound | a3 / llama.cpp |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

        def med(v):
            v = sorted(v)
            return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2

        def vs_bound(key, nbytes):
            r = [v * nbytes / (bw * 1e9) for v, bw in pair.get(key, [])]
            return (med(r), min(r), max(r)) if r else None

        def med_rate(key):
            return med([v for v, _ in pair[key]]) if key in pair else None

        def fmt_vs(t):
            return f"{t[0]:.0%} ({t[1]:.0%}-{t[2]:.0%})" if t else "n/a"

        paired_ratios = []
        for name, d, comp, ggufs in models:
            for tag, m in (("orig", d), ("a3", comp)):
                if not m:
                    continue
                rd, _ = st_bytes(m)
                grd = gguf_bytes(ggufs[tag]) if tag in ggufs else None
                for threads in THREADS:
                    k = (name, tag, threads)
                    bw = med([b for _, b in pair[("a3",) + k]]) * 1e9
                    bound = bw / rd
                    a = med_rate(("a3",) + k)
                    ll = med_rate(("ll",) + k)
                    va = vs_bound(("a3",) + k, rd)
                    vl = vs_bound(("ll",) + k, grd) if grd else None
                    paired_ratios.append(va)
                    label = name if tag == "orig" else name + ", a3 params=30%"
                    lines.append(f"| {label} | {threads} | {bw / 1e9:.1f} | {rd / 1e9:.3f} GB | {bound:.2f} | "
                                 f"{a:.2f} | {fmt_vs(va)} | {f'{ll:.2f}' if ll else 'n/a'} | "
                                 f"{fmt_vs(vl)} | {fmt_ratio(a, ll)} |")
        lines.append("")
        for name, d, comp, ggufs in models:
            if not comp:
                continue
            ro, _ = st_bytes(d)
            rc, _ = st_bytes(comp)
            go, gc = (gguf_bytes(ggufs[t]) if t in ggufs else None for t in ("orig", "a3"))
            for threads in THREADS:
                so, sc = med_rate(("a3", name, "orig", threads)), med_rate(("a3", name, "a3", threads))
                line = (f"- {name}, {threads} thread(s): the compressed model decodes {sc / so:.2f}x as fast as "
                        f"the original in a3, for a byte ratio (original / compressed weights read per token) "
                        f"of {ro / rc:.2f}x")
                lo, lc = med_rate(("ll", name, "orig", threads)), med_rate(("ll", name, "a3", threads))
                if lo and lc and go and gc:
                    line += (f"; in llama.cpp {lc / lo:.2f}x for a byte ratio of {go / gc:.2f}x (its GGUF of the "
                             f"compressed model: {gc / 1e9:.3f} GB read per token against a3's {rc / 1e9:.3f} GB; "
                             f"export zero-pads reduced QK/OV heads to the head size)")
                lines.append(line + ".")
        lines.append("- The kernel alone (bench_matvec: one decoding step's products on 8 llama-1b-shaped F16 layers, "
                     "reads and products taking turns, each on a layer no cache still holds) runs at "
                     + ", ".join(f"{kern[t][0]:.0%} of the streaming read with {t} thread(s) (each prefetch "
                                 f"policy fixed: {kern[t][1]})" for t in THREADS)
                     + f" (bench_matvec's code: {bench_impl}); whatever separates a3 from the bound beyond "
                     "that is the step's other work (attention, norms, the pool's hand-offs between calls).")
        over = sum(1 for t in paired_ratios if t and t[2] > 1)
        bws = sorted(dec_bw_all)
        lines.append(f"- Read bandwidth measured {bws[0]:.1f}-{bws[-1]:.1f} GB/s over the rounds"
                     + (f"; {over} row(s) had a run above its own bound, so the bandwidth moved within a "
                        f"pair and the bound is approximate here" if over else "") + ".")
        lines.append(f"- load average (1 min) {load0:.1f} at the start, {load_dec:.1f} after decoding.")
        lines.append("")

    # ---- prefill -------------------------------------------------------
    if DO_PREFILL:
        ptab = []
        checks = []
        tver = "?"
        best = {}  # (name, n, threads) -> [a3, llama.cpp, torch, load]
        pairs = {}  # (name, n, threads) -> a3 / PyTorch of each round's back-to-back runs
        for rnd in range(PREFILL_ROUNDS):
            for n in SEQLENS:
                ids = os.path.join(WORK, f"ids{n}.bin")
                if rnd == 0:
                    write_ids(ids, n)
                for threads in THREADS:
                    for name, d, comp, ggufs in models:
                        b = best.setdefault((name, n, threads), [0.0, None, None, 0.0])
                        # llama.cpp once: it is far from the others at these sizes
                        if rnd == 0 and use_llama and "orig" in ggufs:
                            b[1], backend = llama(ggufs["orig"], "prefill", threads, n)
                        # a3 and PyTorch back to back, which one first
                        # alternating by round: neither side always runs
                        # second, after the other has heated the machine
                        tp = None
                        if use_torch and rnd % 2:
                            tp, tnll, tver = torch_prefill(d, ids, threads)
                        a, nll = a3_prefill(d, ids, n, threads)
                        b[0] = max(b[0], a)
                        if use_torch and not rnd % 2:
                            tp, tnll, tver = torch_prefill(d, ids, threads)
                        if tp is not None:
                            b[2] = max(b[2] or 0.0, tp)
                            pairs.setdefault((name, n, threads), []).append(a / tp)
                            checks.append(abs(nll - tnll))
                        b[3] = max(b[3], load())
                        log(f"bench_speed: prefill round {rnd + 1}/{PREFILL_ROUNDS} {name} n={n} "
                            f"threads={threads}: a3 {a:.1f}, torch {tp if tp is None else f'{tp:.1f}'} tok/s "
                            f"(load {load():.1f})")
        for n in SEQLENS:
            for threads in THREADS:
                for name, d, comp, ggufs in models:
                    a, ll, tp, ld = best[(name, n, threads)]
                    ptab.append((name, n, threads, a, ll, tp, ld, pairs.get((name, n, threads), [])))
        lines.append(f"Prefill: `a3 eval --ids` on one window of N ids (OpenBLAS kernel {doc.get('kernel')}, "
                     f"sgemm {doc.get('gflops')} GFLOP/s at {doc.get('threads')} threads in `a3 doctor`), "
                     f"llama.cpp one batch of N (CPU backend {backend}), PyTorch {tver} float32 "
                     f"(`torch_peer.py`); tok/s: best of {PREFILL_ROUNDS} interleaved rounds for a3 and PyTorch "
                     f"(one run varies by 10-20% here), one run of llama.cpp; a3 / PyTorch: the median "
                     f"over the rounds of a3's run over the PyTorch run next to it (a3 first in odd "
                     f"rounds, PyTorch first in even ones), with the range in brackets (steadier on a "
                     f"noisy machine than a ratio of bests) and in how many of the rounds a3 was the "
                     f"faster; load = the highest load average seen while that row ran.")
        lines.append("")
        lines.append("| model | N | threads | a3 tok/s | llama.cpp tok/s | PyTorch tok/s | a3 / llama.cpp "
                     "| a3 / PyTorch | load |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, n, threads, a, ll, tp, ld, pr in ptab:
            vs_torch = (f"{statistics.median(pr):.2f}x [{min(pr):.2f}-{max(pr):.2f}], "
                        f"{sum(r > 1 for r in pr)} of {len(pr)}" if pr else "n/a")
            lines.append(f"| {name} | {n} | {threads} | {a:.1f} | {f'{ll:.1f}' if ll else 'n/a'} | "
                         f"{f'{tp:.1f}' if tp else 'n/a'} | {fmt_ratio(a, ll)} | {vs_torch} | {ld:.1f} |")
        lines.append("")
        if checks:
            lines.append(f"- a3 and PyTorch mean NLL on the same ids agree to {max(checks):.1e} nats "
                         f"(largest difference over the runs).")
        lines.append("- a3 eval and PyTorch compute the logits of every position (the lm_head over N "
                     "rows, which eval needs for the NLL of every position; a3 also scores them); "
                     "llama.cpp only those of the last token.")
        path = doc.get("prefill", "?")
        if path.startswith("avx512"):
            lines.append("- a3's time includes widening the F16 weights: its own AVX-512F GEMM (a3_k_gemm) "
                         "converts each block of W to float while packing it for the kernel, once per pass, "
                         "with no float32 copy of W; PyTorch's excludes it (weights converted at load, not "
                         "timed, and held in float32); llama.cpp multiplies the F16 weights directly.")
        else:
            lines.append(f"- a3's prefill path here: {path} (blocks of at most 8 MiB per thread, each right "
                         "before its product, once per pass, timed); PyTorch's excludes the conversion (weights "
                         "converted at load, not timed); llama.cpp multiplies the F16 weights directly.")
        gr = {t: gemm_ratios(t) for t in THREADS}
        if all(gr.values()):
            lines.append("- The product alone (bench_gemm: 512 x 4096 times the 11008 x 4096 F16 gate "
                         "matrix, 5 rounds, W in 8 copies taken in turn so none comes from the cache): "
                         + "; ".join(f"{t} thread(s) a3_k_gemm {g[0]:.0f}, conversion + sgemm {g[1]:.0f}, "
                                     f"sgemm on a float32 copy {g[2]:.0f} GFLOP/s (ratios run by run: "
                                     f"{g[3]:.2f}x and {g[4]:.2f}x)" for t, g in gr.items())
                         + ". The last is PyTorch's product once its weights are float32.")
    for n_ in notes:
        lines.append(f"- {n_}")
    lines.append(f"- total {time.time() - t_start:.0f} s; load average at the end {load():.1f} "
                 f"(ratios are measured interleaved; the load column says what else ran).")

    body = "\n".join(lines)
    print(body)
    if os.environ.get("A3_BENCH_DOC", "1") != "0":
        write_doc(body)
    if not KEEP:
        shutil.rmtree(WORK, ignore_errors=True)


def write_doc(body):
    begin, end = "<!-- BEGIN speed -->", "<!-- END speed -->"
    text = open(DOC).read() if os.path.exists(DOC) else "# Performance\n"
    section = (f"{begin}\n## Decoding and prefill against the bandwidth bound and peers "
               f"(`make bench`, scripts/bench_speed.py)\n\n{body}\n{end}")
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, DOC)


if __name__ == "__main__":
    main()
