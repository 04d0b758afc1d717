#!/usr/bin/env python3
"""make bench-scale: writes docs/PERFORMANCE.md (issue 7), measured in one run.

- sgemm GFLOP/s and the OpenBLAS kernel (bench_sgemm);
- forward pass and calibration at d = 2048 (llama-1b-like, 2 layers) and
  d = 4096 (llama-7b-like, 1 layer): tokens/s, GFLOP/s, the share of the
  forward pass spent in its GEMMs and their rate (bench_forward,
  bench_fwdgemm), statistics overhead and peak RSS against the estimate
  (bench_calib, bench_calibmem, and `a3 calibrate` itself);
- solve time per layer for QK, OV and MLP at d = 4096 / 32 heads and
  d = 8192 / 64 heads / 8 KV groups, projected to 7B (32 layers) and 70B
  (80 layers) (bench_solve), with the OV solve taken apart step by step
  (bench_ovparts) and, when perf works, profiled;
- prefill throughput of the d = 2048 model compressed by 20% and 40% of
  its parameters (a3 calibrate/plan/apply) against the theoretical ratio.
Temporary models live in a temporary directory that is removed at the end
(about 4 GB at the peak: the 70B-like layer is skipped when the disk or the
memory cannot hold it). Before measuring it waits (up to --wait seconds)
until no other process uses more than 10% of a core, and it records any
that do during the run. Takes about 10-12 minutes on 2 cores.
Usage: scripts/bench_scale.py [--out docs/PERFORMANCE.md] [--wait S] [--no-70b]
Environment: BUILD (default build) names the build directory.
"""
import argparse
import datetime
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
A3 = os.path.join(BUILD, "a3")
BENCH = os.path.join(BUILD, "bench")
BUSY_PCT = 10.0  # another process above this share of one core counts as noise

T0 = time.time()


def log(msg):
    print("[%5.0fs] %s" % (time.time() - T0, msg), flush=True)


# ---- other processes ---------------------------------------------------------

def _procs():
    """{pid: (ppid, ticks, comm)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                s = f.read()
        except OSError:
            continue
        comm = s[s.find("(") + 1:s.rfind(")")]
        rest = s[s.rfind(")") + 2:].split()
        try:
            out[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]), comm)
        except (IndexError, ValueError):
            continue
    return out


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            s = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return s[:100]


def _ours(pid, procs, me):
    seen = 0
    while pid > 1 and seen < 64:
        if pid == me:
            return True
        pid = procs.get(pid, (0,))[0]
        seen += 1
    return False


def busy_others(interval):
    """Processes outside this script's tree above BUSY_PCT over interval s."""
    tck = os.sysconf("SC_CLK_TCK")
    a = _procs()
    time.sleep(interval)
    b = _procs()
    me = os.getpid()
    res = []
    for pid, (_, ticks, comm) in b.items():
        if pid in a and not _ours(pid, b, me):
            pct = 100.0 * (ticks - a[pid][1]) / tck / interval
            if pct > BUSY_PCT:
                res.append((pid, comm, pct, _cmdline(pid)))
    return res


class Monitor(threading.Thread):
    """Samples other processes' CPU use every 2 s while the benchmarks run."""

    def __init__(self):
        super().__init__(daemon=True)
        self.step = "start"
        self.seen = {}  # (pid, comm) -> [max pct, set of steps, cmdline]
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid, comm, pct, cmd in busy_others(2.0):
                e = self.seen.setdefault((pid, comm), [0.0, set(), cmd])
                e[0] = max(e[0], pct)
                e[1].add(self.step)


MON = Monitor()


def wait_quiet(limit):
    start = time.time()
    while True:
        busy = busy_others(3.0)
        if not busy:
            log("machine quiet (no other process above %.0f%% of a core)" % BUSY_PCT)
            return []
        if time.time() - start >= limit:
            log("still busy after %.0f s; measuring anyway (noted in the report)" % limit)
            return busy
        log("waiting for a quiet machine: " + "; ".join(
            "pid %d %s at %.0f%%" % (p, c, pct) for p, c, pct, _ in busy))
        time.sleep(10)


# ---- running things ------------------------------------------------------------

ENV = dict(os.environ)


