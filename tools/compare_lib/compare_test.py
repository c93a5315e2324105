"""Tests of tools/compare's modules that run nothing: the plan, the
allocator list and --env, the program definitions and their output check,
the report and the chart script."""

import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compare_lib import allocators, chart, plan, program_runner, programs, report  # noqa: E402


def fake_run(case, alloc, rep, metric=None, peak=None, status="ok"):
    fields = {}
    if status == "ok":
        fields = {case.workload.metric: str(metric), "peak_rss_kib": str(peak),
                  "final_rss_kib": str(peak)}
    return report.Run(rep, case, alloc, status, fields, 0.1, 0.0, "prog")


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

    def test_idle_release_runs_only_on_request_once(self):
        self.assertIn("idle_release", plan.WORKLOAD_NAMES)
        self.assertNotIn("idle_release", plan.DEFAULT_WORKLOAD_NAMES)
        cases = plan.make_cases(["idle_release"], [1, 2, 16], quick=False)
        self.assertEqual([c.threads for c in cases], [4])
        self.assertFalse(cases[0].workload.higher)
        self.assertEqual(report._metric_text(cases[0], 20480), "20.0MiB")

    def test_quick_is_smaller_and_explicit_sizes_win(self):
        quick = plan.make_cases(plan.WORKLOAD_NAMES, [1, 2], quick=True)
        full = plan.make_cases(plan.WORKLOAD_NAMES, [1, 2, 16], quick=False)
        self.assertLess(len(quick), len(full))
        sized = plan.make_cases(["pair"], [1], quick=True, sizes=["32", "4096"])
        self.assertEqual([c.size for c in sized], ["32", "4096"])
        self.assertEqual(sized[0].command("/b")[:5],
                         ["/b/pair", "--threads", "1", "--size", "32"])

    def test_allocators(self):
        ours = allocators.make_allocator("rseqmalloc", "/x/librseqmalloc.so", "build failed")
        self.assertFalse(ours.check())
        self.assertEqual(ours.problem, "build failed")
        self.assertFalse(allocators.make_allocator("x=/no/such/libx.so", None, None).check())
        glibc = allocators.make_allocator("glibc", None, None)
        self.assertTrue(glibc.check())
        self.assertTrue(glibc.peer)
        self.assertEqual(allocators.make_allocator("tcmalloc", None, None).label,
                         "tcmalloc (gperftools)")
        with self.assertRaises(allocators.SpecError):
            allocators.make_allocator("tcmallok", None, None)


class AllocatorListTest(unittest.TestCase):
    def error(self, specs, env=()):
        with self.assertRaises(allocators.SpecError) as cm:
            allocators.make_allocators(specs, list(env), "/x/librseqmalloc.so", None)
        message = str(cm.exception)
        self.assertNotIn("\n", message)
        return message

    def test_bad_lists(self):
        self.assertIn("no name", self.error(["=/x.so"]))
        self.assertIn("no library path", self.error(["mine="]))
        self.assertIn("listed twice", self.error(["glibc", "glibc"]))
        self.assertIn("listed twice", self.error(["a=/x.so", "a=/y.so"]))
        self.assertIn("known allocator's name", self.error(["jemalloc=/x.so"]))
        self.assertIn("bad name 'a:b'", self.error(["a:b=/x.so"]))
        self.assertIn("unknown allocator 'tcmallok'", self.error(["tcmallok"]))

    def test_bad_env(self):
        specs = ["glibc", "tcg=/opt/libtcmalloc.so"]
        self.assertIn("expected NAME:VAR=VALUE", self.error(specs, ["GLIBC_TUNABLES=x"]))
        self.assertIn("expected NAME:VAR=VALUE", self.error(specs, ["tcg:GLIBC_TUNABLES"]))
        self.assertIn("expected NAME:VAR=VALUE", self.error(specs, [":A=1"]))
        self.assertIn("no allocator 'jemalloc' in --allocators (glibc, tcg)",
                      self.error(specs, ["jemalloc:A=1"]))
        self.assertIn("'1A' is not a variable name", self.error(specs, ["tcg:1A=1"]))
        self.assertIn("LD_PRELOAD is the allocator's library",
                      self.error(specs, ["glibc:LD_PRELOAD=/x.so"]))
        self.assertIn("A is already set for tcg", self.error(specs, ["tcg:A=1", "tcg:A=2"]))

    def test_env_values_keep_commas_colons_and_equals(self):
        allocs = allocators.make_allocators(
            ["glibc", "tcg=/opt/libtcmalloc.so", "jemalloc"],
            ["tcg:GLIBC_TUNABLES=glibc.pthread.rseq=0:glibc.malloc.arena_max=2",
             "jemalloc:MALLOC_CONF=narenas:2,dirty_decay_ms:0", "tcg:EMPTY="], None, None)
        by_name = {a.name: a for a in allocs}
        self.assertEqual(by_name["glibc"].env, {})
        self.assertEqual(by_name["tcg"].env, {
            "GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.arena_max=2", "EMPTY": ""})
        self.assertEqual(by_name["jemalloc"].env["MALLOC_CONF"], "narenas:2,dirty_decay_ms:0")
        self.assertEqual(by_name["tcg"].path, "/opt/libtcmalloc.so")
        self.assertFalse(by_name["tcg"].peer)

    def test_environment_reaches_only_its_allocator(self):
        glibc, ours = allocators.make_allocators(
            ["glibc", "rseqmalloc"], ["rseqmalloc:GLIBC_TUNABLES=glibc.pthread.rseq=0",
                                      "rseqmalloc:PYTHONMALLOC=pymalloc"], "/x/lib.so", None)
        base = {"PATH": "/bin", "LD_PRELOAD": "/stale.so", "PYTHONMALLOC": "debug"}
        program_env = {"PYTHONMALLOC": "malloc"}
        g = glibc.environment(base, program_env)
        o = ours.environment(base, program_env)
        self.assertNotIn("LD_PRELOAD", g)  # a caller's preload never leaks into a run
        self.assertNotIn("GLIBC_TUNABLES", g)
        self.assertEqual(g["PYTHONMALLOC"], "malloc")
        self.assertEqual(o["LD_PRELOAD"], "/x/lib.so")
        self.assertEqual(o["GLIBC_TUNABLES"], "glibc.pthread.rseq=0")
        self.assertEqual(o["PYTHONMALLOC"], "pymalloc")  # the allocator's variable wins
        self.assertEqual(base["LD_PRELOAD"], "/stale.so")  # not modified
        self.assertEqual(ours.env_text(), "GLIBC_TUNABLES=glibc.pthread.rseq=0 "
                         "PYTHONMALLOC=pymalloc")


