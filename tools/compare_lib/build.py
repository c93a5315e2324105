"""Builds what tools/compare runs (bazel build -c opt) and copies it to
OUT/bin, so that a teammate's rebuild cannot swap a binary mid-run."""

import os
import shutil
import subprocess
import sys

from . import plan


def build(root, out, workloads, say):
    """Builds the workloads (when WORKLOADS is true) and the preload
    library. Returns (bindir, rseqmalloc path, why rseqmalloc is unusable
    or None). Exits when the workloads themselves cannot be built."""
    log_path = os.path.join(out, "build.log")
    with open(log_path, "w") as log:
        def bazel(*argv):
            log.write("$ bazel %s\n" % " ".join(argv))
            log.flush()
            return subprocess.run(["bazel"] + list(argv), cwd=root, stdout=log,
                                  stderr=subprocess.STDOUT).returncode

        if workloads:
            say("compare: building the workloads (bazel build -c opt //bench/...)")
            if bazel("build", "-c", "opt", "//bench/...") != 0:
                say("error: building the workloads failed; see %s" % log_path)
                sys.exit(1)
        say("compare: building the preload library (bazel build -c opt //:librseqmalloc.so)")
        lib_rc = bazel("build", "-c", "opt", "//:librseqmalloc.so")
        info = subprocess.run(["bazel", "info", "-c", "opt", "bazel-bin"], cwd=root,
                              capture_output=True, text=True)
    if info.returncode != 0:
        say("error: bazel info failed: " + info.stderr.strip()[-300:])
        sys.exit(1)
    bazel_bin = info.stdout.strip()
    bindir = os.path.join(out, "bin")
    os.makedirs(bindir, exist_ok=True)
    if workloads:
        for w in plan.BINARIES:
            shutil.copy2(os.path.join(bazel_bin, "bench", w), bindir)
    lib = os.path.join(bindir, "librseqmalloc.so")
    if os.path.exists(lib):
        os.remove(lib)
    if lib_rc != 0:
        return bindir, lib, ("`bazel build -c opt //:librseqmalloc.so` failed (see %s)"
                             % log_path)
    shutil.copy2(os.path.join(bazel_bin, "librseqmalloc.so"), lib)
    return bindir, lib, None
