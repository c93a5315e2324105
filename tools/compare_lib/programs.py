"""The real programs tools/compare runs under every allocator (--programs).

Each is data: the Debian programs it needs, its input (written once by a
program_inputs function, untimed), the command that is timed, its own
environment, and how its output is checked. program_runner.py runs them;
redis needs a server and a client, so it has its own driver (redis_driver.py).

Every run's output must equal that of a reference run without any preload
(taken once, before the measured runs), so a wrong result fails that run.
"""

import os

from . import program_inputs

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")


class Program:
    """name: what --programs calls it. label: the table's case label
    ({jobs} is the parallelism). metric/higher: "seconds" (wall time of the
    timed command; lower is better) or "ops_per_sec" (the program's own
    throughput; higher is better). binaries: the programs it needs (looked
    up in /usr/bin first, then PATH). scale/quick_scale: the size of the
    job ({scale}), also given to prepare(work, scale). command: the timed
    argv, run in {run}, a fresh empty folder; {work} holds the inputs,
    {scripts} compare_lib/scripts. env: variables of every run, the
    reference's too. verify: commands run in {run} after a successful
    timed run, without the allocator; their stdout is checked along with
    the program's. driver: "process" (program_runner) or "redis".
    own_allocator: file-name prefix of a malloc library the binary links
    itself: the glibc run then preloads libc.so.6, whose malloc comes first
    in symbol lookup, so glibc's allocator really serves that run."""

    def __init__(self, name, what, metric, binaries, scale, quick_scale, prepare,
                 command=None, env=None, verify=None, label=None, driver="process",
                 own_allocator=None):
        self.name = name
        self.what = what
        self.metric = metric
        self.higher = metric != "seconds"
        self.binaries = binaries
        self.scale = scale
        self.quick_scale = quick_scale
        self.prepare = prepare
        self.command = command or []
        self.env = env or {}
        self.verify = verify or []
        self.label = label or name
        self.driver = driver
        self.own_allocator = own_allocator


PROGRAMS = [
    Program("redis", "redis-server on 127.0.0.1, driven by redis-benchmark (pipelined, "
            "random keys; strings, lists, sets, hashes, sorted sets); requests/s, then a "
            "checked session", "ops_per_sec", ["redis-server", "redis-benchmark"],
            scale=20000, quick_scale=5000,
            prepare=lambda work, scale: program_inputs.redis_session(work, max(200, scale // 8)),
            driver="redis", own_allocator="libjemalloc"),
    Program("sqlite3", "sqlite3 shell: generated INSERTs in transactions, indexes, joins, "
            "window function, updates, VACUUM, integrity check", "seconds", ["sqlite3"],
            scale=150000, quick_scale=40000, prepare=program_inputs.sqlite_load,
            command=["sqlite3", "-bail", "{run}/db.sqlite", ".read {work}/load.sql"]),
    Program("python3", "python3 with PYTHONMALLOC=malloc: records, JSON round trips, "
            "sorting, grouping, object trees, freeing half", "seconds", ["python3"],
            scale=15000, quick_scale=4000, prepare=None,
            command=["python3", "{scripts}/objects.py", "{scale}"],
            env={"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}),
    Program("g++", "parallel build (make -j, one job per core) of generated C++ files "
            "with templates and std containers; objects checked byte for byte", "seconds",
            ["make", "g++"], scale=3, quick_scale=1, prepare=program_inputs.cxx_sources,
            command=["make", "-s", "-j{jobs}", "-f", "{work}/Makefile"],
            verify=[["./prog"], ["sh", "-c", "sha256sum *.o prog"]], label="g++ -j{jobs}"),
    Program("perl", "perl parsing a generated access log into hashes of arrays, regex "
            "rewrites, custom sorts, long joined strings", "seconds", ["perl"],
            scale=120000, quick_scale=30000, prepare=program_inputs.perl_log,
            command=["perl", "{scripts}/logs.pl", "{work}/access.log"],
            env={"PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}),
]
PROGRAM_NAMES = [p.name for p in PROGRAMS]


class ProgramCase:
    """One program at one scale; reads as a plan.Case to the report."""
    kind = "program"
    size = None

    def __init__(self, program, scale, jobs):
        self.program = program
        self.workload = program  # the report reads name, metric and higher
        self.scale = scale
        self.jobs = jobs
        self.threads = jobs if "{jobs}" in program.label else None
        self.expected = None  # the reference run's output
        self.problem = None   # why the program cannot run at all
        self.reference_log = ""  # what a failed reference run printed

    @property
    def label(self):
        return self.program.label.format(jobs=self.jobs)


def make_program_cases(names, quick, jobs):
    return [ProgramCase(p, p.quick_scale if quick else p.scale, jobs)
            for p in PROGRAMS if p.name in names]
