"""Shared helpers of the `make results` scripts (results.py,
results_predict.py, results_seq.py): running a3 and checking its exit,
evaluation, plans, the stories260K conversion, text splits, a work
directory removed on exit (also on SIGINT/SIGTERM), and replacing one
generated section of docs/RESULTS.md atomically.

Every helper exits the script with one line naming the failed command and
the tail of its stderr: a results table built on a failed step would be
wrong, not partial.
"""
import collections, contextlib, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

SHARED = "../shared/data"
STORIES_BIN = SHARED + "/models/stories260K/stories260K.bin"
STORIES_TOK = SHARED + "/models/stories260K/tok512.bin"
TRAIN = SHARED + "/text/tinystories/train-head.txt"
VALID = SHARED + "/text/tinystories/valid-head.txt"

# What a finished child cost: stdout, stderr, wall seconds, CPU seconds
# (user + system of that child alone, from wait4) and peak RSS in KiB.
Run = collections.namedtuple("Run", "out err wall cpu maxrss_kib")

_children = set()  # running children, terminated when the script is stopped
_lock = threading.Lock()


def tag():
    """The script's name for messages (results, results_predict, ...)."""
    return os.path.splitext(os.path.basename(sys.argv[0]))[0] or "results"


def die(msg):
    sys.exit("%s: %s" % (tag(), msg))


def run_full(cmd, timeout=None):
    """Run cmd (a list); return a Run. stdout and stderr go to temporary
    files, not pipes (no deadlock on long output), and the child is reaped
    with wait4 so that its CPU time and peak RSS are its own even when
    several run in parallel threads."""
    t0 = time.time()
    with tempfile.TemporaryFile() as of, tempfile.TemporaryFile() as ef:
        p = subprocess.Popen(cmd, stdout=of, stderr=ef, stdin=subprocess.DEVNULL)
        with _lock:
            _children.add(p)
        try:
            if timeout is not None:
                deadline = t0 + timeout
                while True:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.time() > deadline:
                        p.kill()
                        pid, status, ru = os.wait4(p.pid, 0)
                        die("timed out after %.0f s: %s" % (timeout, " ".join(cmd)))
                    time.sleep(0.05)
            else:
                _, status, ru = os.wait4(p.pid, 0)
        finally:
            p.returncode = 0  # reaped here: Popen must not wait on it again
            with _lock:
                _children.discard(p)
        of.seek(0)
        ef.seek(0)
        out, err = of.read().decode("utf-8", "replace"), ef.read().decode("utf-8", "replace")
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        die("command failed (%d): %s\n%s" % (rc, " ".join(cmd), err[-2000:]))
    return Run(out, err, time.time() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss)


def run(cmd, timeout=None):
    """Run cmd; return its stdout (exit the script if it fails)."""
    return run_full(cmd, timeout).out


def parse_eval(out):
    """(mean NLL, perplexity) from `a3 eval`'s report."""
    nll = re.search(r"mean NLL\s+([0-9.]+)", out)
    ppl = re.search(r"perplexity\s+([0-9.]+)", out)
    if not nll or not ppl:
        die("no 'mean NLL' / 'perplexity' in a3 eval's output:\n" + out[-500:])
    return float(nll.group(1)), float(ppl.group(1))


def evaluate(a3, model, text, protocol="paragraphs", max_seqs=None, seqlen=512, extra=()):
    """(mean NLL, perplexity) of MODEL on TEXT with a3 eval (paragraphs
    protocol: BOS, one paragraph per sequence cut to SEQLEN; stream:
    windows of SEQLEN)."""
    cmd = [a3, "eval", model, "--text", text, "--seqlen", str(seqlen)]
    if protocol != "stream":
        cmd += ["--protocol", protocol]
    if max_seqs is not None:
        cmd += ["--max-seqs", str(max_seqs)]
    return parse_eval(run(cmd + list(extra)))


