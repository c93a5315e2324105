"""Process helpers shared by the program drivers: how a run ended
(Outcome), running a process group with a timeout, finding Debian's
binaries, reading ld.so's refusal of a preload."""

import os
import shutil
import signal
import subprocess


class Outcome:
    """status: "ok" or why the run failed. fields: the figures (the
    program's metric, peak_rss_kib). text: the output that is checked.
    log: everything it printed, for OUT/logs. command: what ran."""

    def __init__(self, status="ok", fields=None, text="", log="", command=""):
        self.status = status
        self.fields = fields or {}
        self.text = text
        self.log = log
        self.command = command


def find_binary(name):
    """Debian's program first: a shim earlier in PATH (pyenv's python3, a
    bash script) would put another process under the preload."""
    for d in ("/usr/bin", "/bin"):
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def run_group(argv, env, cwd, timeout, stdin=subprocess.DEVNULL):
    """Runs argv in its own process group; returns (exit status, or None
    after a timeout, stdout, stderr). A timeout kills the whole group: a
    make -j or a shell leaves no stray children behind."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out.decode(errors="replace"), err.decode(errors="replace")


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def preload_refused(stderr):
    """ld.so's line when a preload cannot be loaded (the program then runs
    without it, so the run must not count)."""
    for line in stderr.splitlines():
        if "LD_PRELOAD" in line and "cannot be preloaded" in line:
            return line.strip()
    return None
