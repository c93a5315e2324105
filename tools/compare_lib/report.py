"""Turns the runs of tools/compare into medians, ratios, tables and CSV
files (the chart is chart.py's)."""

import csv
import statistics

RAW_FIELDS = ["seconds", "ops", "ops_per_sec", "peak_rss_kib", "final_rss_kib",
              "live_kib", "live_rss_kib", "rss_over_live",
              "rss_1000ms_kib", "rss_5000ms_kib", "rss_idle_end_kib", "malloc_libs"]

class Run:
    def __init__(self, rep, case, alloc, status, fields, wall, other_cpu, command):
        self.rep = rep
        self.case = case
        self.alloc = alloc
        self.status = status  # "ok", or why the run failed
        self.fields = fields  # key -> text, from the result line
        self.wall = wall
        self.other_cpu = other_cpu  # cores used by other processes meanwhile
        self.command = command  # as run, with the allocator's variables

    def value(self, key):
        return float(self.fields[key])


class Summary:
    """Medians of one case under one allocator, and its ratios."""

    def __init__(self, case, alloc, runs):
        self.case = case
        self.alloc = alloc
        ok = [r for r in runs if r.status == "ok"]
        self.ok = len(ok)
        self.failed = [r.status for r in runs if r.status != "ok"]
        metric = case.workload.metric
        self.metric = statistics.median(r.value(metric) for r in ok) if ok else None
        self.peak = statistics.median(r.value("peak_rss_kib") for r in ok) if ok else None
        finals = [r.value("final_rss_kib") for r in ok if "final_rss_kib" in r.fields]
        self.final = statistics.median(finals) if finals else None  # workloads only
        self.speed_vs_best = self.speed_vs_glibc = None
        self.rss_vs_best = self.rss_vs_glibc = None

    def status(self):
        if self.alloc.problem:
            return "missing"
        if getattr(self.case, "problem", None):  # a program that could not run at all
            return "not run: " + self.case.problem
        if not self.ok:
            return self.failed[0] if self.failed else "not run"
        if self.failed:
            return "%d of %d failed: %s" % (len(self.failed), len(self.failed) + self.ok,
                                           self.failed[0])
        return "ok"


def _speed_ratio(workload, value, reference):
    if value is None or reference is None or value <= 0 or reference <= 0:
        return None
    return value / reference if workload.higher else reference / value


def summarise(cases, allocators, runs):
    """Returns {(case index, allocator name): Summary} with the ratios filled:
    speed > 1 is faster than the reference, RSS < 1 is smaller."""
    by_key = {}
    for r in runs:
        by_key.setdefault((id(r.case), r.alloc.name), []).append(r)
    result = {}
    for ci, case in enumerate(cases):
        row = {a.name: Summary(case, a, by_key.get((id(case), a.name), [])) for a in allocators}
        peers = [s for s in row.values() if s.alloc.peer and s.metric is not None]
        best_metric = best_peak = None
        if peers:
            pick = max if case.workload.higher else min
            best_metric = pick(s.metric for s in peers)
            best_peak = min(s.peak for s in peers)
        glibc = row.get("glibc")
        for s in row.values():
            s.speed_vs_best = _speed_ratio(case.workload, s.metric, best_metric)
            if s.peak and best_peak:
                s.rss_vs_best = s.peak / best_peak
            if glibc is not None and glibc.metric is not None:
                s.speed_vs_glibc = _speed_ratio(case.workload, s.metric, glibc.metric)
                if s.peak and glibc.peak:
                    s.rss_vs_glibc = s.peak / glibc.peak
            result[(ci, s.alloc.name)] = s
    return result


class Paired:
    """One allocator against the baseline on one case, repetition by
    repetition: the ratio of the two runs of the same repetition (adjacent in
    time, so a burst of outside load hits both), then the median over the
    repetitions. Speed > 1 is faster than the baseline, RSS < 1 is smaller."""

    def __init__(self, speed, rss):
        self.speed = speed  # per-repetition speed ratios, in repetition order
        self.rss = rss      # per-repetition peak RSS ratios

    def speed_median(self):
        return statistics.median(self.speed) if self.speed else None

    def rss_median(self):
        return statistics.median(self.rss) if self.rss else None


