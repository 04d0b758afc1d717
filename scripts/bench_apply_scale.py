#!/usr/bin/env python3
"""make bench-apply-scale: apply and cache-open figures at real model sizes
(issue 13, parts 1 and 4), written between the `scale` markers of
docs/PERFORMANCE.md.

- `a3 apply` of a full 32-layer llama-7b-shaped synthetic F16 model
  (13.5 GB, `a3 synth --like llama-7b`) with a synthetic cache at 30% of
  the compressible parameters removed: wall time, and the peak of the
  process's heap (RssAnon) and of its mapped file pages (RssFile), sampled
  from /proc/PID/status every 50 ms, with the kernel's VmHWM (peak of the
  two together) and getrusage's ru_maxrss as checks; against what one input
  layer in float32 plus one output layer in float32 take (the design).
- opening a 7B- and a 70B-shaped synthetic cache: `a3 cache info`, `a3 plan
  --budget params=30%` and the TUI's first frame (tmux, 120x40: time until
  the screen shows the table), wall time and peak RSS; with --before BIN
  the same with another a3 binary (the eager loader) in the same run,
  interleaved.

Inputs: --model DIR (default $A3_BIG_MODEL or /work/tmp-big/llama-7b); when
it does not exist it is made with `a3 synth --like llama-7b` (about 50 min
on a loaded 2-core machine, 13.5 GB of disk) and removed at the end unless
--keep-model. Scratch (caches ~2.3 GB, the compressed model ~9.5 GB) goes
to --work (default a temporary directory) and is removed at the end.
Usage: scripts/bench_apply_scale.py [--model DIR] [--before BIN] [--a3 BIN]
       [--out docs/PERFORMANCE.md] [--repeat N] [--no-apply]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
T0 = time.time()


def log(msg):
    print("[%5.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def status_kb(pid):
    """{field: kB} from /proc/PID/status for the memory fields, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            out = {}
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "RssFile", "RssShmem", "VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0])
            return out
    except OSError:
        return None


def run_sampled(cmd, interval=0.05):
    """Run cmd; return (rc, wall s, peaks {field: kB}, ru_maxrss kB, stderr tail)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks = {}
    errbuf = []
    import threading
    th = threading.Thread(target=lambda: errbuf.append(p.stderr.read()))
    th.start()
    while True:
        st = status_kb(p.pid)
        if st:
            for k, v in st.items():
                peaks[k] = max(peaks.get(k, 0), v)
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(interval)
    wall = time.time() - t0
    th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, wall, peaks, ru.ru_maxrss, (errbuf[0] if errbuf else "")[-600:]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr[-2000:]))
    return r.stdout


def doctor(a3):
    out = run([a3, "doctor"])
    kern = re.search(r"kernel\s+(\S+)", out.split("OpenBLAS", 1)[1])
    thr = re.search(r"threads\s+(\d+)", out)
    return (kern.group(1) if kern else "?"), (thr.group(1) if thr else "?")


def load():
    return open("/proc/loadavg").read().split()[0]


TMUX_SOCK = "a3bench%d" % os.getpid()


def tmux(*args, **kw):
    """tmux on a private server (-L): other users of the default server are
    not disturbed, and its startup is not timed."""
    return subprocess.run(["tmux", "-f", "/dev/null", "-L", TMUX_SOCK] + list(args), **kw)


def tmux_up():
    # A session that outlives the measured ones: killing the last session
    # stops the server, and a new-session racing that shutdown fails.
    if tmux("has-session", "-t", "keep", capture_output=True).returncode:
        tmux("new-session", "-d", "-s", "keep", "sleep 7200", check=True)


def tmux_down():
    tmux("kill-server", capture_output=True)


def tui_first_frame(a3, cache, timeout=60.0):
    """Seconds from starting `a3 tui CACHE` in a 120x40 tmux pane until the
    planner's table is on screen, and whether a loading line showed first."""
    tmux_up()
    env = dict(os.environ, TERM="xterm-256color")
    t0 = time.time()
    tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", "%s tui %s; sleep 30" % (a3, cache),
         check=True, env=env)
    first, loading = None, False
    try:
        while time.time() - t0 < timeout:
            scr = tmux("capture-pane", "-p", "-t", "tui", capture_output=True, text=True).stdout
            if "loading" in scr.lower():
                loading = True
            if re.search(r"\bQK\b", scr) and re.search(r"\bMLP\b", scr):
                first = time.time() - t0
                break
            time.sleep(0.01)
    finally:
        tmux("kill-session", "-t", "tui", capture_output=True)
    return first, loading


