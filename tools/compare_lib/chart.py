"""The chart of tools/compare (gnuplot): speed above, peak RSS below, each
as the ratio to the best peer, one box per case and allocator, log scale.

A ratio outside the axis is drawn to the axis edge and labelled with its
value ("▲ 12x" at the top, "▼ 1/80" at the bottom), so a clipped box is
never read as the edge value. Boxes are placed by explicit x positions
rather than gnuplot's histogram style, so that each label can sit on its
box.
"""

import os
import shutil
import subprocess
import textwrap

# Fixed colours, so an allocator keeps its colour from chart to chart.
COLOURS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c",
           "mimalloc": "#9467bd", "rseqmalloc": "#d62728"}
SPARE_COLOURS = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79"]

SPEED_RANGE = (1 / 64, 8)
RSS_RANGE = (1 / 8, 8)  # peers are >= 1 by definition; leave room for ours
# The axis reaches this much beyond each edge, so gnuplot still draws the
# edge tics (it drops a tic that rounding puts a hair outside the range).
_PAD = 1.03
_CHAR_PX = 7.5  # average width of a character of the 10-point title font
_BOX_SPAN = 0.84  # share of a case's slot taken by its boxes


def _number(x):
    return "%.0f" % x if x >= 100 else "%.3g" % x


def ratio_text(value):
    """4.0 -> '4x', 12.34 -> '12.3x', 1234.5 -> '1234x', 0.0123 -> '1/81'."""
    if value >= 1:
        return _number(value) + "x"
    return "1/" + _number(1 / value)


def _fraction(value):
    return "%g" % value if value >= 1 else "1/%g" % (1 / value)


def ytics(low, high):
    """Every power of two from LOW to HIGH, named as the title names them."""
    tics, v = [], low
    while v <= high * 1.0001:
        tics.append('"%s" %r' % (_fraction(v), v))
        v *= 2
    return "set ytics (%s)" % ", ".join(tics)


def _positions(n_cases, n_allocs):
    width = _BOX_SPAN / max(n_allocs, 1)
    return width, [[ci + (ai - (n_allocs - 1) / 2) * width for ai in range(n_allocs)]
                   for ci in range(n_cases)]


def _panel(path, cases, allocators, summaries, attr, low, high):
    """Writes one data block per allocator (x, clipped ratio) to PATH.
    Returns (indexes of the allocators that have data, gnuplot label
    commands for the clipped boxes)."""
    _, xs = _positions(len(cases), len(allocators))
    present, labels = [], []
    with open(path, "w") as f:
        for ai, a in enumerate(allocators):
            rows = []
            for ci in range(len(cases)):
                v = getattr(summaries[(ci, a.name)], attr)
                if v is None or v <= 0:
                    continue
                x = xs[ci][ai]
                # The labels are turned by 90 degrees to fit on a box, so
                # the right- and left-pointing triangles show as up and down.
                if v > high:
                    labels.append('set label "▶ %s" at %.4f, %r rotate by 90 right offset 0,-0.4 '
                                  'font ",8" front' % (ratio_text(v), x, high))
                elif v < low:
                    labels.append('set label "◀ %s" at %.4f, %r rotate by 90 left offset 0,0.4 '
                                  'font ",8" front' % (ratio_text(v), x, low))
                rows.append("%.4f %.6g" % (x, min(max(v, low), high)))
            if rows:
                present.append(ai)
            # Every allocator gets a block, empty or not, so that block i is
            # allocator i.
            f.write("\n".join(rows) + "\n\n\n")
    return present, labels


def wrap_title(title, width_px):
    lines = textwrap.wrap(title.replace('"', "'"), max(40, int(width_px / _CHAR_PX)),
                          break_on_hyphens=False)
    return "\\n".join(lines)


def script(cases, allocators, title, width, speed, rss):
    """The gnuplot script; SPEED and RSS are _panel's results."""
    spare = iter(SPARE_COLOURS * 4)
    colours = [COLOURS.get(a.name) or next(spare) for a in allocators]
    box, _ = _positions(len(cases), len(allocators))
    xtics = ", ".join('"%s" %d' % (c.label.replace('"', "'"), i) for i, c in enumerate(cases))
    lines = [
        'set terminal pngcairo size %d,1000 font "DejaVu Sans,10" noenhanced' % width,
        "set encoding utf8",
        'set output "chart.png"',
        'set multiplot layout 2,1 title "%s"' % wrap_title(title, width),
        "set style fill solid 0.9 border -1",
        "set boxwidth %.4f absolute" % box,
        "set xrange [-0.6:%.1f]" % (len(cases) - 0.4),
        'set xtics rotate by 30 right scale 0 font ",9" (%s)' % xtics,
        "set logscale y 2",
        "set grid ytics",
        'set key tmargin center horizontal font ",10"',
        "set bmargin 7",
    ]
    panels = [("speed.dat", SPEED_RANGE, speed, "Speed relative to the best peer (higher is "
               "faster; 1 = best of the peers; clipped to %s..%s)"),
              ("rss.dat", RSS_RANGE, rss, "Peak RSS relative to the best peer (lower is "
               "smaller; 1 = smallest of the peers; clipped to %s..%s)")]
    for data, (low, high), (present, labels), heading in panels:
        lines += ["unset label",
                  "set yrange [%r:%r]" % (low / _PAD, high * _PAD),
                  ytics(low, high),
                  'set title "%s"' % (heading % (_fraction(low), _fraction(high))),
                  'set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 '
                  'lc rgb "black" front'] + labels
        plots = ['"%s" index %d using 1:2 with boxes lc rgb "%s" title "%s"'
                 % (data, ai, colours[ai], allocators[ai].label.replace('"', "'"))
                 for ai in present]
        lines.append("plot " + ", \\\n     ".join(plots))
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def chart(out, cases, allocators, summaries, title):
    """Draws OUT/chart.png; returns (its path, None) or (None, why not)."""
    if shutil.which("gnuplot") is None:
        return None, "gnuplot not found (tools/setup.sh installs gnuplot-nox)"
    speed = _panel(os.path.join(out, "speed.dat"), cases, allocators, summaries,
                   "speed_vs_best", *SPEED_RANGE)
    rss = _panel(os.path.join(out, "rss.dat"), cases, allocators, summaries,
                 "rss_vs_best", *RSS_RANGE)
    if not speed[0] or not rss[0]:
        return None, "no ratios to draw (no peer finished a run)"
    missing = [a.label for i, a in enumerate(allocators) if i not in speed[0]]
    if missing:  # an allocator without data has no box, hence no key entry
        title += " - no results: " + ", ".join(missing)
    width = max(1000, 60 + len(cases) * (12 * len(allocators) + 14))
    with open(os.path.join(out, "chart.gp"), "w") as f:
        f.write(script(cases, allocators, title, width, speed, rss))
    proc = subprocess.run(["gnuplot", "chart.gp"], cwd=out, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, "gnuplot failed: " + proc.stderr.strip()[-500:]
    return os.path.join(out, "chart.png"), None