def paired(cases, allocators, runs, baseline):
    """Returns {(case index, allocator name): Paired} for every allocator that
    is not a peer and not the baseline (the builds being compared), from the
    repetitions where both it and the baseline ran successfully."""
    ok = {}  # (case, allocator name) -> {rep: run}
    for r in runs:
        if r.status == "ok":
            ok.setdefault((id(r.case), r.alloc.name), {})[r.rep] = r
    result = {}
    for ci, case in enumerate(cases):
        metric = case.workload.metric
        base_runs = ok.get((id(case), baseline), {})
        for a in allocators:
            if a.peer or a.name == baseline:
                continue
            speed, rss = [], []
            mine_runs = ok.get((id(case), a.name), {})
            for rep in sorted(mine_runs):
                mine, base = mine_runs[rep], base_runs.get(rep)
                if base is None:
                    continue
                ratio = _speed_ratio(case.workload, mine.value(metric), base.value(metric))
                if ratio is not None:
                    speed.append(ratio)
                if mine.value("peak_rss_kib") > 0 and base.value("peak_rss_kib") > 0:
                    rss.append(mine.value("peak_rss_kib") / base.value("peak_rss_kib"))
            result[(ci, a.name)] = Paired(speed, rss)
    return result


def paired_table(cases, allocators, pairs, baseline):
    """Markdown: per case, each compared build's paired speed and RSS ratios
    to the baseline, with the range over repetitions."""
    names = [a for a in allocators if (0, a.name) in pairs]
    if not names:
        return ""
    head = "| case | " + " | ".join("%s speed | %s peak RSS" % (a.label, a.label)
                                    for a in names) + " |"
    lines = ["Paired ratios to %s: in each repetition, an allocator's run divided by "
             "%s's run of the same case (a few runs apart), then the median over the "
             "repetitions [lowest-highest]. Speed > 1 is faster, RSS < 1 is less memory. "
             "On a noisy machine these are steadier than ratios of medians." % (
                 baseline, baseline), "", head, "|---|" + "---|---|" * len(names)]

    def cell(values, median):
        if not values:
            return "-"
        return "%.2f [%.2f-%.2f]" % (median, min(values), max(values))

    for ci, case in enumerate(cases):
        cells = []
        for a in names:
            p = pairs[(ci, a.name)]
            cells += [cell(p.speed, p.speed_median()), cell(p.rss, p.rss_median())]
        lines.append("| %s | %s |" % (case.label, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def write_paired_csv(path, cases, allocators, pairs, baseline):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "threads", "size", "allocator", "baseline", "pairs",
                    "speed_ratio_median", "speed_ratio_min", "speed_ratio_max",
                    "rss_ratio_median", "rss_ratio_min", "rss_ratio_max"])
        for ci, case in enumerate(cases):
            for a in allocators:
                p = pairs.get((ci, a.name))
                if p is None:
                    continue

                def trio(values, median):
                    if not values:
                        return ["", "", ""]
                    return ["%.4f" % median, "%.4f" % min(values), "%.4f" % max(values)]

                w.writerow([case.workload.name, _blank(case.threads), case.size or "", a.name,
                            baseline, len(p.speed)] + trio(p.speed, p.speed_median())
                           + trio(p.rss, p.rss_median()))


def human(value, unit=""):
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return "%.3g%s%s" % (value / factor, suffix, unit)
    return "%.3g%s" % (value, unit)


def _ratio(x):
    return "-" if x is None else "%.2f" % x


def _cell(summary, value_text, vs_best, vs_glibc):
    status = summary.status()
    if summary.ok == 0:
        return status if len(status) <= 24 else status[:21] + "..."
    mark = "!" if summary.failed else ""
    if summary.alloc.name == "glibc":
        return "%s%s (%s)" % (value_text, mark, _ratio(vs_best))
    return "%s%s (%s, %s)" % (value_text, mark, _ratio(vs_best), _ratio(vs_glibc))


