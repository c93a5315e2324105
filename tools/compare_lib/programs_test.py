"""Real programs through tools/compare's own runner (runner.run_one), at
small scales: each one runs and passes its check; a wrong output, a crash,
an exit status, a refused preload and a timeout each fail their run; the
peak RSS is the program's own; and an allocator's --env variables reach
that allocator's runs only (seen through glibc's own __rseq_size).

Usage: programs_test.py [path/to/librseqmalloc.so] (Bazel passes it).
Needs the programs tools/setup.sh installs (redis, sqlite3, perl, g++, make,
GNU time).
"""

import os
import resource
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compare_lib import allocators, program_runner, programs, runner  # noqa: E402

LIB = None

# Appends what the process saw to the file named by argv[1]; prints the same
# line whatever it saw, so every run matches the reference.
PROBE = """
import ctypes, os, sys
size = ctypes.c_uint.in_dll(ctypes.CDLL(None), "__rseq_size").value
with open(sys.argv[1], "a") as f:
    f.write("%s|%s|%d\\n" % (os.environ.get("GLIBC_TUNABLES", "-"),
                             os.environ.get("LD_PRELOAD", "-"), size))
print("probe ran")
"""

SMALL = {"redis": 500, "sqlite3": 2000, "python3": 300, "g++": 1, "perl": 2000}


def small_cases(names, jobs=2):
    cases = programs.make_program_cases(names, quick=True, jobs=jobs)
    for c in cases:
        c.scale = SMALL[c.program.name]
    return cases


def case_of(name, command, **kwargs):
    program = programs.Program(name, "test program", "seconds", [command[0]], scale=1,
                               quick_scale=0, prepare=None, command=command, **kwargs)
    return programs.ProgramCase(program, 1, 2)


class ProgramsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.ctx = program_runner.Context(os.path.join(self.tmp.name, "work"), 2)
        self.logs = os.path.join(self.tmp.name, "logs")
        self.messages = []
        self.glibc, self.ours = allocators.make_allocators(
            ["glibc", "rseqmalloc"], ["rseqmalloc:GLIBC_TUNABLES=glibc.pthread.rseq=0"], LIB,
            None)

    def tearDown(self):
        self.tmp.cleanup()

    def run_case(self, case, alloc, timeout=60):
        return runner.run_one(case, alloc, self.ctx, timeout, 1, self.logs, self.messages.append)

    def prepared(self, case):
        program_runner.prepare(case, self.ctx, 60)
        self.assertIsNone(case.problem)
        return case

    def test_each_real_program_runs_and_passes_its_check(self):
        for case in small_cases(programs.PROGRAM_NAMES):
            self.prepared(case)
            for alloc in (self.glibc, self.ours):
                run = self.run_case(case, alloc)
                self.assertEqual(run.status, "ok", "%s under %s: %s" % (
                    case.label, alloc.name, self.messages))
                self.assertGreater(run.value(case.program.metric), 0)
                self.assertGreater(run.value("peak_rss_kib"), 1000)
                self.assertEqual("GLIBC_TUNABLES=glibc.pthread.rseq=0" in run.command,
                                 alloc is self.ours)

    def test_a_wrong_output_fails_the_run(self):
        case = self.prepared(small_cases(["sqlite3"])[0])
        lines = case.expected.splitlines(True)
        good = self.run_case(case, self.ours)
        self.assertEqual(good.status, "ok")
        # As if the allocator had corrupted one result row.
        case.expected = "".join(lines[:-1] + ["distinct|0|0\n"])
        bad = self.run_case(case, self.ours)
        self.assertTrue(bad.status.startswith("wrong output: line %d is 'distinct|" % len(lines)),
                        bad.status)
        self.assertEqual(bad.fields, {})  # a wrong run contributes no figures
        logs = os.listdir(self.logs)
        self.assertEqual(len(logs), 1)
        with open(os.path.join(self.logs, logs[0])) as f:
            self.assertTrue(f.readline().startswith("wrong output"))
        self.assertIn("wrong output", self.messages[-1])

    def test_an_output_that_changes_from_run_to_run_fails(self):
        case = self.prepared(case_of("unstable", ["python3", "-c", "import os; print(os.getpid())"]))
        self.assertTrue(self.run_case(case, self.glibc).status.startswith("wrong output: line 1"))

    def test_failures_are_named(self):
        exit3 = self.prepared(case_of("exit3", ["sh", "-c", "echo x; [ -n \"$LD_PRELOAD\" ] && "
                                                "exit 3; exit 0"]))
        self.assertEqual(self.run_case(exit3, self.ours).status, "failed (exit 3)")
        crash = self.prepared(case_of("crash", ["sh", "-c", "[ -n \"$LD_PRELOAD\" ] && "
                                                "kill -SEGV $$; exit 0"]))
        self.assertEqual(self.run_case(crash, self.ours).status, "crashed (SIGSEGV)")
        sleeper = self.prepared(case_of("sleeper", ["sh", "-c", "[ -n \"$LD_PRELOAD\" ] && "
                                                    "sleep 30; echo done"]))
        self.assertEqual(self.run_case(sleeper, self.ours, timeout=1).status, "timeout (1s)")
        broken = allocators.make_allocator("broken=" + os.path.join(self.tmp.name, "none.so"),
                                           None, None)
        true = self.prepared(case_of("true", ["true"]))
        self.assertTrue(self.run_case(true, broken).status.startswith("not preloaded: "))
        missing = case_of("missing", ["no-such-program-here"])
        program_runner.prepare(missing, self.ctx, 10)
        self.assertEqual(missing.problem, "needs no-such-program-here (tools/setup.sh installs it)")

    def test_peak_rss_is_the_programs_own(self):
        ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        small = self.prepared(case_of("true", ["true"]))
        run = self.run_case(small, self.glibc)
        self.assertEqual(run.status, "ok")
        # Not this runner's high-water mark, which a child of Python inherits.
        self.assertLess(run.value("peak_rss_kib"), min(ours, 4096))
        big = self.prepared(case_of("big", ["python3", "-c", "b = bytearray(96 << 20); "
                                            "print(len(b))"]))
        run = self.run_case(big, self.glibc)
        self.assertGreater(run.value("peak_rss_kib"), 96 << 10)

    def test_env_reaches_only_its_allocators_runs(self):
        seen = os.path.join(self.tmp.name, "seen.txt")
        probe = self.prepared(case_of("probe", ["python3", "-c", PROBE, seen]))
        with open(seen) as f:
            reference = f.read().split("|")
        os.remove(seen)
        for alloc in (self.glibc, self.ours, self.glibc):
            self.assertEqual(self.run_case(probe, alloc).status, "ok", self.messages)
        with open(seen) as f:
            runs = [line.strip().split("|") for line in f]
        rseq_size = int(reference[2])
        self.assertEqual(runs[0], ["-", "-", str(rseq_size)])
        self.assertEqual(runs[2], runs[0])
        self.assertEqual(runs[1][:2], ["glibc.pthread.rseq=0", LIB])
        # The tunable took effect: glibc registered no rseq area in that run.
        self.assertEqual(runs[1][2], "0")
        if rseq_size == 0:
            print("note: this kernel gives glibc no rseq; __rseq_size is 0 everywhere")


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        LIB = os.path.abspath(sys.argv.pop(1))
    else:
        LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "bazel-bin", "librseqmalloc.so")
    unittest.main()
