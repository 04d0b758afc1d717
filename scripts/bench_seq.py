#!/usr/bin/env python3
"""Memory and time of sequential reduction (issue 12), written between
<!-- BEGIN seqcost --> and <!-- END seqcost --> in docs/SEQUENTIAL.md.

On a random-weight model with LLaMA-1B's layer shapes (`a3 synth --like
llama-1b --layers 2`: d 2048, 32/8 heads, d_ff 5632) and random token ids
(the weights and tokens do not change the cost), it runs

  a3 calibrate --mlp-full --no-probe  (what one-shot apply needs first)
  a3 apply, one-shot                (reads the cache)
  a3 apply --sequential             (same plan, same windows)

and reports, per process: wall and CPU seconds (user + system, wait4),
peak RSS (wait4), and the peaks of its anonymous memory (heap: RssAnon)
and of its file-backed pages (the memory-mapped model and cache: RssFile),
sampled from /proc/PID/status every 10 ms, against the solver's own
estimate (a3_seq_memory_estimate, printed by apply) and the formula
2 x N x d x 4 bytes of the two streams.
Usage: scripts/bench_seq.py [--out docs/SEQUENTIAL.md] [--a3 ./a3]
                            [--samples 8] [--seqlen 256]
"""
import argparse, os, re, struct, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resultslib as R  # noqa: E402


def status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measured(cmd):
    """Run cmd (exit the script if it fails); return (Run, peak RssAnon
    KiB, peak RssFile KiB)."""
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()
    t0 = time.time()
    with tempfile.TemporaryFile() as of, tempfile.TemporaryFile() as ef:
        p = subprocess.Popen(cmd, stdout=of, stderr=ef, stdin=subprocess.DEVNULL)

        def sample():
            while not done.is_set():
                for k in peaks:
                    peaks[k] = max(peaks[k], status_kib(p.pid, k))
                time.sleep(0.01)

        th = threading.Thread(target=sample)
        th.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            p.returncode = 0
            done.set()
            th.join()
        of.seek(0), ef.seek(0)
        out, err = of.read().decode("utf-8", "replace"), ef.read().decode("utf-8", "replace")
    if os.waitstatus_to_exitcode(status) != 0:
        R.die("command failed: %s\n%s" % (" ".join(cmd), err[-2000:]))
    return R.Run(out, err, time.time() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss), peaks["RssAnon"], \
        peaks["RssFile"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/SEQUENTIAL.md")
    ap.add_argument("--a3", default="./a3")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--like", default="llama-1b", help="a3 synth preset (tiny: a smoke test of this script)")
    args = ap.parse_args()
    a3 = os.path.abspath(args.a3)
    with R.workdir("a3seqcost.") as tmp:
        model, ids, cache, plan = (os.path.join(tmp, n) for n in ("m", "ids.bin", "m.cache", "p.json"))
        R.run([a3, "synth", "--like", args.like, "--layers", "2", "-o", model])
        info = R.run([a3, "info", model])
        dims = re.search(r"hidden (\d+).*?vocab (\d+)", info, re.S)
        if not dims:
            R.die("no 'hidden N ... vocab N' in a3 info's output:\n" + info)
        d, vocab = int(dims.group(1)), int(dims.group(2))
        n_tok = 2 * args.samples * args.seqlen
        x = 12345
        with open(ids, "wb") as f:  # a reproducible LCG: the ids' values do not change the cost
            for _ in range(n_tok):
                x = (x * 1103515245 + 12345) & 0x7FFFFFFF
                f.write(struct.pack("<I", x % vocab))
        tok = ["--ids", ids, "--samples", str(args.samples), "--seqlen", str(args.seqlen), "--seed", "0"]
        rows = []
        r = measured([a3, "calibrate", model, "--mlp-full", "--no-probe", "-o", cache] + tok)  # the calibration one-shot needs
        rows.append(("calibrate --mlp-full",) + r)
        R.run([a3, "plan", cache, "--budget", "params=30%", "--strategy", "uniform", "--method-mlp", "a3-refit",
               "--no-pred", "-o", plan])
        r = measured([a3, "apply", model, "--cache", cache, "--plan", plan, "-o", os.path.join(tmp, "o1")])
        rows.append(("apply, one-shot",) + r)
        r = measured([a3, "apply", model, "--cache", cache, "--plan", plan, "-o", os.path.join(tmp, "o2"),
                      "--sequential"] + tok)
        rows.append(("apply --sequential",) + r)
        est = re.search(r"memory estimate ([0-9.]+) GiB", r[0].err)
        est_mib = float(est.group(1)) * 1024 if est else float("nan")
        size_mib = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)) / 2**20
        mach = R.machine(a3)
    n = args.samples * args.seqlen
    streams = 2 * n * d * 4 / 2**20
    lines = ["### Measured (scripts/bench_seq.py)\n",
             "`a3 synth --like %s --layers 2` (d %d, %.0f MiB on disk), "
             "%d windows x %d tokens = %d random token ids, plan: 30%% of the parameters removed, uniform, MLP "
             "a3-refit; %s. CPU = user + system of the process; heap = peak RssAnon, mapped = peak RssFile "
             "(the memory-mapped model and cache), sampled every 10 ms.\n" % (args.like, d, size_mib, args.samples,
                                                                             args.seqlen, n, mach),
             "| step | wall s | CPU s | peak RSS MiB | heap MiB | mapped MiB |", "|---|---:|---:|---:|---:|---:|"]
    for name, run, anon, fil in rows:
        lines.append("| %s | %.1f | %.1f | %.0f | %.0f | %.0f |" % (name, run.wall, run.cpu, run.maxrss_kib / 1024,
                                                                    anon / 1024, fil / 1024))
    one, seq = rows[1], rows[2]
    lines.append("\nSequential over one-shot: %.1fx the CPU time, +%.0f MiB of heap; over calibrate: %.1fx the "
                 "CPU time. The solver's estimate (a3_seq_memory_estimate, printed by apply) is %.0f MiB, of which "
                 "the two streams (2 x N x d x 4 bytes) are %.0f MiB; the heap measured above one-shot's is "
                 "%.0f MiB (%s of the estimate; apply prints it to 0.01 GiB)." % (
                     seq[1].cpu / one[1].cpu if one[1].cpu > 0 else float("nan"), (seq[2] - one[2]) / 1024,
                     seq[1].cpu / rows[0][1].cpu if rows[0][1].cpu > 0 else float("nan"), est_mib, streams,
                     (seq[2] - one[2]) / 1024,
                     "%.0f%%" % (100 * (seq[2] - one[2]) / 1024 / est_mib) if est_mib > 0 else "n/a"))
    R.replace_section(args.out, "seqcost", "\n".join(lines))
    print("%s: wrote the seqcost section of %s" % (R.tag(), args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