def _metric_text(case, value):
    if case.workload.metric == "seconds":
        return "%.3gs" % value
    if case.workload.metric.endswith("_kib"):
        return "%.1fMiB" % (value / 1024)
    return human(value, "/s")


def tables(cases, allocators, summaries):
    """Two markdown tables: speed, then peak RSS."""
    head = "| case | " + " | ".join(a.label for a in allocators) + " |"
    rule = "|---|" + "---|" * len(allocators)
    timed = []
    for c in cases:
        if c.workload.metric == "seconds" and c.workload.name not in timed:
            timed.append(c.workload.name)
    resident = []
    for c in cases:
        if c.workload.metric.endswith("_kib") and c.workload.name not in resident:
            resident.append(c.workload.name)
    notes = []
    if timed:
        notes.append("%s: seconds" % ", ".join(timed))
    if resident:
        notes.append("%s: resident MiB at the end" % ", ".join(resident))
    unit = "median ops/s (%s)" % "; ".join(notes) if notes else "median ops/s"
    speed = ["Speed: %s, then (ratio to the best peer, ratio to glibc); a ratio > 1 is "
             "faster." % unit, "", head, rule]
    memory = ["Peak RSS: median, then (ratio to the best peer, ratio to glibc); "
              "a ratio < 1 is less memory.", "", head, rule]
    for ci, case in enumerate(cases):
        s_cells, m_cells = [], []
        for a in allocators:
            s = summaries[(ci, a.name)]
            if s.ok:
                s_cells.append(_cell(s, _metric_text(case, s.metric), s.speed_vs_best,
                                     s.speed_vs_glibc))
                m_cells.append(_cell(s, "%.3g MiB" % (s.peak / 1024), s.rss_vs_best,
                                     s.rss_vs_glibc))
            else:
                s_cells.append(_cell(s, "", None, None))
                m_cells.append(_cell(s, "", None, None))
        speed.append("| %s | %s |" % (case.label, " | ".join(s_cells)))
        memory.append("| %s | %s |" % (case.label, " | ".join(m_cells)))
    return "\n".join(speed) + "\n\n" + "\n".join(memory) + "\n"


def _blank(value):
    return "" if value is None else value


def write_raw_csv(path, runs):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rep", "workload", "threads", "size", "allocator", "status", "wall_s",
                    "other_cpu"] + RAW_FIELDS + ["command"])
        for r in runs:
            w.writerow([r.rep, r.case.workload.name, _blank(r.case.threads), r.case.size or "",
                        r.alloc.name, r.status, "%.3f" % r.wall, r.other_cpu]
                       + [r.fields.get(k, "") for k in RAW_FIELDS] + [r.command])


def write_medians_csv(path, cases, allocators, summaries):
    def num(x, fmt="%.6g"):
        return "" if x is None else fmt % x

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "threads", "size", "allocator", "status", "ok_runs",
                    "failed_runs", "metric", "higher_is_better", "median", "speed_vs_best_peer",
                    "speed_vs_glibc", "median_peak_rss_kib", "rss_vs_best_peer", "rss_vs_glibc",
                    "median_final_rss_kib"])
        for ci, case in enumerate(cases):
            for a in allocators:
                s = summaries[(ci, a.name)]
                w.writerow([case.workload.name, _blank(case.threads), case.size or "", a.name,
                            s.status(), s.ok, len(s.failed), case.workload.metric,
                            int(case.workload.higher), num(s.metric), num(s.speed_vs_best, "%.4f"),
                            num(s.speed_vs_glibc, "%.4f"), num(s.peak, "%.0f"),
                            num(s.rss_vs_best, "%.4f"), num(s.rss_vs_glibc, "%.4f"),
                            num(s.final, "%.0f")])