class ProgramDefinitionTest(unittest.TestCase):
    def test_every_program_is_complete(self):
        self.assertEqual(set(programs.PROGRAM_NAMES),
                         {"redis", "sqlite3", "python3", "g++", "perl"})
        for p in programs.PROGRAMS:
            self.assertTrue(p.binaries, p.name)
            self.assertLess(p.quick_scale, p.scale, p.name)
            self.assertIn(p.metric, ("seconds", "ops_per_sec"), p.name)
            self.assertEqual(p.higher, p.metric != "seconds")
            self.assertIn(p.driver, program_runner.DRIVERS, p.name)
            if p.driver == "process":
                self.assertTrue(p.command, p.name)
        for name in ("objects.py", "logs.pl"):
            self.assertTrue(os.path.isfile(os.path.join(programs.SCRIPTS, name)))

    def test_cases(self):
        cases = programs.make_program_cases(["g++", "perl"], quick=True, jobs=4)
        self.assertEqual([c.label for c in cases], ["g++ -j4", "perl"])
        self.assertEqual(cases[0].threads, 4)
        self.assertIsNone(cases[1].threads)
        self.assertEqual(cases[1].scale, cases[1].program.quick_scale)
        ctx = program_runner.Context("/w", 4, {"LD_PRELOAD": "/x.so", "PATH": "/bin"})
        self.assertNotIn("LD_PRELOAD", ctx.base_env)
        argv = program_runner.expand(cases[1].program.command, cases[1], ctx)
        self.assertTrue(argv[0].startswith("/"))
        self.assertEqual(argv[-1], "/w/perl/access.log")
        self.assertEqual(program_runner.expand(cases[0].program.command, cases[0], ctx)[2],
                         "-j4")

    def test_glibc_runs_of_a_program_linking_jemalloc_preload_libc(self):
        redis, sqlite = programs.make_program_cases(["redis", "sqlite3"], True, 2)
        glibc = allocators.make_allocator("glibc", None, None)
        je = allocators.make_allocator("jemalloc", None, None)
        self.assertTrue(program_runner.preload_of(redis, glibc).endswith("/libc.so.6"))
        self.assertIsNone(program_runner.preload_of(sqlite, glibc))
        self.assertEqual(program_runner.preload_of(redis, je), je.path)
        self.assertIsNone(program_runner.preload_of(redis, None))  # the reference run


