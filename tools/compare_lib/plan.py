"""What tools/compare runs: the synthetic workloads of bench/ and their cases.

A case is one workload program with one set of arguments (thread count, size,
duration). Every case runs under every allocator, several times. The
allocators are in allocators.py, the real programs in programs.py.
"""

import os


class Workload:
    """metric: the result field that is the workload's figure of merit;
    higher: whether more of it is better. args/quick_args: fixed arguments
    for a normal and for a --quick run. sizes: sizes to sweep (pair only).
    threads: how a requested thread count maps to the program's (None:
    dropped). binary: the bench/ program (default: the name), so that one
    program can run as several workloads with different fixed arguments.
    default: part of a run that names no workloads (False: only on request,
    for workloads that mostly sleep)."""

    def __init__(self, name, what, metric, higher, args, quick_args,
                 sizes=None, quick_sizes=None, threads=None, binary=None, default=True):
        self.default = default
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
    Workload("server_steps",
             "server with a fixed 6M replacements shared among the threads: peak RSS at "
             "equal work (a timed run's peak grows with the work done)",
             "ops_per_sec", True, ["--steps", "6000000"], ["--steps", "1500000", "--live", "5000"],
             binary="server"),
    Workload("fragmentation", "fill, free a random half, refill 4x larger; time for all",
             "seconds", False, ["--mib", "256"], ["--mib", "64"]),
    Workload("realloc_growth", "buffers grown by realloc, std::string, std::vector",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("large", "256 KiB-64 MiB allocations, every page touched",
             "ops_per_sec", True, ["--ms", "500"], ["--ms", "200"]),
    Workload("thread_churn", "waves of short-lived allocating threads",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("handoff", "Larson-style: chains of threads, each replacing random objects "
             "(8-1000 B) of a set its predecessor allocated, then handing it on",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"]),
    Workload("large_realloc", "a buffer grown by realloc in 4 KiB steps to 64 MiB",
             "ops_per_sec", True, ["--ms", "1000"], ["--ms", "200", "--size", "16M"]),
    Workload("large_calloc", "calloc(64 MiB) used sparsely, freed, asked for again",
             "ops_per_sec", True, ["--ms", "500"], ["--ms", "200"]),
    Workload("sparse_writes", "5000 blocks of 8-128 KiB with one byte written each, then freed",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100", "--count", "1000"]),
    Workload("producer_consumer_mixed",
             "allocated on one thread, freed on another, random sizes 16 B-1 KiB",
             "ops_per_sec", True, ["--ms", "300", "--size", "16-1024"],
             ["--ms", "100", "--size", "16-1024"], threads=_even,
             binary="producer_consumer"),
    Workload("producer_consumer_deep",
             "producer_consumer with up to 262144 blocks of 64 B in flight per pair: "
             "blocks come back cold",
             "ops_per_sec", True, ["--ms", "300", "--size", "64", "--ring", "262144"],
             ["--ms", "100", "--size", "64", "--ring", "65536"], threads=_even,
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
    for k in (100, 1000, 10000, 100000)
] + [
    Workload("bursts", "rings of 200000 blocks filled in bursts of one size (8 B-128 KiB), "
             "four fifths freed at a time",
             "ops_per_sec", True, ["--ms", "500"], ["--ms", "150"]),
    Workload("memory_64threads", "64 threads churning 2000 small objects each; peak RSS",
             "ops_per_sec", True, ["--ms", "300"], ["--ms", "100"],
             threads=lambda t: 64),
]
WORKLOADS += [
    Workload("idle_release",
             "4 threads fill 512 MiB of mixed sizes, free all but 16 MiB, then the "
             "program sleeps 10 s; RSS at the end (less is better)",
             "rss_idle_end_kib", False, ["--ms", "10000"], ["--ms", "10000", "--mib", "128"],
             threads=lambda t: 4, default=False),
]
WORKLOAD_NAMES = [w.name for w in WORKLOADS]
DEFAULT_WORKLOAD_NAMES = [w.name for w in WORKLOADS if w.default]
# The bench/ programs the workloads need (some run under several names).
BINARIES = sorted({w.binary for w in WORKLOADS})


class Case:
    kind = "workload"

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
