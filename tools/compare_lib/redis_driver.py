"""The redis program: redis-server under the allocator on 127.0.0.1 and a
free port, without persistence; redis-benchmark drives it (not preloaded:
the client is the load, the same for every allocator) and its requests/s
are the figure. Then the checked session (session.json, through resp.py),
the server's peak RSS (VmHWM of /proc/PID/status, read while it is still
alive: its own high-water mark since exec, nothing inherited from this
runner), and SHUTDOWN NOSAVE, after which the server must exit 0.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import time

from . import resp
from .procs import Outcome, find_binary, fresh_dir, preload_refused, run_group, signal_name

# Five data types; lrange_100 reads 100-element lists, mset writes 10 keys.
BENCH_TESTS = "set,get,incr,mset,lpush,rpush,lpop,rpop,lrange_100,sadd,spop,hset,zadd,zpopmin"
HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _ping(port):
    try:
        c = resp.Connection(HOST, port, timeout=1)
        try:
            return c.session([["PING"]]) == ["PONG"]
        finally:
            c.close()
    except OSError:
        return False


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _status_field(pid, key):
    for line in _read("/proc/%d/status" % pid).splitlines():
        if line.startswith(key + ":"):
            return line.split()[1]
    return None


def _maps(pid, path):
    real = os.path.realpath(path)
    return any(line.rstrip().endswith(real) for line in _read("/proc/%d/maps" % pid).splitlines())


def _start(ctx, env, deadline):
    """Starts the server on a free port; returns (process, port, log path)
    or (None, reason, log path). Another process may take the port between
    free_port and the server's bind: then, and only then, it retries."""
    server = find_binary("redis-server")
    log = os.path.join(ctx.run, "server.log")
    err = os.path.join(ctx.run, "server.err")
    for _ in range(3):
        port = free_port()
        open(log, "w").close()
        with open(err, "w") as err_file:
            proc = subprocess.Popen(
                [server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
                 "--dir", ctx.run, "--daemonize", "no", "--logfile", log],
                env=env, cwd=ctx.run, stdin=subprocess.DEVNULL, stdout=err_file,
                stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() < deadline and proc.poll() is None and not _ping(port):
            time.sleep(0.05)
        if proc.poll() is None and _ping(port):
            return proc, port, log
        _kill(proc)
        if "Address already in use" not in _read(log):
            break
    return None, "redis-server did not start", log


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _throughput(csv_text):
    """Requests/s over all tests: every test sends the same number of
    requests, so total requests over total time is the harmonic mean."""
    rates = []
    for row in csv.reader(csv_text.splitlines()):
        if len(row) >= 2 and row[0] != "test":
            try:
                rates.append(float(row[1]))
            except ValueError:
                pass
    if not rates or min(rates) <= 0:
        return None, 0
    return len(rates) / sum(1 / r for r in rates), len(rates)


def run(case, ctx, changes, preload, timeout):
    fresh_dir(ctx.run)
    deadline = time.monotonic() + timeout
    env = dict(ctx.base_env, **changes)
    shown = " ".join(["%s=%s" % kv for kv in changes.items()] + ["redis-server", "..."])
    proc, port, log_path = _start(ctx, env, deadline)
    if proc is None:
        return Outcome(port, log=_read(log_path) + _read(os.path.join(ctx.run, "server.err")),
                       command=shown)
    log = ""
    try:
        err_text = _read(os.path.join(ctx.run, "server.err"))
        refused = preload_refused(err_text)
        if refused or (preload and not _maps(proc.pid, preload)):
            return Outcome("not preloaded: " + (refused or preload + " not mapped"),
                           log=err_text, command=shown)
        bench = [find_binary("redis-benchmark"), "-h", HOST, "-p", str(port), "-n",
                 str(case.scale), "-r", "100000", "-d", "256", "-P", "16", "-c", "20", "--csv",
                 "-t", BENCH_TESTS]
        started = time.monotonic()
        rc, out, err = run_group(bench, ctx.base_env, ctx.run, max(1, deadline - started))
        seconds = time.monotonic() - started
        log = "$ %s\n%s%s" % (" ".join(bench), out, err)
        if rc is None:
            return Outcome("timeout (%gs)" % timeout, log=log, command=shown)
        if rc != 0:
            return Outcome("redis-benchmark failed (exit %d)" % rc, log=log, command=shown)
        rate, tests = _throughput(out)
        if rate is None:
            return Outcome("redis-benchmark printed no figures", log=log, command=shown)
        with open(os.path.join(ctx.inputs(case.program), "session.json")) as f:
            commands = json.load(f)
        conn = resp.Connection(HOST, port, timeout=max(1, deadline - time.monotonic()))
        try:
            text = "\n".join(conn.session(commands)) + "\n"
        finally:
            conn.close()
        peak = _status_field(proc.pid, "VmHWM")
        try:
            stopper = resp.Connection(HOST, port, timeout=5)
            stopper.sock.sendall(resp.encode(["SHUTDOWN", "NOSAVE"]))
            proc.wait(timeout=max(1, min(30, deadline - time.monotonic())))
            stopper.close()
        except (OSError, subprocess.TimeoutExpired):
            pass
        log += _read(log_path)
        if proc.poll() is None:
            return Outcome("redis-server ignored SHUTDOWN", log=log, command=shown)
        if proc.returncode < 0:
            return Outcome("crashed (%s)" % signal_name(-proc.returncode), log=log, command=shown)
        if proc.returncode != 0:
            return Outcome("redis-server exited with %d" % proc.returncode, log=log,
                           command=shown)
        if not peak:
            return Outcome("no VmHWM for the server", log=log, command=shown)
        return Outcome(fields={"ops_per_sec": "%.1f" % rate, "peak_rss_kib": peak,
                               "seconds": "%.6f" % seconds, "ops": str(case.scale * tests)},
                       text=text, log=log, command=shown)
    except (OSError, ValueError) as e:
        return Outcome("redis session failed: %s" % e, log=log + _read(log_path), command=shown)
    finally:
        _kill(proc)
