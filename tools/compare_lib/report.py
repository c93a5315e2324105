"""Turns the runs of tools/compare into medians, ratios, a table, CSV files
and a gnuplot chart."""

import csv
import os
import shutil
import statistics
import subprocess

RAW_FIELDS = ["seconds", "ops", "ops_per_sec", "peak_rss_kib", "final_rss_kib",
              "live_kib", "live_rss_kib", "rss_over_live", "malloc_libs"]

# Fixed colours, so an allocator keeps its colour from chart to chart.
COLOURS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c",
           "mimalloc": "#9467bd", "rseqmalloc": "#d62728"}
SPARE_COLOURS = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


class Run:
    def __init__(self, rep, case, alloc, status, fields, wall, other_cpu, command):
        self.rep = rep
        self.case = case
        self.alloc = alloc
        self.status = status  # "ok", or why the run failed
        self.fields = fields  # key -> text, from the result line
        self.wall = wall
        self.other_cpu = other_cpu  # cores used by other processes meanwhile
        self.command = command

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
        self.final = statistics.median(r.value("final_rss_kib") for r in ok) if ok else None
        self.speed_vs_best = self.speed_vs_glibc = None
        self.rss_vs_best = self.rss_vs_glibc = None

    def status(self):
        if self.alloc.problem:
            return "missing"
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
    return human(value, "/s")


def tables(cases, allocators, summaries):
    """Two markdown tables: speed, then peak RSS."""
    head = "| case | " + " | ".join(a.label for a in allocators) + " |"
    rule = "|---|" + "---|" * len(allocators)
    speed = ["Speed: median ops/s (fragmentation: seconds), then (ratio to the best "
             "peer, ratio to glibc); a ratio > 1 is faster.", "", head, rule]
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


def write_raw_csv(path, runs):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rep", "workload", "threads", "size", "allocator", "status", "wall_s",
                    "other_cpu"] + RAW_FIELDS + ["command"])
        for r in runs:
            w.writerow([r.rep, r.case.workload.name, r.case.threads, r.case.size or "",
                        r.alloc.name, r.status, "%.3f" % r.wall, r.other_cpu]
                       + [r.fields.get(k, "") for k in RAW_FIELDS] + [" ".join(r.command)])


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
                w.writerow([case.workload.name, case.threads, case.size or "", a.name,
                            s.status(), s.ok, len(s.failed), case.workload.metric,
                            int(case.workload.higher), num(s.metric), num(s.speed_vs_best, "%.4f"),
                            num(s.speed_vs_glibc, "%.4f"), num(s.peak, "%.0f"),
                            num(s.rss_vs_best, "%.4f"), num(s.rss_vs_glibc, "%.4f"),
                            num(s.final, "%.0f")])


CHART_MIN, CHART_MAX = 1 / 64, 8  # ratios outside are drawn at the edge
RSS_CHART_MIN = 1 / 8  # peers are >= 1 by definition; leave room for ours


def _write_dat(path, cases, allocators, summaries, attr):
    def clip(v):
        return min(max(v, low * 1.001), CHART_MAX * 0.999)

    low = RSS_CHART_MIN if attr.startswith("rss") else CHART_MIN
    with open(path, "w") as f:
        f.write("case " + " ".join('"%s%s"' % (a.label, " (missing)" if a.problem else "")
                                   for a in allocators) + "\n")
        for ci, case in enumerate(cases):
            values = [getattr(summaries[(ci, a.name)], attr) for a in allocators]
            f.write('"%s" ' % case.label
                    + " ".join("?" if v is None else "%.4f" % clip(v) for v in values) + "\n")


def chart(out, cases, allocators, summaries, title):
    """Draws out/chart.png with gnuplot; returns its path, or None (with the
    reason) when it could not."""
    if shutil.which("gnuplot") is None:
        return None, "gnuplot not found (tools/setup.sh installs gnuplot-nox)"
    _write_dat(os.path.join(out, "speed.dat"), cases, allocators, summaries, "speed_vs_best")
    _write_dat(os.path.join(out, "rss.dat"), cases, allocators, summaries, "rss_vs_best")
    spare = iter(SPARE_COLOURS * 4)
    colours = " ".join(COLOURS.get(a.name) or next(spare) for a in allocators)
    width = max(1000, 60 + len(cases) * (12 * len(allocators) + 14))
    title = title.replace('"', "'")  # it lands in a gnuplot string
    missing = [a.label for a in allocators if a.problem]
    if missing:  # gnuplot drops an all-empty column from the key as well
        title += " - missing: " + ", ".join(missing)
    script = """
set terminal pngcairo size {width},1000 font "DejaVu Sans,10" noenhanced
set output "chart.png"
set datafile missing "?"
set multiplot layout 2,1 title "{title}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set xtics rotate by 30 right scale 0 font ",9"
set logscale y 2
set yrange [{ymin}:{ymax}]
set ytics ("1/64" 1./64, "1/32" 1./32, "1/16" 1./16, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8)
set grid ytics
set key tmargin center horizontal font ",10"
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb "black" front
set bmargin 7
colours = "{colours}"
set title "Speed relative to the best peer (higher is faster; 1 = best of the peers; clipped to 1/64..8)"
plot for [i=2:{ncol}] "speed.dat" using i:xtic(1) title columnheader(i) lc rgb word(colours, i-1)
set yrange [{rss_min}:{ymax}]
set title "Peak RSS relative to the best peer (lower is smaller; 1 = smallest of the peers; clipped to 1/8..8)"
plot for [i=2:{ncol}] "rss.dat" using i:xtic(1) title columnheader(i) lc rgb word(colours, i-1)
unset multiplot
""".format(width=width, title=title, ymin=CHART_MIN, ymax=CHART_MAX,
                           rss_min=RSS_CHART_MIN, colours=colours, ncol=len(allocators) + 1)
    with open(os.path.join(out, "chart.gp"), "w") as f:
        f.write(script)
    proc = subprocess.run(["gnuplot", "chart.gp"], cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, "gnuplot failed: " + proc.stderr.strip()[-500:]
    return os.path.join(out, "chart.png"), None