def layer_bytes_f32(cfg, plan):
    """(input layer, largest output layer) in float32 bytes."""
    d, ff = cfg["hidden_size"], cfg["intermediate_size"]
    h, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim", d // h)
    inp = 4 * (d * h * hd * 2 + 2 * d * kv * hd + 3 * d * ff)
    per = h // kv
    out = 0
    for L in plan["layers"]:
        qk, ov, mlp = sum(L["qk"]), sum(L["ov"]), L["mlp"]
        out = max(out, 4 * (d * (per * qk + qk + ov + per * ov) + 3 * d * mlp))
    return inp, out


def gib(kb):
    return kb / 1048576.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.environ.get("A3_BIG_MODEL", "/work/tmp-big/llama-7b"))
    ap.add_argument("--a3", default=os.path.join(BUILD, "a3"))
    ap.add_argument("--before", help="another a3 binary to time cache opening against")
    ap.add_argument("--before-label", default="before")
    ap.add_argument("--work")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "PERFORMANCE.md"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-apply", action="store_true")
    ap.add_argument("--keep-model", action="store_true")
    ap.add_argument("--apply-from", help="with --no-apply: take the 'Apply at 7B' subsection from this earlier "
                    "output of the script (a 30-minute run), with a note naming it")
    ap.add_argument("--apply-note", default="", help="what that earlier run measured (e.g. its commit)")
    a = ap.parse_args()
    a3 = os.path.abspath(a.a3)
    work = a.work or tempfile.mkdtemp(prefix="a3-bench-apply-")
    os.makedirs(work, exist_ok=True)
    made_model = False
    lines = []
    try:
        kern, thr = doctor(a3)
        lines.append("Generated by `make bench-apply-scale` (scripts/bench_apply_scale.py) on %s; "
                     "OpenBLAS kernel %s, %s threads; load average %s at the start (other helpers "
                     "share the 2 cores: wall times are noisy, compare the figures of one run)." %
                     (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), kern, thr, load()))
        lines.append("")
        caches = {}
        for preset in ("llama-7b", "llama-70b"):
            path = os.path.join(work, preset + ".cache")
            log("cache synth " + preset)
            run([a3, "cache", "synth", "--like", preset, "-o", path])
            caches[preset] = path
        # ---- cache opening ----
        bins = [("this build", a3)] + ([(a.before_label, os.path.abspath(a.before))] if a.before else [])
        rows = []
        for preset, path in caches.items():
            size = os.path.getsize(path)
            plan = os.path.join(work, preset + ".plan.json")
            for label, b in bins:
                res = {"info": [], "plan": [], "tui": [], "rss_info": 0, "rss_plan": 0, "loading": False}
                for _ in range(a.repeat):
                    rc, w, pk, mx, err = run_sampled([b, "cache", "info", path], 0.01)
                    if rc:
                        sys.exit("cache info failed: " + err)
                    res["info"].append(w)
                    res["rss_info"] = max(res["rss_info"], mx)
                    rc, w, pk, mx, err = run_sampled([b, "plan", path, "--budget", "params=30%", "-o", plan], 0.01)
                    if rc:
                        sys.exit("plan failed: " + err)
                    res["plan"].append(w)
                    res["rss_plan"] = max(res["rss_plan"], mx)
                    t, ld = tui_first_frame(b, path)
                    res["tui"].append(t if t is not None else float("nan"))
                    res["loading"] |= ld
                rows.append((preset, size, label, res))
                log("%s %s: info %.2f s, plan %.2f s, tui %.2f s" %
                    (preset, label, min(res["info"]), min(res["plan"]), min(res["tui"])))
        lines.append("### Opening a cache (issue 13 part 4)")
        lines.append("")
        lines.append("Synthetic caches (`a3 cache synth --like PRESET`); best of %d runs, interleaved; "
                     "peak RSS is getrusage's ru_maxrss of the process. TUI: time until the table is "
                     "on a 120x40 tmux screen." % a.repeat)
        lines.append("")
        lines.append("| cache | size | a3 | `cache info` | peak RSS | `plan --budget` | peak RSS | TUI first frame |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for preset, size, label, r in rows:
            lines.append("| %s | %.2f GB | %s | %.2f s | %.0f MB | %.2f s | %.0f MB | %.2f s%s |" %
                         (preset, size / 1e9, label, min(r["info"]), r["rss_info"] / 1024.0,
                          min(r["plan"]), r["rss_plan"] / 1024.0, min(r["tui"]),
                          " (loading line seen)" if r["loading"] else ""))
        lines.append("")
        # ---- apply ----
        if not a.no_apply:
            model = a.model
            if not os.path.isdir(model):
                log("making %s with a3 synth (long)" % model)
                run([a3, "synth", "--like", "llama-7b", "-o", model])
                made_model = True
            cfg = json.load(open(os.path.join(model, "config.json")))
            plan = os.path.join(work, "7b.plan.json")
            run([a3, "plan", caches["llama-7b"], "--budget", "params=30%", "-o", plan])
            pj = json.load(open(plan))
            inp, outl = layer_bytes_f32(cfg, pj)
            out = os.path.join(work, "7b-a3")
            in_bytes = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model))
            log("apply (load %s)" % load())
            ld0 = load()
            rc, wall, pk, mx, err = run_sampled([a3, "apply", model, "--cache", caches["llama-7b"], "--plan", plan,
                                                 "-o", out, "--force",
                                                 "--ignore-fingerprint"])  # a synthetic cache fits no model
            ld1 = load()
            if rc:
                sys.exit("apply failed: " + err)
            files = sorted(os.listdir(out))
            shards = [f for f in files if f.endswith(".safetensors")]
            out_bytes = sum(os.path.getsize(os.path.join(out, f)) for f in files)
            idx = os.path.join(out, "model.safetensors.index.json")
            total = json.load(open(idx))["metadata"]["total_size"] if os.path.exists(idx) else None
            shutil.rmtree(out)
            lines.append("### Apply at 7B (issue 13 part 1)")
            lines.append("")
            lines.append("`a3 apply` of a 32-layer llama-7b-shaped synthetic F16 model (%.2f GB) with a synthetic "
                         "cache, plan `--budget params=30%%` (greedy), default `--max-shard-size` (5 GB); "
                         "load average %s before, %s after." % (in_bytes / 1e9, ld0, ld1))
            lines.append("")
            lines.append("| figure | value |")
            lines.append("|---|---|")
            lines.append("| wall time | %.0f s (%.1f s per layer) |" % (wall, wall / cfg["num_hidden_layers"]))
            lines.append("| peak heap (RssAnon) | %.2f GiB |" % gib(pk.get("RssAnon", 0)))
            lines.append("| peak mapped file pages (RssFile) | %.2f GiB |" % gib(pk.get("RssFile", 0)))
            lines.append("| peak RSS (VmHWM / ru_maxrss) | %.2f / %.2f GiB |" % (gib(pk.get("VmHWM", 0)), gib(mx)))
            lines.append("| one input layer in float32 + one output layer in float32 | %.2f + %.2f = %.2f GiB |" %
                         (inp / 2**30, outl / 2**30, (inp + outl) / 2**30))
            lines.append("| output | %s: %.2f GB on disk%s |" %
                         (", ".join(shards), out_bytes / 1e9,
                          "; index total_size %d" % total if total is not None else ""))
            lines.append("")
            lines.append("RssAnon is sampled every 50 ms, so a peak shorter than that can be missed; VmHWM "
                         "(the kernel's own peak of anonymous + file pages) bounds it from above. The "
                         "mapped pages are the input model's, read once front to back: the kernel keeps "
                         "or drops them as memory allows, they are not the process's to free.")
            lines.append("")
        elif a.apply_from:
            old = open(a.apply_from).read()
            m = re.search(r"### Apply at 7B.*?(?=\n### |<!-- END scale -->|\Z)", old, re.S)
            if m:
                lines.append(m.group(0).rstrip())
                lines.append("")
                lines.append("(Apply figures from an earlier run of this script%s.)" %
                             (": " + a.apply_note if a.apply_note else ""))
                lines.append("")
    finally:
        tmux_down()
        shutil.rmtree(work, ignore_errors=True)
        if made_model and not a.keep_model:
            shutil.rmtree(a.model, ignore_errors=True)
    section = "\n".join(lines).rstrip() + "\n"
    text = open(a.out).read() if os.path.exists(a.out) else "# Performance\n"
    begin, end = "<!-- BEGIN scale -->", "<!-- END scale -->"
    block = "%s\n## Apply and cache opening at real sizes\n\n%s%s" % (begin, section, end)
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