class OutputCheckTest(unittest.TestCase):
    def test_same_output_passes(self):
        self.assertIsNone(program_runner.check_output("a\nb\n", "a\nb\n"))

    def test_wrong_output_says_where(self):
        self.assertEqual(program_runner.check_output("counts|20|80\nok\n", "counts|20|79\nok\n"),
                         "wrong output: line 1 is 'counts|20|79', expected 'counts|20|80'")
        self.assertEqual(program_runner.check_output("a\nb\n", "a\n"),
                         "wrong output: 1 lines, expected 2")
        self.assertEqual(program_runner.check_output("a\n", "a"),
                         "wrong output: differs from the reference in whitespace")
        long = program_runner.check_output("x" * 200, "y" * 200)
        self.assertLess(len(long), 200)

    def test_missing_reference_fails(self):
        self.assertIsNotNone(program_runner.check_output(None, "a\n"))

    def test_ld_so_refusal_is_found(self):
        err = ("ERROR: ld.so: object '/none.so' from LD_PRELOAD cannot be preloaded (cannot "
               "open shared object file): ignored.\nother\n")
        self.assertIn("/none.so", program_runner.preload_refused(err))
        self.assertIsNone(program_runner.preload_refused("fine\n"))


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.glibc = allocators.make_allocator("glibc", None, None)
        self.je = allocators.make_allocator("jemalloc", None, None)
        self.ours = allocators.make_allocator("rseqmalloc", "/x", None)
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

    def test_paired_ratios_divide_within_a_repetition(self):
        case = plan.make_cases(["pair"], [1], quick=True)[0]
        prev = allocators.make_allocator("prev=/old/librseqmalloc.so", "/x", None)
        allocs = [self.glibc, prev, self.ours]
        # The machine runs at half speed in repetition 1: medians would say
        # 300/200 = 1.5, each repetition says 1.1-1.2.
        runs = []
        for rep, (p, o, rss) in enumerate([(100, 110, 500), (200, 240, 400), (300, 330, 300)]):
            runs += [fake_run(case, self.glibc, rep, 50, 100), fake_run(case, prev, rep, p, 400),
                     fake_run(case, self.ours, rep, o, rss)]
        runs.append(fake_run(case, self.ours, 3, 999, 400))  # prev has no repetition 3
        runs.append(fake_run(case, prev, 4, status="crashed (SIGSEGV)"))
        runs.append(fake_run(case, self.ours, 4, 999, 400))
        pairs = report.paired([case], allocs, runs, "prev")
        self.assertEqual(set(pairs), {(0, "rseqmalloc")})  # no peer, not the baseline
        p = pairs[(0, "rseqmalloc")]
        self.assertEqual(len(p.speed), 3)
        self.assertAlmostEqual(p.speed_median(), 1.1)
        self.assertAlmostEqual(p.rss_median(), 1.0)
        self.assertAlmostEqual(min(p.rss), 0.75)
        text = report.paired_table([case], allocs, pairs, "prev")
        self.assertIn("Paired ratios to prev", text)
        self.assertIn("| pair t=1 64B | 1.10 [1.10-1.20] | 1.00 [0.75-1.25] |", text)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.csv")
            report.write_paired_csv(path, [case], allocs, pairs, "prev")
            with open(path) as f:
                rows = f.read().splitlines()
            self.assertEqual(rows[1], "pair,1,64,rseqmalloc,prev,3,1.1000,1.1000,1.2000,"
                             "1.0000,0.7500,1.2500")

    def test_paired_ratios_of_times_are_speeds(self):
        case = plan.make_cases(["fragmentation"], [1], quick=True)[0]
        prev = allocators.make_allocator("prev=/old/librseqmalloc.so", "/x", None)
        runs = [fake_run(case, prev, 0, 2.0, 100), fake_run(case, self.ours, 0, 1.0, 100)]
        pairs = report.paired([case], [prev, self.ours], runs, "prev")
        self.assertAlmostEqual(pairs[(0, "rseqmalloc")].speed_median(), 2.0)
        self.assertEqual(report.paired_table([case], [prev, self.ours], {}, "prev"), "")

    def test_programs_share_the_tables_and_csv(self):
        cases = programs.make_program_cases(["redis", "perl"], quick=True, jobs=2)
        redis, perl = cases
        runs = []
        for alloc, rps, secs, peak in [(self.glibc, 1000, 2.0, 100), (self.je, 2000, 1.0, 200),
                                       (self.ours, 3000, 0.5, 50)]:
            runs.append(report.Run(1, redis, alloc, "ok", {"ops_per_sec": str(rps),
                                                           "peak_rss_kib": str(peak)}, 1, 0, "r"))
            runs.append(report.Run(1, perl, alloc, "ok", {"seconds": str(secs),
                                                          "peak_rss_kib": str(peak)}, 1, 0, "p"))
        s = report.summarise(cases, self.allocs, runs)
        self.assertAlmostEqual(s[(0, "rseqmalloc")].speed_vs_best, 1.5)
        self.assertAlmostEqual(s[(1, "rseqmalloc")].speed_vs_best, 2.0)  # half the time
        self.assertAlmostEqual(s[(1, "rseqmalloc")].rss_vs_best, 0.5)
        text = report.tables(cases, self.allocs, s)
        self.assertIn("| redis | 1k/s (0.50) | 2k/s (1.00, 2.00) | 3k/s (1.50, 3.00) |", text)
        self.assertIn("| perl | 2s (0.50) |", text)
        self.assertIn("(perl: seconds)", text)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.csv")
            report.write_medians_csv(path, cases, self.allocs, s)
            with open(path) as f:
                self.assertIn("perl,,,rseqmalloc,ok,1,0,seconds,0,0.5,", f.read())
            path = os.path.join(d, "r.csv")
            report.write_raw_csv(path, runs)
            with open(path) as f:
                self.assertIn("1,redis,,,glibc,ok,", f.read())

    def test_a_program_that_cannot_run_says_why(self):
        case = programs.make_program_cases(["sqlite3"], quick=True, jobs=2)[0]
        case.problem = "needs sqlite3 (tools/setup.sh installs it)"
        s = report.summarise([case], self.allocs, [])
        self.assertEqual(s[(0, "glibc")].status(), "not run: " + case.problem)

    def test_human(self):
        self.assertEqual(report.human(1.5e8, "/s"), "150M/s")
        self.assertEqual(report.human(42), "42")