def run(cmd, timeout=1800, echo=True):
    """Run cmd, echo its stdout lines, return (stdout, max RSS in KiB)."""
    if echo:
        log("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise SystemExit("bench-scale: timed out after %d s: %s" % (timeout, " ".join(cmd)))
    if p.returncode != 0:
        raise SystemExit("bench-scale: command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err[-3000:]))
    if echo:
        for line in out.splitlines():
            if not line.startswith(("RESULT", "PROJECT", "CPU ", "CONFIG ")):
                print("         " + line, flush=True)
    return out


def run_rss(cmd, timeout=1800):
    """Run cmd; return (stdout + stderr, its own peak RSS in MiB) via wait4."""
    log("$ " + " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd))
    with tempfile.TemporaryFile(mode="w+") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV)
        deadline = time.time() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                raise SystemExit("bench-scale: timed out: " + " ".join(cmd))
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if p.returncode != 0:
        raise SystemExit("bench-scale: command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), text[-3000:]))
    return text, ru.ru_maxrss / 1024.0


def kv(text, prefix="RESULT"):
    """key=value pairs of the last line starting with prefix."""
    lines = [l for l in text.splitlines() if l.startswith(prefix + " ")]
    if not lines:
        raise SystemExit("bench-scale: no %s line in:\n%s" % (prefix, text[-2000:]))
    res = {}
    for tok in lines[-1].split()[1:]:
        k, _, v = tok.partition("=")
        try:
            res[k] = int(v)
        except ValueError:
            try:
                res[k] = float(v)
            except ValueError:
                res[k] = v
    return res


def bench(name, *args, timeout=1800):
    return run([os.path.join(BENCH, name)] + [str(a) for a in args], timeout=timeout)


FWD_RE = re.compile(r"([\d.]+) tok/s\s+([\d.]+) GFLOP/s \(\s*([\d.]+)% of sgemm ([\d.]+) GFLOP/s, kernel (\S+), (\d+) threads\)")
CAL_RE = re.compile(r"(\d+) x (\d+) tok:\s+([\d.]+) tok/s, forward\s+([\d.]+) tok/s, calibration/forward time ([\d.]+)x; "
                    r"peak RSS ([\d.]+) MiB vs estimate ([\d.]+) MiB \(kernel (\S+)\)")


def bench_forward(model, T, B, R=3):
    out = bench("bench_forward", model, T, B, R)
    m = FWD_RE.search(out)
    if not m:
        raise SystemExit("bench-scale: cannot read bench_forward's output:\n" + out)
    return {"tps": float(m.group(1)), "gflops": float(m.group(2)), "pct": float(m.group(3)),
            "sgemm": float(m.group(4)), "kernel": m.group(5), "threads": int(m.group(6))}


def bench_calib(model, nw, L):
    out = bench("bench_calib", model, nw, L)
    m = CAL_RE.search(out)
    if not m:
        raise SystemExit("bench-scale: cannot read bench_calib's output:\n" + out)
    return {"tps": float(m.group(3)), "fwd_tps": float(m.group(4)), "ratio": float(m.group(5)),
            "rss": float(m.group(6)), "est": float(m.group(7)), "kernel": m.group(8)}


def synth(like, layers, out):
    run([A3, "synth", "--like", like, "--layers", str(layers), "-o", out], timeout=900)


def du(path):
    total = 0
    for dp, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dp, f))
    return total


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


KERNELS = set()


def note_kernel(k):
    if k:
        KERNELS.add(str(k))


# ---- the measurements ----------------------------------------------------------

def measure(tmp, args):
    R = {"steps": {}}

    def step(name):
        MON.step = name
        R["steps"][name] = time.time()
        log("== " + name)

    step("sgemm")
    out = bench("bench_sgemm", 3)
    R["sgemm"] = kv(out)
    R["cpu"] = next((l[4:] for l in out.splitlines() if l.startswith("CPU ")), "unknown")
    R["config"] = next((l[7:] for l in out.splitlines() if l.startswith("CONFIG ")), "unknown")
    note_kernel(R["sgemm"]["kernel"])
    if R["sgemm"]["reexec"]:  # programs without a3_blas_startup get the same kernel
        ENV["OPENBLAS_CORETYPE"] = R["sgemm"]["kernel"]
        log("OpenBLAS picked a generic kernel; running everything with OPENBLAS_CORETYPE=%s" % R["sgemm"]["kernel"])
    R["nproc"] = os.cpu_count()

    models = {"d2048": ("llama-1b", 2), "d4096": ("llama-7b", 1)}
    step("synth")
    for name, (like, layers) in models.items():
        synth(like, layers, os.path.join(tmp, name))

    # Forward pass: same T for forward and calibration so FLOPs/token agree.
    shapes = {"d2048": (512, 4, 4, 512), "d4096": (512, 2, 4, 512)}  # T, B, calib windows, calib seqlen
    R["fwd"], R["fwdgemm"], R["calib"], R["calibmem"], R["cli"] = {}, {}, {}, {}, {}
    for name in models:
        T, B, nw, L = shapes[name]
        mdir = os.path.join(tmp, name)
        step("forward " + name)
        R["fwd"][name] = bench_forward(mdir, T, B)
        note_kernel(R["fwd"][name]["kernel"])
        R["fwdgemm"][name] = kv(bench("bench_fwdgemm", mdir, T, B, 3))
        note_kernel(R["fwdgemm"][name]["kernel"])
        step("calibration " + name)
        R["calib"][name] = bench_calib(mdir, nw, L)
        note_kernel(R["calib"][name]["kernel"])
        R["calibmem"][name] = kv(bench("bench_calibmem", mdir, nw, L))
        note_kernel(R["calibmem"][name]["kernel"])
        ids = os.path.join(tmp, "ids.bin")
        if not os.path.exists(ids):
            rng = random.Random(7)
            with open(ids, "wb") as f:
                f.write(struct.pack("<%dI" % 65536, *[rng.randrange(32000) for _ in range(65536)]))
        text, rss = run_rss([A3, "calibrate", mdir, "--ids", ids, "-o", os.path.join(tmp, name + ".a3c"),
                             "--samples", str(nw), "--seqlen", str(L)])
        m = re.search(r"peak memory estimate ([\d.]+) (KiB|MiB|GiB|B)\b", text)
        w = re.search(r"\((\d+) tokens, ([\d.]+) s\)", text)
        unit = {"B": 1 / 1048576.0, "KiB": 1 / 1024.0, "MiB": 1.0, "GiB": 1024.0}
        R["cli"][name] = {"est": float(m.group(1)) * unit[m.group(2)] if m else None, "rss": rss,
                          "tokens": int(w.group(1)) if w else nw * L, "secs": float(w.group(2)) if w else None,
                          "est_text": (m.group(1) + " " + m.group(2)) if m else "?"}
        log("a3 calibrate: estimate %s, peak RSS %.0f MiB" % (R["cli"][name]["est_text"], rss))

    # Solves at d = 4096 (7B-like layer).
    step("solve d4096")
    d4096 = os.path.join(tmp, "d4096")
    R["solve7"] = kv(bench("bench_solve", d4096, "-w", 4, "-s", 128, "-r", 3, "-p", 32))
    note_kernel(R["solve7"]["kernel"])
    R["ov7"] = kv(bench("bench_ovparts", 128, 1, 4096, 8))
    R["perf"] = profile_ov(tmp, d4096)

    # Compressed prefill on the d = 2048 model.
    step("compressed prefill")
    R["compressed"] = compressed(tmp)

    # Solves at d = 8192 (70B-like layer, GQA), if it fits.
    R["solve70"] = None
    if args.no_70b:
        R["skip70"] = "skipped (--no-70b)"
    else:
        free_disk = shutil.disk_usage(tmp).free
        avail = mem_available()
        if free_disk < 6 << 30:
            R["skip70"] = "skipped: %.1f GB free on %s, 6 GB needed" % (free_disk / 1e9, tmp)
        elif avail < 12 << 30:
            R["skip70"] = "skipped: %.1f GB of memory available, 12 GB needed" % (avail / 1e9)
        else:
            step("solve d8192")
            shutil.rmtree(os.path.join(tmp, "d4096"))  # disk: keep the peak low
            d8192 = os.path.join(tmp, "d8192")
            synth("llama-70b", 1, d8192)
            R["size70"] = du(d8192)
            R["solve70"] = kv(bench("bench_solve", d8192, "-w", 4, "-s", 128, "-r", 2, "-p", 80, timeout=2400))
            note_kernel(R["solve70"]["kernel"])
            shutil.rmtree(d8192)
            R["ov70"] = kv(bench("bench_ovparts", 128, 8, 8192, 2))
    step("end")
    return R


def profile_ov(tmp, model):
    """perf's top symbols while a3_ov_solve runs on every group of the layer."""
    perf = shutil.which("perf")
    if not perf:
        return {"error": "perf not installed"}
    data = os.path.join(tmp, "ov.perf")
    cmd = [perf, "record", "-q", "-F", "499", "-o", data, "--", os.path.join(BENCH, "bench_solve"), model,
           "-w", "1", "-s", "16", "-r", "1", "-k", "ov"]
    log("$ " + " ".join(c if not c.startswith(ROOT) else os.path.relpath(c, ROOT) for c in cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        return {"error": "perf record failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]}
    r = subprocess.run([perf, "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym"],
                       capture_output=True, text=True, env=ENV)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4)))
    if not rows:
        return {"error": "perf report gave no samples"}
    os.unlink(data)
    return {"rows": rows[:10]}


def compressed(tmp):
    """Prefill of the d = 2048 model and its 20% / 40% compressions."""
    base = os.path.join(tmp, "d2048")
    cache = os.path.join(tmp, "c.a3c")
    ids = os.path.join(tmp, "ids.bin")
    run([A3, "calibrate", base, "--ids", ids, "-o", cache, "--samples", "8", "--seqlen", "256"])
    T, B, R = 1023, 2, 3  # mean attended keys (T + 1) / 2 = 512 = the plans' context
    res = {"T": T, "B": B, "context": 512, "models": {}}
    dirs = {"original": base}
    for pct in (20, 40):
        plan = os.path.join(tmp, "p%d.json" % pct)
        run([A3, "plan", cache, "--budget", "params=%d%%" % pct, "--strategy", "uniform", "--context", "512",
             "--model", base, "-o", plan])
        with open(plan) as f:
            j = json.load(f)
        out = os.path.join(tmp, "d2048-p%d" % pct)
        run([A3, "apply", base, "--cache", cache, "--plan", plan, "-o", out])
        dirs["p%d" % pct] = out
        res["models"]["p%d" % pct] = {"summary": j["summary"], "layer0": j["layers"][0]}
        res["dims"] = j["model"]
    res["models"]["original"] = {}
    # Two interleaved rounds, best of each model's (best of R) runs.
    for rnd in range(2):
        for name, d in dirs.items():
            f = bench_forward(d, T, B, R)
            note_kernel(f["kernel"])
            m = res["models"][name]
            if "fwd" not in m or f["tps"] > m["fwd"]["tps"]:
                m["fwd"] = f
    # Where each model's pass goes (GEMM time against the rest).
    for name, d in dirs.items():
        g = kv(bench("bench_fwdgemm", d, T, B, 2))
        note_kernel(g["kernel"])
        res["models"][name]["gemm"] = g
    for name in ("p20", "p40"):
        shutil.rmtree(dirs[name])
    return res


# ---- the report ----------------------------------------------------------------

def pct(x):
    return "%.0f%%" % (100 * x)


def fmt_s(x):
    if x >= 100:
        return "%.0f s" % x
    if x >= 10:
        return "%.1f s" % x
    if x >= 0.1:
        return "%.2f s" % x
    return "%.1f ms" % (1000 * x)


def fmt_min(x):
    return "%s (%.1f min)" % (fmt_s(x), x / 60) if x >= 60 else fmt_s(x)


def report(R, busy_before, elapsed, args):
    sg = R["sgemm"]
    peak = sg["gflops"]
    L = []
    w = L.append
    # the time the measurements ended (also when rewritten with --report-only)
    now = datetime.datetime.fromtimestamp(R["steps"].get("end", time.time()),
                                          datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    w("# Performance")
    w("")
    w("Generated by `make bench-scale` (scripts/bench_scale.py) on %s; the run took %.1f minutes. "
      "Every figure below was measured in that run; nothing is copied from elsewhere." % (now, elapsed / 60))
    w("")
    w("| machine | |")
    w("|---|---|")
    w("| CPU | %s, %d cores usable |" % (R["cpu"], R["nproc"]))
    w("| OpenBLAS | %s, %s threading |" % (R["config"], sg["threading"]))
    w("| kernel | **%s** (best for this CPU by a3's table: %s; OPENBLAS_CORETYPE %s) |" % (
        sg["kernel"], sg["best"],
        "set by the script after a3_blas_startup had to re-execute" if sg["reexec"] else "not needed"))
    w("| kernels the benchmarks reported | %s |" % ", ".join(sorted(KERNELS)))
    w("| threads | %d (OpenBLAS for GEMMs; attention workers the same number) |" % sg["threads"])
    others = sorted(MON.seen.items(), key=lambda kv_: -kv_[1][0])
    if not others and not busy_before:
        w("| other load | none: no other process used more than %.0f%% of a core at any 2 s sample |" % BUSY_PCT)
    else:
        desc = ["pid %d `%s` up to %.0f%% of a core during %s" % (pid, (cmd or comm)[:60], mx, ", ".join(sorted(st)))
                for (pid, comm), (mx, st, cmd) in others]
        desc += ["pid %d `%s` at %.0f%% at the start" % (p, (c2 or c)[:60], q) for p, c, q, c2 in busy_before]
        w("| other load | **%s**: figures of those steps may be low |" % "; ".join(desc))
    w("")

    # sgemm
    w("## sgemm")
    w("")
    w("Row-major `C = A B`, n = 2048, float32 (`a3_blas_sgemm_bench`, best of three 1 s runs): the reference "
      "rate for every percentage below.")
    w("")
    w("| threads | GFLOP/s | kernel |")
    w("|---:|---:|---|")
    w("| %d | **%.1f** (worst of the three runs: %.1f) | %s |" % (sg["threads"], peak, sg.get("gflops_worst", peak),
                                                                 sg["kernel"]))
    w("| 1 | %.1f | %s |" % (sg["gflops_1t"], sg["kernel"]))
    w("")
    inproc = [R["fwd"][n]["sgemm"] for n in R["fwd"]] + [R["fwdgemm"][n]["sgemm_gflops"] for n in R["fwdgemm"]]
    inproc += [m["gemm"]["sgemm_gflops"] for m in R["compressed"]["models"].values() if "gemm" in m]
    w("The forward-pass benchmarks measure a square sgemm again in their own processes (n = 2048, 1 s): "
      "%.0f to %.0f GFLOP/s over the run. The machine's rate moves by a few percent from one measurement to "
      "the next, so a GEMM rate measured inside a pass can come out slightly above the reference." % (
          min(inproc), max(inproc)))
    w("")

    # forward
    w("## Forward pass")
    w("")
    w("Random-weight models from `a3 synth` (F16 on disk, as real checkpoints): d = 2048 is llama-1b-like "
      "(32 query / 8 KV heads, d_ff 8192, 2 layers), d = 4096 llama-7b-like (32 heads, d_ff 11008, 1 layer). "
      "`bench_forward`: best of 3 passes; FLOPs count the linear layers (2 per weight per token) and causal "
      "attention (2 x mean visible keys x (r_qk + r_ov) per head), not the lm_head. `bench_fwdgemm` times the "
      "linear layers' sgemm calls inside the pass and the conversion of the F16 weights to float32 that the pass "
      "does once per layer. Where a3's own AVX-512F GEMM runs (`a3 doctor`, line prefill), prefill on F16 "
      "weights makes no sgemm calls, so bench_fwdgemm turns it off: its columns describe the conversion + "
      "sgemm path; the speed section (`make bench`) times the default.")
    w("")
    w("| model | tokens (T x B) | tok/s | GFLOP/s | % of sgemm | linear GEMMs: GFLOP/s | % of sgemm | "
      "GEMM share of the pass | F16 -> F32 share |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in R["fwd"]:
        f, g = R["fwd"][name], R["fwdgemm"][name]
        w("| %s, %d layer(s) | %d x %d | %.0f | %.1f | %s | %.1f | **%s** | %s | %s |" % (
            name, g["layers"], g["T"], g["B"], f["tps"], f["gflops"], pct(f["gflops"] / peak), g["lin_gflops"],
            pct(g["lin_gflops"] / peak), pct(g["lin_s"] / g["pass_s"]), pct(g["convert_s"] / g["pass_s"])))
    w("")
    w("The same GEMM shapes timed alone (outside the pass, same operands' sizes) run at %s GFLOP/s against %s "
      "inside the pass. The rest of the pass is the F16 -> F32 conversion of each layer's weights "
      "(single-threaded, a fixed cost per layer per pass, so its share falls as more tokens go through at "
      "once: %s of the pass here) plus attention, norms and activations." % (
          " and ".join("%.1f" % R["fwdgemm"][n]["alone_gflops"] for n in R["fwdgemm"]),
          " and ".join("%.1f" % R["fwdgemm"][n]["lin_gflops"] for n in R["fwdgemm"]),
          " and ".join(pct(R["fwdgemm"][n]["convert_s"] / R["fwdgemm"][n]["pass_s"]) for n in R["fwdgemm"])))
    w("")

    # calibration
    w("## Calibration")
    w("")
    w("Same models and tokens per window as the forward pass. Calibration GFLOP/s counts the forward "
      "pass's FLOPs only. Statistics overhead = calibration time / plain "
      "forward time over the same tokens - 1. `bench_calib` calibrates first (the model's file mapping is "
      "touched for the first time) and then runs the forward pass warm; `bench_calibmem` also calibrates a "
      "second time, warm, and takes the better of the two, which compares like with like.")
    w("")
    w("| model | tokens | calibration tok/s | GFLOP/s | overhead (bench_calib, cold) | overhead (warm vs warm) |")
    w("|---|---:|---:|---:|---:|---:|")
    for name in R["calib"]:
        c, cm, f = R["calib"][name], R["calibmem"][name], R["fwd"][name]
        fpt = f["gflops"] * 1e9 / f["tps"]
        w("| %s | %d x %d | %.0f | %.1f | %s | **%s** |" % (
            name, cm["windows"], cm["seqlen"], c["tps"], c["tps"] * fpt / 1e9, pct(c["ratio"] - 1),
            pct(cm["overhead"])))
    w("")
    w("### Peak memory against the estimate")
    w("")
    w("`a3 calibrate` prints a peak-memory estimate (`a3_calib_memory_estimate`: hidden states of all "
      "calibration tokens, one layer in float32, chunk scratch, statistics). Measured: the peak RSS of "
      "`bench_calib` (getrusage), of `a3 calibrate` itself (wait4), and from `bench_calibmem` (sampling "
      "/proc/self/status every 2 ms) its split into heap (RssAnon) and the pages of the memory-mapped F16 "
      "weight file (RssFile), which the estimate leaves out because the kernel can drop and re-read them.")
    w("")
    w("| model | tokens | estimate | peak RSS bench_calib | peak RSS `a3 calibrate` | heap at the peak | "
      "mapped weights at the peak | heap / estimate |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in R["calib"]:
        c, cm, cl = R["calib"][name], R["calibmem"][name], R["cli"][name]
        w("| %s | %d x %d | %.0f MiB (CLI: %s) | %.0f MiB | %.0f MiB | %.0f MiB | %.0f MiB | **%.2f** |" % (
            name, cm["windows"], cm["seqlen"], c["est"], cl["est_text"], c["rss"], cl["rss"],
            cm["anon_at_peak_mib"], cm["file_at_peak_mib"], cm["anon_at_peak_mib"] / cm["estimate_mib"]))
    w("")

    # solves
    s7, s70 = R["solve7"], R["solve70"]
    w("## Solve time")
    w("")
    w("`bench_solve`: the model is calibrated on 4 x 128 synthetic tokens (in memory), then per layer, at "
      "half width with the a3 methods, best of a few runs: **QK** = `a3_qk_select` for every KV group + the "
      "gather of the kept q/k rows; **OV** = `a3_ov_solve` for every KV group + the copy of the new o_proj "
      "columns; **MLP** = `a3_mlp_select` + the gather of gate/up rows and down_proj columns, in "
      "`a3 apply`'s loop order. Not part of the solve, shown for scale: the loss curves (spectra) that "
      "calibration computes once per layer, and the F16 -> F32 conversion of the layer's weights.")
    w("")
    w("| layer | QK | OV | MLP | solve per layer | curves | F16 -> F32 |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("d 4096, 32 heads (MHA), d_ff 11008 (7B)", s7)]
    if s70:
        rows.append(("d 8192, 64 heads, 8 KV groups, d_ff 28672 (70B)", s70))
    for label, s in rows:
        w("| %s | %s | %s | %s | **%s** | %s | %s |" % (
            label, fmt_s(s["qk_s"] + s["qk_gather_s"]), fmt_s(s["ov_s"] + s["ov_copy_s"]),
            fmt_s(s["mlp_s"] + s["mlp_gather_s"]), fmt_s(s["solve_s"]), fmt_s(s["curves_s"]), fmt_s(s["load_s"])))
    w("")
    w("Projected to whole models (per-layer time x layers):")
    w("")
    w("| model | layers | solves | + curves | + F16 -> F32 | A3 paper (GPU) |")
    w("|---|---:|---:|---:|---:|---|")
    w("| 7B | 32 | **%s** | %s | %s | minutes to an hour (OV step about 47 min, A3-METHOD.md section 2) |" % (
        fmt_min(32 * s7["solve_s"]), fmt_min(32 * (s7["solve_s"] + s7["curves_s"])),
        fmt_min(32 * (s7["solve_s"] + s7["curves_s"] + s7["load_s"]))))
    if s70:
        w("| 70B (GQA) | 80 | **%s** | %s | %s | |" % (
            fmt_min(80 * s70["solve_s"]), fmt_min(80 * (s70["solve_s"] + s70["curves_s"])),
            fmt_min(80 * (s70["solve_s"] + s70["curves_s"] + s70["load_s"]))))
    else:
        w("| 70B (GQA) | 80 | %s | | | |" % R.get("skip70", "skipped"))
    w("")
    w("### The OV solve: dgesdd against the Gram route")
    w("")
    w("`a3_ov_solve` (src/a3/ov.c) takes the thin SVD of the whitened `M = Lc^T Wo_cat` (hd x PER*d) through "
      "its hd x hd Gram matrix: `K = M M^T` (dsyrk), its eigenpairs (dsyevd), `V_r^T = S_r^-1 U_r^T M` and the "
      "new v rows as two dgemm calls (the 'Gram route' column, and the `a3_ov_solve` column, which times the "
      "library function itself). It first used LAPACK's dgesdd on M directly; `bench_ovparts` still times "
      "that route step by step on random data of the same shapes (rank 64), for comparison, and checks that "
      "both give the same factors. Seconds per KV group:")
    w("")
    ovs = [("7B: hd 128, 1 head/group, d 4096", R["ov7"])]
    if R.get("ov70"):
        ovs.append(("70B: hd 128, 8 heads/group, d 8192", R["ov70"]))
    w("| shape | Wo_cat gather | dtrmm | **dgesdd** | dtrsm | **new_v loop** | new_o | dgesdd route | "
      "a3_ov_solve (Gram) | Gram route alone | agreement (sigma, vectors) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, o in ovs:
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | **%s** | %.0e, %.0e |" % (
            label, fmt_s(o["gather_s"]), fmt_s(o["trmm_s"]), fmt_s(o["gesdd_s"]), fmt_s(o["trsm_s"]),
            fmt_s(o["new_v_s"]), fmt_s(o["new_o_s"]), fmt_s(o["steps_s"]), fmt_s(o["lib_s"]), fmt_s(o["alt_s"]),
            o["sv_err"], o["vec_err"]))
    w("")
    w("Inside dgesdd (LAPACK sees a wide hd x PER*d matrix, so it starts with an LQ factorisation and forms "
      "its Q for the thin U, V^T): the LQ step alone (`LAPACKE_dgelqf` + `LAPACKE_dorglq` on the same "
      "matrix) and dgesdd with OpenBLAS on one thread, per group:")
    w("")
    w("| shape | dgesdd, %d threads | LQ step alone | share of dgesdd | dgesdd, 1 thread |" % R["sgemm"]["threads"])
    w("|---|---:|---:|---:|---:|")
    for label, o in ovs:
        w("| %s | %s | %s | %s | %s |" % (label, fmt_s(o["gesdd_s"]), fmt_s(o["lq_s"]),
                                         pct(o["lq_s"] / o["gesdd_s"]), fmt_s(o["gesdd_1t_s"])))
    w("")
    pf = R.get("perf") or {}
    if pf.get("rows"):
        w("perf (`perf record -F 499` of `bench_solve -k ov` on the 7B layer: the OV solves of all 32 groups, "
          "after a tiny calibration and the weights' conversion, which account for the sgemm and f16 "
          "symbols), top symbols by samples over both cores:")
        w("")
        w("| samples | object | symbol |")
        w("|---:|---|---|")
        for p_, dso, kind, sym in pf["rows"]:
            w("| %.1f%% | %s | `%s`%s |" % (p_, dso, sym, " (kernel)" if kind == "k" else ""))
        w("")
    else:
        w("perf: %s." % pf.get("error", "not run"))
        w("")

    # compressed
    cp = R["compressed"]
    o = cp["models"]["original"]["fwd"]
    w("## Compressed-model prefill")
    w("")
    w("The d = 2048 model calibrated (`a3 calibrate`, 8 x 256 tokens), planned with `a3 plan --budget "
      "params=P%% --strategy uniform --context %d` and compressed with `a3 apply` (F16 like the input); "
      "`bench_forward` at T = %d, B = %d on each (two interleaved rounds, best of 3 passes each), so the mean "
      "number of keys a query attends to, (T + 1) / 2 = %d, is the plans' context. Theoretical speedup = the "
      "layers' FLOPs per token of the original over the compressed model's, from the plans' summaries." % (
          cp["context"], cp["T"], cp["B"], (cp["T"] + 1) // 2))
    w("")
    w("| model | params removed | QK / OV rank, MLP width (layer 0) | FLOPs/token (layers) | tok/s | "
      "theoretical speedup | measured speedup | measured / theoretical |")
    w("|---|---:|---|---:|---:|---:|---:|---:|")
    full = None
    for name in ("original", "p20", "p40"):
        m = cp["models"][name]
        if name == "original":
            s = cp["models"]["p20"]["summary"]
            full = s["flops_per_token"]["layers_full"]
            dm = cp["dims"]
            w("| original | 0%% | %d / %d, %d | %d | %.0f | 1 | 1 | |" % (
                dm["head_dim"], dm["head_dim"], dm["d_ff"], full, o["tps"]))
            continue
        s, l0 = m["summary"], m["layer0"]
        theo = full / s["flops_per_token"]["layers"]
        meas = m["fwd"]["tps"] / o["tps"]
        m["theo"], m["meas"] = theo, meas
        w("| %s | %.1f%% | %d / %d, %d | %d | %.0f | %.3f | %.3f | **%s** |" % (
            name.replace("p", "params -") + "%", s["removed_percent"]["params"], l0["qk"][0], l0["ov"][0],
            l0["mlp"], s["flops_per_token"]["layers"], m["fwd"]["tps"], theo, meas, pct(meas / theo)))
    w("")

    # targets
    w("## Targets")
    w("")
    T = []
    g_ok = all(R["fwdgemm"][n]["lin_gflops"] / peak >= 0.6 for n in R["fwdgemm"])
    T.append("- **Forward-pass GEMMs at 60%% or more of sgemm: %s.** The linear layers' sgemm calls run at %s "
             "of the measured %.1f GFLOP/s inside the pass; the whole pass, counting all its time, reaches %s." % (
                 "reached" if g_ok else "NOT reached",
                 " and ".join("%s (%s)" % (pct(R["fwdgemm"][n]["lin_gflops"] / peak), n) for n in R["fwdgemm"]),
                 peak, " and ".join("%s (%s)" % (pct(R["fwd"][n]["gflops"] / peak), n) for n in R["fwd"])))
    if not g_ok:
        T.append("  Measured cause: the same shapes alone run at %s GFLOP/s, and the pass spends %s of its time "
                 "outside GEMMs (%s in the F16 -> F32 conversion)." % (
                     " / ".join("%.1f" % R["fwdgemm"][n]["alone_gflops"] for n in R["fwdgemm"]),
                     " / ".join(pct(1 - R["fwdgemm"][n]["lin_s"] / R["fwdgemm"][n]["pass_s"]) for n in R["fwdgemm"]),
                     " / ".join(pct(R["fwdgemm"][n]["convert_s"] / R["fwdgemm"][n]["pass_s"]) for n in R["fwdgemm"])))
    ov_max = max(R["calibmem"][n]["overhead"] for n in R["calibmem"])
    cold_max = max(R["calib"][n]["ratio"] - 1 for n in R["calib"])
    c4 = R["calibmem"]["d4096"]
    extra4 = min(c4["calib_cold_s"], c4["calib_warm_s"]) - c4["forward_s"]
    T.append("- **Statistics overhead under 25%% of the forward pass: %s.** Warm against warm: %s; bench_calib's "
             "cold calibration against a warm forward pass: %s. At d = 4096 the calibration takes %s more than "
             "the forward pass; the loss curves, a fixed cost per layer, are %s of it (bench_solve measures "
             "them at %s per 7B layer); the rest is the float64 Gram updates (dsyrk per head on the projections "
             "and attention outputs) and the MLP's sum of squares, which grow with the tokens like the forward "
             "pass does." % (
                 "reached" if ov_max < 0.25 else "NOT reached",
                 ", ".join("%s (%s)" % (pct(R["calibmem"][n]["overhead"]), n) for n in R["calibmem"]),
                 ", ".join("%s (%s)" % (pct(R["calib"][n]["ratio"] - 1), n) for n in R["calib"]),
                 fmt_s(extra4), pct(s7["curves_s"] / extra4) if extra4 > 0 else "n/a", fmt_s(s7["curves_s"])))
    if cold_max >= 0.25 > ov_max:
        T.append("  The cold figure is above 25%: the first calibration also pays the page faults of the first "
                 "touch of the weight file's mapping, which a forward pass run first would pay instead.")
    t7 = 32 * s7["solve_s"]
    o7 = R["ov7"]
    per_group7 = s7["ov_s"] / s7["kv"]
    T.append("- **Whole-7B solve under 2 minutes: %s** (%s projected: %s per layer, of which OV %s = %s per KV "
             "group, MLP %s, QK %s)." % (
                 "reached" if t7 < 120 else "NOT reached", fmt_min(t7), fmt_s(s7["solve_s"]),
                 fmt_s(s7["ov_s"] + s7["ov_copy_s"]), fmt_s(per_group7), fmt_s(s7["mlp_s"] + s7["mlp_gather_s"]),
                 fmt_s(s7["qk_s"] + s7["qk_gather_s"])))
    T.append("  Where the time goes: OV %s, MLP %s, QK %s per layer. The OV solve works on hd x hd matrices "
             "(the Gram route above: %s per KV group against %s for LAPACK's dgesdd on the wide matrix, whose "
             "first step, an unblocked BLAS-2 LQ factorisation of the %d x %d matrix, takes %s of its time; on one "
             "thread dgesdd takes %s, so it does not use the second core), and `a3 apply` gathers down_proj row "
             "by row (%s per 7B layer; column by column, the order it used first, took %s)." % (
                 fmt_s(s7["ov_s"] + s7["ov_copy_s"]), fmt_s(s7["mlp_s"] + s7["mlp_gather_s"]),
                 fmt_s(s7["qk_s"] + s7["qk_gather_s"]), fmt_s(o7["alt_s"]), fmt_s(o7["gesdd_s"]), o7["hd"],
                 o7["per"] * o7["d"], pct(o7["lq_s"] / o7["gesdd_s"]), fmt_s(o7["gesdd_1t_s"]),
                 fmt_s(s7["mlp_gather_s"]), fmt_s(s7["mlp_gather_rows_s"])))
    if s70:
        o70 = R.get("ov70")
        T.append("- 70B (no target given): %s projected for 80 layers (%s per layer: OV %s for 8 groups of 8 "
                 "heads, MLP gather %s)." % (
                     fmt_min(80 * s70["solve_s"]), fmt_s(s70["solve_s"]), fmt_s(s70["ov_s"] + s70["ov_copy_s"]),
                     fmt_s(s70["mlp_gather_s"])))
    sp = [(n, cp["models"][n]["meas"] / cp["models"][n]["theo"]) for n in ("p20", "p40")]
    sp_ok = all(r >= 0.9 for _, r in sp)
    T.append("- **Compressed-model speedup at least 90%% of the theoretical ratio: %s** (%s)." % (
        "reached" if sp_ok else "NOT reached",
        ", ".join("%s at %s of the parameters removed" % (pct(r), n[1:] + "%") for n, r in sp)))
    go = cp["models"]["original"]["gemm"]
    parts = []
    for n in ("p20", "p40"):
        g = cp["models"][n]["gemm"]
        parts.append("%s: linear GEMM time x%.3f (their FLOPs x%.3f, rate %.1f against %.1f GFLOP/s), the rest "
                     "of the pass x%.3f" % (
                         n[1:] + "%", go["lin_s"] / g["lin_s"], go["lin_gflop"] / g["lin_gflop"], g["lin_gflops"],
                         go["lin_gflops"], (go["pass_s"] - go["lin_s"]) / (g["pass_s"] - g["lin_s"])))
    T.append("  Measured with bench_fwdgemm on the three models (speedups relative to the original; the original "
             "spends %s of its pass outside the linear GEMMs): %s. Work the FLOP count leaves out (softmax, "
             "RoPE, norms, activations, the weights' conversion) does not all shrink with the ranks; softmax "
             "depends only on T and the number of heads." % (
                 pct(1 - go["lin_s"] / go["pass_s"]), "; ".join(parts)))
    L += T
    w("")
    w("## Reproducing")
    w("")
    w("`make bench-scale` (not part of `make check`). Individual programs: `build/bench/bench_sgemm`, "
      "`bench_forward MODEL T B R`, `bench_fwdgemm MODEL T B R`, `bench_calib MODEL NWIN L`, "
      "`bench_calibmem MODEL NWIN L`, `bench_solve MODEL [-w N] [-s L] [-r R] [-p LAYERS] [-k ov]`, "
      "`bench_ovparts HD PER D [GROUPS] [RANK]`; models from `a3 synth --like llama-1b|llama-7b|llama-70b "
      "--layers K -o DIR`. The programs that are not the a3 binary call `a3_blas_startup` first, except "
      "bench_forward and bench_calib, which the script runs with OPENBLAS_CORETYPE set when that is needed.")
    w("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    ap.add_argument("--wait", type=float, default=600, help="wait at most this long for a quiet machine (s)")
    ap.add_argument("--no-70b", action="store_true", help="skip the 70B-like layer (2.6 GB, ~3 minutes)")
    ap.add_argument("--report-only", metavar="JSON",
                    help="rewrite the report from the raw results a previous run saved (BUILD/bench_scale.json)")
    args = ap.parse_args()
    raw = os.path.join(BUILD, "bench_scale.json")
    if args.report_only:
        with open(args.report_only) as f:
            j = json.load(f)
        KERNELS.update(j["kernels"])
        for pid, comm, mx, steps, cmd in j["others"]:
            MON.seen[(pid, comm)] = [mx, set(steps), cmd]
        write_report(args.out, report(j["results"], j["busy_before"], j["elapsed"], args))
        return
    for p in [A3] + [os.path.join(BENCH, b) for b in ("bench_sgemm", "bench_forward", "bench_fwdgemm", "bench_calib",
                                                       "bench_calibmem", "bench_solve", "bench_ovparts")]:
        if not os.access(p, os.X_OK):
            sys.exit("bench-scale: %s not found; run `make bench-scale` (it builds them)" % p)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    busy_before = wait_quiet(args.wait)
    tmpdir = tempfile.mkdtemp(prefix="a3-bench-scale.")
    MON.start()
    try:
        R = measure(tmpdir, args)
    finally:
        MON.stop.set()
        shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.time() - T0
    with open(raw, "w") as f:  # to rewrite the report without measuring again
        json.dump({"results": R, "kernels": sorted(KERNELS), "busy_before": busy_before, "elapsed": elapsed,
                   "others": [[pid, comm, mx, sorted(st), cmd] for (pid, comm), (mx, st, cmd) in MON.seen.items()]},
                  f, indent=1)
    write_report(args.out, report(R, busy_before, elapsed, args))


def write_report(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log("wrote %s" % os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
