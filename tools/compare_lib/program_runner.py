"""Runs a real program (programs.py) under one allocator and checks it.

The timed command runs as `/usr/bin/time -f ... env VAR=VALUE... PROGRAM`:
GNU time forks the program and reports the child's ru_maxrss from wait4,
which covers the program and every process it waited for (for make -j,
the largest compiler). Not Python's own wait4: a child that Python starts
inherits Python's high-water mark through fork/vfork and exec, so it could
never read below the runner's own size; GNU time's fork leaves a floor of
only time's and env's own size (about 1.5 MiB on Debian 12). `env` applies the
allocator's variables and LD_PRELOAD so that time itself runs unpreloaded.
"""

import os
import time

from . import programs, redis_driver
from .procs import Outcome, find_binary, fresh_dir, preload_refused, run_group, signal_name

TIME = "/usr/bin/time"
_RUSAGE_TAG = "compare-rusage maxrss_kib="


class Context:
    """Where one tools/compare run keeps program inputs and scratch
    folders, and the environment every run starts from."""

    def __init__(self, work, jobs, base_env=None):
        self.work = work
        self.run = os.path.join(work, "run")
        self.jobs = jobs
        env = dict(os.environ if base_env is None else base_env)
        env.pop("LD_PRELOAD", None)
        self.base_env = env

    def inputs(self, program):
        return os.path.join(self.work, program.name)


def expand(argv, case, ctx):
    """argv with its placeholders filled and its program name resolved."""
    values = {"work": ctx.inputs(case.program), "run": ctx.run, "scripts": programs.SCRIPTS,
              "jobs": case.jobs, "scale": case.scale}
    out = [a.format(**values) for a in argv]
    if out and "/" not in out[0]:
        out[0] = find_binary(out[0]) or out[0]
    return out


def libc_path():
    """The libc.so.6 this Python uses (the same the programs load)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if path.endswith("/libc.so.6"):
                return path
    return "libc.so.6"


def check_output(expected, actual):
    """None when ACTUAL is the reference output EXPECTED, else one line
    saying where it differs."""
    if actual == expected:
        return None
    if expected is None:
        return "wrong output: no reference output to check it against"
    want, got = expected.splitlines(), actual.splitlines()
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            return "wrong output: line %d is '%s', expected '%s'" % (i + 1, _short(g), _short(w))
    if len(want) != len(got):
        return "wrong output: %d lines, expected %d" % (len(got), len(want))
    return "wrong output: differs from the reference in whitespace"


def _short(text, limit=60):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def changed(base, env):
    return {k: v for k, v in env.items() if base.get(k) != v}


def run_process(case, ctx, changes, preload, timeout):
    """The default driver: one timed command, then the verify commands."""
    del preload  # part of CHANGES already; only the redis driver looks for it
    fresh_dir(ctx.run)
    argv = expand(case.program.command, case, ctx)
    rusage = os.path.join(ctx.work, "rusage.txt")
    if os.path.exists(rusage):
        os.remove(rusage)
    cmd = [TIME, "-f", _RUSAGE_TAG + "%M", "-o", rusage, "env"] + [
        "%s=%s" % kv for kv in changes.items()] + argv
    shown = " ".join(["%s=%s" % kv for kv in changes.items()] + argv)
    started = time.monotonic()
    rc, out, err = run_group(cmd, ctx.base_env, ctx.run, timeout)
    wall = time.monotonic() - started
    log = "$ %s\n--- stdout\n%s--- stderr\n%s" % (shown, out, err)
    if rc is None:
        return Outcome("timeout (%gs)" % timeout, log=log, command=shown)
    report = ""
    if os.path.exists(rusage):
        with open(rusage) as f:
            report = f.read()
    peak = None
    for line in report.splitlines():
        if line.startswith("Command terminated by signal "):
            number = int(line.rsplit(" ", 1)[1])
            return Outcome("crashed (%s)" % signal_name(number), log=log, command=shown)
        if line.startswith(_RUSAGE_TAG):
            peak = line[len(_RUSAGE_TAG):].strip()
    if rc != 0:
        return Outcome("failed (exit %d)" % rc, log=log, command=shown)
    refused = preload_refused(err)
    if refused:
        return Outcome("not preloaded: " + refused, log=log, command=shown)
    if not peak or not peak.isdigit():
        return Outcome("no peak RSS from %s" % TIME, log=log + report, command=shown)
    text = out
    verify_env = dict(ctx.base_env, **case.program.env)
    for v in case.program.verify:
        vrc, vout, verr = run_group(expand(v, case, ctx), verify_env, ctx.run, timeout)
        log += "$ %s\n%s%s" % (" ".join(v), vout, verr)
        if vrc != 0:
            return Outcome("check '%s' failed (exit %s)" % (" ".join(v), vrc), log=log,
                           command=shown)
        text += vout
    return Outcome(fields={"seconds": "%.6f" % wall, "peak_rss_kib": peak}, text=text,
                   log=log, command=shown)


def preload_of(case, alloc):
    if alloc is None:
        return None
    if alloc.path is None and case.program.own_allocator:
        return libc_path()
    return alloc.path


def run(case, alloc, ctx, timeout):
    """Runs CASE under ALLOC (None: the plain reference run) and checks
    its output against the reference; returns an Outcome."""
    if case.problem:
        return Outcome(case.problem)
    preload = preload_of(case, alloc)
    if alloc is None:
        env = dict(ctx.base_env, **case.program.env)
    else:
        env = alloc.environment(ctx.base_env, case.program.env, preload)
    outcome = DRIVERS[case.program.driver](case, ctx, changed(ctx.base_env, env), preload,
                                             timeout)
    if outcome.status == "ok" and alloc is not None:
        wrong = check_output(case.expected, outcome.text)
        if wrong:
            outcome.status = wrong
    return outcome


DRIVERS = {"process": run_process, "redis": redis_driver.run}


def prepare(case, ctx, timeout):
    """Writes the program's inputs and takes its reference output (no
    preload). Sets case.problem when it cannot run."""
    missing = [b for b in case.program.binaries if not find_binary(b)]
    if case.program.driver == "process" and not os.access(TIME, os.X_OK):
        missing.append(TIME)
    if missing:
        case.problem = "needs %s (tools/setup.sh installs it)" % ", ".join(missing)
        return
    os.makedirs(ctx.inputs(case.program), exist_ok=True)
    if case.program.prepare:
        case.program.prepare(ctx.inputs(case.program), case.scale)
    ref = run(case, None, ctx, timeout)
    if ref.status != "ok":
        case.problem = "reference run without preload failed: " + ref.status
        case.reference_log = ref.log
    else:
        case.expected = ref.text
