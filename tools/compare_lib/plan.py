"""What tools/compare runs: the allocators, the workloads and their cases.

A case is one workload program with one set of arguments (thread count, size,
duration). Every case runs under every allocator, several times.
"""

import os

LIBDIR = "/usr/lib/x86_64-linux-gnu"

# name -> (label, preload path or None for glibc, Debian package, file-name
# prefix the workload must report in malloc_libs to prove the preload worked).
# Only gperftools' tcmalloc is packaged for Debian, so it is always labelled
# as such; Google's tcmalloc is a different allocator.
PEERS = {
    "glibc": ("glibc", None, "libc6", None),
    "jemalloc": ("jemalloc", LIBDIR + "/libjemalloc.so.2", "libjemalloc2", "libjemalloc"),
    "tcmalloc": ("tcmalloc (gperftools)", LIBDIR + "/libtcmalloc_minimal.so.4",
                 "libtcmalloc-minimal4", "libtcmalloc"),
    "mimalloc": ("mimalloc", LIBDIR + "/libmimalloc.so.2", "libmimalloc2.0", "libmimalloc"),
}
OURS = "rseqmalloc"
ALL_ALLOCATORS = list(PEERS) + [OURS]


class Allocator:
    def __init__(self, name, label, path, expect, peer):
        self.name = name
        self.label = label
        self.path = path        # None: no preload (glibc)
        self.expect = expect    # malloc_libs must contain a file starting so
        self.peer = peer        # peers set the "best peer" reference
        self.problem = None     # why it cannot run, when it cannot

    def check(self):
        if self.path is not None and not os.path.isfile(self.path):
            self.problem = self.problem or "library not found: " + self.path
        return self.problem is None


def make_allocator(spec, ours_path, ours_problem):
    """spec: a known name, or NAME=/path/to/lib.so for anything else."""
    if "=" in spec:
        name, path = spec.split("=", 1)
        base = os.path.basename(path).split(".so")[0]
        return Allocator(name, name, os.path.abspath(path), base, peer=False)
    if spec == OURS:
        a = Allocator(OURS, OURS, ours_path, "librseqmalloc", peer=False)
        a.problem = ours_problem
        return a
    if spec in PEERS:
        label, path, _, expect = PEERS[spec]
        return Allocator(spec, label, path, expect, peer=True)
    raise ValueError("unknown allocator '%s' (known: %s, or NAME=/path/lib.so)"
                     % (spec, ", ".join(ALL_ALLOCATORS)))


class Workload:
    """metric: the result field that is the workload's figure of merit;
    higher: whether more of it is better. args/quick_args: fixed arguments
    for a normal and for a --quick run. sizes: sizes to sweep (pair only).
    threads: how a requested thread count maps to the program's (None:
    dropped). binary: the bench/ program (default: the name), so that one
    program can run as several workloads with different fixed arguments."""

    def __init__(self, name, what, metric, higher, args, quick_args,
                 sizes=None, quick_sizes=None, threads=None, binary=None):
        self.name = name
        self.binary = binary or name  # the program in bench/ that runs it
        self.what = what
        self.metric = metric
        self.higher = higher
        self.args = args
        self.quick_args = quick_args
        self.sizes = sizes
        self.quick_sizes = quick_sizes
        self.threads = threads or (lambda t: t)


def _even(t):
    return max(2, t + (t % 2))


def _at_least_two(t):
    return max(2, t)


WORKLOADS = [
    Workload("pair", "malloc/free pairs of one size per thread", "ops_per_sec", True,
             ["--ms", "300"], ["--ms", "100"],
             sizes=["16", "64", "256", "1024", "8192"], quick_sizes=["64"]),
    Workload("producer_consumer", "allocated on one thread, freed on another (SPSC ring)",
             "ops_per_sec", True, ["--ms", "300", "--size", "64"],
             ["--ms", "100", "--size", "64"], threads=_even),
    Workload("server", "shared table of live objects, long-tailed size mix, remote frees",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100", "--live", "5000"]),
    Workload("fragmentation", "fill, free a random half, refill 4x larger; time for all",
             "seconds", False, ["--mib", "256"], ["--mib", "64"]),
    Workload("realloc_growth", "buffers grown by realloc, std::string, std::vector",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("large", "256 KiB-64 MiB allocations, every page touched",
             "ops_per_sec", True, ["--ms", "500"], ["--ms", "200"]),
    Workload("thread_churn", "waves of short-lived allocating threads",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("large_realloc", "a buffer grown by realloc in 4 KiB steps to 64 MiB",
             "ops_per_sec", True, ["--ms", "1000"], ["--ms", "200", "--size", "16M"]),
    Workload("large_calloc", "calloc(64 MiB) used sparsely, freed, asked for again",
             "ops_per_sec", True, ["--ms", "500"], ["--ms", "200"]),
    Workload("producer_consumer_mixed",
             "allocated on one thread, freed on another, random sizes 16 B-1 KiB",
             "ops_per_sec", True, ["--ms", "300", "--size", "16-1024"],
             ["--ms", "100", "--size", "16-1024"], threads=_even,
             binary="producer_consumer"),
    Workload("exchange", "threads pass batches of 64 blocks of 16 B-16 KiB around a ring",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"], threads=_at_least_two),
    Workload("working_set", "shared set of 4096 blocks of 16 B-1 KiB, replaced by any thread",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("working_set_sized", "working_set freed with sized operator delete",
             "ops_per_sec", True, ["--ms", "300", "--sized", "1"],
             ["--ms", "100", "--sized", "1"], binary="working_set"),
    Workload("size_mix", "32 live blocks per thread, one size distribution",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"],
             sizes=["64", "bimodal", "16-16K"], quick_sizes=["16-16K"]),
] + [
    Workload("batch_%d" % k, "each thread allocates %d blocks of 64 B, then frees them" % k,
             "ops_per_sec", True, ["--ms", "300", "--count", str(k)],
             ["--ms", "100", "--count", str(k)], binary="batch")
    for k in (100, 1000, 10000)
] + [
    Workload("memory_64threads", "64 threads churning 2000 small objects each; peak RSS",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"],
             threads=lambda t: 64),
]
WORKLOAD_NAMES = [w.name for w in WORKLOADS]
# The bench/ programs the workloads need (some run under several names).
BINARIES = sorted({w.binary for w in WORKLOADS})


class Case:
    def __init__(self, workload, threads, size, args):
        self.workload = workload
        self.threads = threads
        self.size = size
        self.args = args

    @property
    def label(self):
        text = "%s t=%d" % (self.workload.name, self.threads)
        if not self.size:
            return text
        return text + (" %sB" % self.size if self.size[0].isdigit() else " " + self.size)

    def command(self, bindir):
        cmd = [os.path.join(bindir, self.workload.binary), "--threads", str(self.threads)]
        if self.size:
            cmd += ["--size", self.size]
        return cmd + self.args


def make_cases(names, threads, quick, sizes=None):
    """Cases in a stable order: workload, then size, then thread count. Thread
    counts that map to the same program argument are run once."""
    cases = []
    for w in WORKLOADS:
        if w.name not in names:
            continue
        args = w.quick_args if quick else w.args
        if not w.sizes:
            size_list = [None]  # the program's own default distribution
        elif sizes:
            size_list = sizes
        else:
            size_list = w.quick_sizes if quick else w.sizes
        for size in size_list:
            seen = []
            for t in threads:
                mapped = w.threads(t)
                if mapped not in seen:
                    seen.append(mapped)
                    cases.append(Case(w, mapped, size, args))
    return cases
