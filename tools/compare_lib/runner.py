"""Runs one case under one allocator and makes a report.Run of it: a
synthetic workload (its one result line) or a real program
(program_runner), with the noise gauge and a log of every failure."""

import os
import re
import resource
import subprocess
import time

from . import program_runner, report
from .procs import Outcome, signal_name

CLK_TCK = os.sysconf("SC_CLK_TCK")


def busy_seconds():
    """CPU seconds the whole machine has been busy (steal included)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def children_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_workload(case, alloc, bindir, timeout):
    """A bench/ program: one result line, which names the malloc libraries
    mapped into the process, so the preload is proven, not assumed."""
    cmd = case.command(bindir)
    env = alloc.environment(os.environ)
    shown = " ".join(["%s=%s" % kv for kv in alloc.env.items()]
                     + (["LD_PRELOAD=" + alloc.path] if alloc.path else []) + cmd)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) \
            else (e.stdout or "")
        return Outcome("timeout (%gs)" % timeout, log="$ %s\n%s" % (shown, output),
                       command=shown)
    log = "$ %s\n%s" % (shown, output)
    lines = [ln for ln in output.splitlines() if ln.startswith("result ")]
    if rc < 0:
        return Outcome("crashed (%s)" % signal_name(-rc), log=log, command=shown)
    if rc != 0:
        return Outcome("failed (exit %d)" % rc, log=log, command=shown)
    if len(lines) != 1:
        return Outcome("no result line", log=log, command=shown)
    fields = dict(kv.split("=", 1) for kv in lines[0].split()[1:] if "=" in kv)
    libs = fields.get("malloc_libs", "")
    status = "ok"
    if alloc.expect is None:
        if libs != "none":
            status = "unexpected malloc lib %s" % libs
    elif not any(lib.startswith(alloc.expect) for lib in libs.split(",")):
        status = "not preloaded (%s)" % libs
    elif case.workload.metric not in fields or "peak_rss_kib" not in fields:
        status = "incomplete result line"
    return Outcome(status, fields, log=log, command=shown)


def run_one(case, alloc, ctx, timeout, rep, logdir, say):
    """Runs CASE under ALLOC once; returns a report.Run. CTX: the folder of
    the workload binaries (a str) or, for programs, a
    program_runner.Context."""
    busy0, child0, t0 = busy_seconds(), children_seconds(), time.monotonic()
    if case.kind == "program":
        outcome = program_runner.run(case, alloc, ctx, timeout)
    else:
        outcome = run_workload(case, alloc, ctx, timeout)
    wall = time.monotonic() - t0
    # CPU the rest of the machine used meanwhile, in cores: the noise gauge.
    other = max(0.0, (busy_seconds() - busy0) - (children_seconds() - child0)) / max(wall, 1e-3)
    if outcome.status != "ok":
        os.makedirs(logdir, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", "%s_%s_rep%d" % (case.label, alloc.name, rep))
        path = os.path.join(logdir, name + ".log")
        with open(path, "w") as f:
            f.write("%s\n%s" % (outcome.status, outcome.log))
        say("\nerror: %s under %s, rep %d: %s (log: %s)" % (case.label, alloc.label, rep,
                                                            outcome.status, path))
    fields = outcome.fields if outcome.status == "ok" else {}
    return report.Run(rep, case, alloc, outcome.status, fields, wall, round(other, 2),
                      outcome.command)