class ChartTest(unittest.TestCase):
    def setUp(self):
        self.allocs = [allocators.make_allocator(n, "/x", None)
                       for n in ("glibc", "jemalloc", "rseqmalloc")]
        self.cases = plan.make_cases(["pair"], [1, 2], quick=True)
        runs = []
        for case in self.cases:
            for alloc, speed, peak in [(self.allocs[0], 1.0, 100), (self.allocs[1], 100.0, 100),
                                       (self.allocs[2], 2000.0, 5000)]:
                runs.append(fake_run(case, alloc, 1, speed, peak))
        self.summaries = report.summarise(self.cases, self.allocs, runs)

    def test_ratio_text(self):
        self.assertEqual(chart.ratio_text(12.34), "12.3x")
        self.assertEqual(chart.ratio_text(1234.5), "1234x")
        self.assertEqual(chart.ratio_text(1 / 81), "1/81")

    def test_axis_shows_the_range_its_title_names(self):
        tics = chart.ytics(*chart.SPEED_RANGE)
        self.assertIn('"1/64" 0.015625', tics)
        self.assertIn('"8" 8', tics)
        with tempfile.TemporaryDirectory() as d:
            speed = chart._panel(os.path.join(d, "s"), self.cases, self.allocs, self.summaries,
                                 "speed_vs_best", *chart.SPEED_RANGE)
            rss = chart._panel(os.path.join(d, "r"), self.cases, self.allocs, self.summaries,
                               "rss_vs_best", *chart.RSS_RANGE)
        text = chart.script(self.cases, self.allocs, "t", 1000, speed, rss)
        self.assertIn("clipped to 1/64..8", text)
        self.assertIn("clipped to 1/8..8", text)
        # The range reaches just past both edges, so both edge tics are drawn.
        low, high = chart.SPEED_RANGE
        self.assertIn("set yrange [%r:%r]" % (low / chart._PAD, high * chart._PAD), text)

    def test_clipped_boxes_are_labelled(self):
        with tempfile.TemporaryDirectory() as d:
            present, labels = chart._panel(os.path.join(d, "s"), self.cases, self.allocs,
                                           self.summaries, "speed_vs_best", *chart.SPEED_RANGE)
            with open(os.path.join(d, "s")) as f:
                values = [float(line.split()[1]) for line in f if line.strip()]
        self.assertEqual(present, [0, 1, 2])
        # glibc is 1/100 of jemalloc (below 1/64); rseqmalloc 20x (above 8).
        self.assertEqual(len(labels), 4)
        self.assertTrue(all("1/100" in lb for lb in labels[:2]))
        self.assertTrue(all("20x" in lb for lb in labels[2:]))
        self.assertEqual(min(values), chart.SPEED_RANGE[0])
        self.assertEqual(max(values), chart.SPEED_RANGE[1])

    def test_long_titles_wrap(self):
        title = "tools/compare --allocators " + ",".join("lib%d=/opt/lib%d.so" % (i, i)
                                                         for i in range(40))
        lines = chart.wrap_title(title, 1000).split("\\n")
        self.assertGreater(len(lines), 2)
        self.assertTrue(all(len(line) <= 1000 / chart._CHAR_PX for line in lines))


if __name__ == "__main__":
    unittest.main()