def plan(a3, cache, budget, strategy, methods, path, extra=()):
    """Write a plan with a3 plan (methods = (qk, ov, mlp)); return its
    JSON summary."""
    qk, ov, mlp = methods
    run([a3, "plan", cache, "--budget", budget, "--strategy", strategy, "--method-qk", qk,
         "--method-ov", ov, "--method-mlp", mlp, "-o", path] + list(extra))
    with open(path) as f:
        return json.load(f)["summary"]


def apply(a3, model, cache, plan_path, out, extra=()):
    """a3 apply MODEL with CACHE and PLAN into OUT (replaced); return the Run."""
    return run_full([a3, "apply", model, "--cache", cache, "--plan", plan_path, "-o", out, "--force"] + list(extra))


def calibrate(a3, model, text, cache, samples=64, seqlen=512, seed=0, mlp_full=True, probe=False, extra=()):
    """a3 calibrate MODEL on TEXT into CACHE; return the Run. Without the
    NLL probe unless probe (calibrate runs it by default on small models;
    the tables made with this run `a3 probe` themselves where they want it,
    and their calibration times stay the calibration's)."""
    cmd = [a3, "calibrate", model, "--text", text, "--samples", str(samples), "--seqlen", str(seqlen),
           "--seed", str(seed), "-o", cache]
    if mlp_full:
        cmd.append("--mlp-full")
    if not probe:
        cmd.append("--no-probe")
    return run_full(cmd + list(extra))


def need_shared():
    if not os.path.exists(STORIES_BIN):
        die("%s not found (run from the repository root with ../shared/data present)" % STORIES_BIN)


def convert_stories(a3, dst):
    """stories260K (llama2.c) -> HF directory DST."""
    need_shared()
    run([a3, "convert", STORIES_BIN, "--tokenizer", STORIES_TOK, "-o", dst])
    return dst


def paragraphs(path):
    """The non-empty blank-line-separated paragraphs of PATH, in order."""
    with open(path, encoding="utf-8") as f:
        return [p for p in re.split(r"\n\s*\n", f.read()) if p.strip()]


def write_text(path, paras):
    """Write paragraphs back, blank-line separated (what the paragraphs
    protocol reads)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(paras) + "\n")
    return path


@contextlib.contextmanager
def _stopping_children():
    """SIGTERM becomes an exit (so that cleanups run) and running children
    are terminated when the block ends."""
    def stop(signum, _frame):
        sys.exit(128 + signum)

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        with _lock:
            for p in list(_children):
                try:
                    p.terminate()
                except OSError:
                    pass
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def workdir(prefix):
    """A temporary directory removed when the block ends, also when the
    script is interrupted (SIGINT) or terminated (SIGTERM); running
    children are terminated."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        with _stopping_children():
            yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def kept_dir(path):
    """Like workdir, but DIR is kept (made if missing): for analysis and
    reruns."""
    os.makedirs(path, exist_ok=True)
    with _stopping_children():
        yield os.path.abspath(path)


def replace_section(path, name, block):
    """Put BLOCK (without markers) between <!-- BEGIN name --> and
    <!-- END name --> in PATH (appended when the markers are missing),
    written atomically."""
    begin, end = "<!-- BEGIN %s -->" % name, "<!-- END %s -->" % name
    body = begin + "\n" + block.strip("\n") + "\n" + end
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Results\n"
    pat = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: body, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + body + "\n"
    write_atomic(path, text)


def write_atomic(path, text):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def machine(a3):
    """'load average X on N cores, OpenBLAS kernel K' for report headers
    (timings on a shared machine must say under what they were taken)."""
    doctor = run([a3, "doctor", "--no-bench"])
    kern = re.search(r"\bkernel=(\S+)", doctor)  # the machine-readable last line
    return "load average %.1f on %d cores, OpenBLAS kernel %s" % (
        os.getloadavg()[0], os.cpu_count() or 0, kern.group(1) if kern else "?")
