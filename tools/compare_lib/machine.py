"""The lines of the summary that say what ran where: machine, kernel,
package versions, commit."""

import os
import platform
import subprocess

from . import allocators

# Debian packages whose versions the summary names when real programs ran.
PROGRAM_PACKAGES = ["redis-server", "sqlite3", "perl", "python3", "g++", "make"]


def _first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def package_versions(names):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}, "] + names,
                       capture_output=True, text=True)
    return r.stdout.strip().rstrip(",") or "?"


def _git(root, *argv):
    r = subprocess.run(["git"] + list(argv), cwd=root, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


def lines(root, with_programs):
    cores = os.cpu_count() or 1
    dirty = " (with uncommitted changes)" if _git(root, "status", "--porcelain") else ""
    mem = _first("/proc/meminfo", "MemTotal").split()[0]
    mem_gib = "%.0f GiB" % (int(mem) / 2**20) if mem.isdigit() else "?"
    out = ["- machine: %s, %d cores, %s RAM, %s" % (
               _first("/proc/cpuinfo", "model name"), cores, mem_gib, _os_name()),
           "- kernel: %s" % platform.release(),
           "- packages: %s" % package_versions([v[2] for v in allocators.PEERS.values()])]
    if with_programs:
        out.append("- programs: %s" % package_versions(PROGRAM_PACKAGES))
    out.append("- rseqmalloc: git %s%s" % (_git(root, "rev-parse", "--short", "HEAD"), dirty))
    return out
