"""Tests of tools/compare's plan and report modules (no programs are run)."""

import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compare_lib import plan, report  # noqa: E402


def fake_run(case, alloc, rep, metric=None, peak=None, status="ok"):
    fields = {}
    if status == "ok":
        fields = {case.workload.metric: str(metric), "peak_rss_kib": str(peak),
                  "final_rss_kib": str(peak)}
    return report.Run(rep, case, alloc, status, fields, 0.1, 0.0, ["prog"])


class PlanTest(unittest.TestCase):
    def test_default_cases_cover_sizes_threads_and_dedupe(self):
        cases = plan.make_cases(plan.WORKLOAD_NAMES, [1, 2, 16], quick=False)
        labels = [c.label for c in cases]
        self.assertEqual(sum(1 for c in cases if c.workload.name == "pair"), 15)
        self.assertIn("pair t=16 8192B", labels)
        # 1 and 2 both become one pair of threads.
        self.assertEqual([c.threads for c in cases if c.workload.name == "producer_consumer"],
                         [2, 16])
        self.assertEqual([c.threads for c in cases if c.workload.name == "memory_64threads"],
                         [64])

    def test_quick_is_smaller_and_explicit_sizes_win(self):
        quick = plan.make_cases(plan.WORKLOAD_NAMES, [1, 2], quick=True)
        full = plan.make_cases(plan.WORKLOAD_NAMES, [1, 2, 16], quick=False)
        self.assertLess(len(quick), len(full))
        sized = plan.make_cases(["pair"], [1], quick=True, sizes=["32", "4096"])
        self.assertEqual([c.size for c in sized], ["32", "4096"])
        self.assertEqual(sized[0].command("/b")[:5],
                         ["/b/pair", "--threads", "1", "--size", "32"])

    def test_allocators(self):
        ours = plan.make_allocator("rseqmalloc", "/x/librseqmalloc.so", "build failed")
        self.assertFalse(ours.check())
        self.assertEqual(ours.problem, "build failed")
        self.assertFalse(plan.make_allocator("x=/no/such/libx.so", None, None).check())
        glibc = plan.make_allocator("glibc", None, None)
        self.assertTrue(glibc.check())
        self.assertTrue(glibc.peer)
        self.assertEqual(plan.make_allocator("tcmalloc", None, None).label,
                         "tcmalloc (gperftools)")
        with self.assertRaises(ValueError):
            plan.make_allocator("tcmallok", None, None)


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.glibc = plan.make_allocator("glibc", None, None)
        self.je = plan.make_allocator("jemalloc", None, None)
        self.ours = plan.make_allocator("rseqmalloc", "/x", None)
        self.allocs = [self.glibc, self.je, self.ours]

    def test_ratios_for_throughput(self):
        case = plan.make_cases(["pair"], [1], quick=True)[0]
        runs = []
        for rep, (g, j, o) in enumerate([(100, 200, 400), (90, 210, 380), (500, 190, 420)]):
            runs += [fake_run(case, self.glibc, rep, g, 1000), fake_run(case, self.je, rep, j, 2000),
                     fake_run(case, self.ours, rep, o, 500)]
        s = report.summarise([case], self.allocs, runs)
        self.assertEqual(s[(0, "glibc")].metric, 100)  # median, not mean
        self.assertEqual(s[(0, "jemalloc")].metric, 200)
        # rseqmalloc is not a peer: the best peer is jemalloc.
        self.assertAlmostEqual(s[(0, "rseqmalloc")].speed_vs_best, 2.0)
        self.assertAlmostEqual(s[(0, "rseqmalloc")].speed_vs_glibc, 4.0)
        self.assertAlmostEqual(s[(0, "rseqmalloc")].rss_vs_best, 0.5)
        self.assertAlmostEqual(s[(0, "jemalloc")].rss_vs_glibc, 2.0)

    def test_time_metric_inverts_and_failures_are_reported(self):
        case = plan.make_cases(["fragmentation"], [1], quick=True)[0]
        self.assertFalse(case.workload.higher)
        runs = [fake_run(case, self.glibc, 0, 2.0, 100), fake_run(case, self.je, 0, 1.0, 100),
                fake_run(case, self.ours, 0, status="crashed (SIGSEGV)")]
        s = report.summarise([case], self.allocs, runs)
        self.assertAlmostEqual(s[(0, "glibc")].speed_vs_best, 0.5)
        self.assertAlmostEqual(s[(0, "jemalloc")].speed_vs_glibc, 2.0)
        self.assertEqual(s[(0, "rseqmalloc")].status(), "crashed (SIGSEGV)")
        text = report.tables([case], self.allocs, s)
        self.assertIn("crashed (SIGSEGV)", text)
        self.assertIn("1s (1.00, 2.00)", text)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.csv")
            report.write_medians_csv(path, [case], self.allocs, s)
            with open(path) as f:
                rows = f.read().splitlines()
            self.assertEqual(len(rows), 4)
            self.assertIn("fragmentation,1,,jemalloc,ok,1,0,seconds,0,1,1.0000,2.0000", rows[2])

    def test_human(self):
        self.assertEqual(report.human(1.5e8, "/s"), "150M/s")
        self.assertEqual(report.human(42), "42")


if __name__ == "__main__":
    unittest.main()
