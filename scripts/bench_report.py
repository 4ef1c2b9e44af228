#!/usr/bin/env python3
"""Turns a scripts/bench results file (JSON lines) into the comparison table
and, with --svg, the echo picture (gnuplot). Re-renders any earlier run:

    scripts/bench_report.py bench/results/20250101-120000.jsonl
    scripts/bench_report.py RESULTS --svg out.svg --data DIR   (DIR has the cdf-*.dat files)
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

CORING_REF = "coring-io_uring"


def load(path):
    run, rows = {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "run" in d:
                run = d
            else:
                rows.append(d)
    return run, rows


def is_echo(d):
    return "conns" in d and "msgs_per_s" in d


def fmt(v, digits=2):
    if v is None:
        return "-"
    if abs(v) >= 100000:
        return f"{v:.3g}" if abs(v) >= 1e7 else f"{v:.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def figure_rows(rows):
    """One row per non-echo figure: name, value, unit, allocs/op, baseline, its value, ratio."""
    out = []
    for d in rows:
        if is_echo(d):
            continue
        name = d.get("bench", "?")
        ratio = d.get("ratio")
        if "ns_per_op" in d:
            out.append((name, d["ns_per_op"], "ns/op", d.get("allocs_per_op"),
                        d.get("baseline"), d.get("baseline_ns_per_op"), ratio))
        elif "p50_ns" in d:
            extra = f"p99 {fmt(d.get('p99_ns'))}"
            out.append((name, d["p50_ns"], "ns p50", None, d.get("baseline"),
                        d.get("baseline_p50_ns"), ratio, extra))
        elif "value" in d:
            out.append((name, d["value"], d.get("unit", ""), d.get("allocs_per_op"),
                        d.get("baseline"), d.get("baseline_value"), ratio))
    return out


def print_figures(rows):
    figs = figure_rows(rows)
    if not figs:
        print("(no bench target produced figures)")
        return
    w = max(34, max(len(f[0]) for f in figs))
    wb = max(12, max(len(f[4] or "-") for f in figs))
    print(f"{'figure':<{w}} {'value':>10} {'unit':<8} {'allocs/op':>9}  {'baseline':<{wb}} "
          f"{'baseline':>10} {'ratio':>7}")
    for f in figs:
        name, value, unit, allocs, base, base_value, ratio = f[:7]
        line = (f"{name:<{w}} {fmt(value):>10} {unit:<8} {fmt(allocs, 3):>9}  {base or '-':<{wb}} "
                f"{fmt(base_value):>10} {(fmt(ratio) + 'x') if ratio is not None else '-':>7}")
        if len(f) > 7:
            line += "  " + f[7]
        print(line)


def echo_groups(rows):
    """(size, conns) -> one row per engine: its best repetition by throughput."""
    best = {}
    for d in rows:
        if is_echo(d):
            key = (d["msg_size"], d["conns"], d["engine"])
            if key not in best or d["msgs_per_s"] > best[key]["msgs_per_s"]:
                best[key] = d
    groups = {}
    for (size, conns, _), d in best.items():
        groups.setdefault((size, conns), []).append(d)
    return groups


def echo_reps(rows):
    return max((d.get("rep", 1) for d in rows if is_echo(d)), default=1)


def print_echo(rows):
    groups = echo_groups(rows)
    if not groups:
        print("(no echo runs)")
        return
    engines = []
    for d in rows:
        if is_echo(d) and d["engine"] not in engines:
            engines.append(d["engine"])
    ref = CORING_REF if CORING_REF in engines else engines[0]
    reps = echo_reps(rows)
    print(f"echo round trips, one server thread on one CPU, the load generator on the other"
          f"{f', best of {reps} runs' if reps > 1 else ''}; ratios are {ref} / this engine")
    we = max(14, max(len(e) for e in engines))
    print(f"{'size':>6} {'conns':>5} {'engine':<{we}} {'msgs/s':>10} {'p50 us':>8} {'p90 us':>8} "
          f"{'p99 us':>8} {'p999 us':>8} {'cpu ns/msg':>10} {'x msgs/s':>9} {'x p99':>7} "
          f"{'x cpu/msg':>9}")
    for (size, conns) in sorted(groups):
        g = groups[(size, conns)]
        r = next((d for d in g if d["engine"] == ref), None)
        for d in sorted(g, key=lambda d: engines.index(d["engine"])):
            def ratio(key):
                if not r or not d.get(key) or r.get(key) is None:
                    return "-"
                return f"{r[key] / d[key]:.2f}"
            cpu = d.get("server_cpu_ns_per_msg")
            print(f"{size:>6} {conns:>5} {d['engine']:<{we}} {d['msgs_per_s']:>10.0f} "
                  f"{d['p50_ns'] / 1e3:>8.1f} {d['p90_ns'] / 1e3:>8.1f} {d['p99_ns'] / 1e3:>8.1f} "
                  f"{d['p999_ns'] / 1e3:>8.1f} {fmt(cpu):>10} {ratio('msgs_per_s'):>9} "
                  f"{ratio('p99_ns'):>7} {ratio('server_cpu_ns_per_msg'):>9}")


def nines(p):
    """The 'number of nines' of a quantile: 0.9 -> 1, 0.99 -> 2; the latency plot's y axis."""
    return -math.log10(1 - p) if p < 1 else None


def render_svg(rows, svg, data_dir):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("picture: gnuplot is not installed (CORING_BENCH_TOOLS=1 scripts/setup installs "
              "gnuplot-nox): no picture")
        return True
    groups = echo_groups(rows)
    if not groups:
        print("picture: no echo runs, no picture")
        return True
    os.makedirs(data_dir, exist_ok=True)
    engines = []
    for d in rows:
        if is_echo(d) and d["engine"] not in engines:
            engines.append(d["engine"])
    sizes = sorted({s for s, _ in groups})
    conns = sorted({c for _, c in groups})
    script = [f'set terminal svg size {360 * (len(conns) + 1)},{380 * len(sizes)} dynamic '
              f'noenhanced font "sans,10" background "white"',
              f'set output "{svg}"',
              f'set multiplot layout {len(sizes)},{len(conns) + 1} '
              f'title "coring echo benchmark: latency distribution and throughput"',
              'set grid', 'set key top left font ",8"']
    for size in sizes:
        for c in conns:
            plots = []
            for e in engines:
                d = next((d for d in groups.get((size, c), []) if d["engine"] == e), None)
                cdf = os.path.join(data_dir, d.get("cdf", f"cdf-{e}-c{c}-s{size}.dat") if d else "-")
                if not d or not os.path.exists(cdf):
                    continue
                # Rewrite as (latency, nines) points, dropping the maximum (infinite nines).
                pts = os.path.join(data_dir, f"nines-{e}-c{c}-s{size}.dat")
                with open(cdf) as f, open(pts, "w") as o:
                    for line in f:
                        p, us = map(float, line.split())
                        n = nines(p)
                        if n is not None and us > 0:
                            o.write(f"{us} {n}\n")
                plots.append(f'"{pts}" using 1:2 with linespoints pt 7 ps 0.3 title "{e}"')
            script += [f'set title "{size} B, {c} connection{"s" if c > 1 else ""}: '
                       f'round-trip latency"',
                       'set logscale x', 'set xlabel "microseconds"', 'set ylabel "percentile"',
                       'set ytics ("0" 0, "50" 0.30103, "90" 1, "99" 2, "99.9" 3, "99.99" 4)',
                       'set yrange [0:4.2]']
            script.append("plot " + ", ".join(plots) if plots else
                          'set label 1 "no data" at graph 0.5,0.5; plot NaN notitle; unset label 1')
        tp = []
        for e in engines:
            pts = os.path.join(data_dir, f"tput-{e}-s{size}.dat")
            with open(pts, "w") as o:
                for c in conns:
                    d = next((d for d in groups.get((size, c), []) if d["engine"] == e), None)
                    if d:
                        o.write(f"{c} {d['msgs_per_s'] / 1000}\n")
            tp.append(f'"{pts}" using 1:2 with linespoints pt 7 title "{e}"')
        script += [f'set title "{size} B: throughput per connection count"',
                   'set logscale x', 'set xlabel "connections"', 'set ylabel "thousand msgs/s"',
                   'set ytics auto', 'set autoscale y', 'set yrange [0:*]',
                   f'set xrange [{min(conns) / 2}:{max(conns) * 2}]',
                   "plot " + ", ".join(tp), 'unset xrange']
    script.append("unset multiplot")
    gp = os.path.join(data_dir, "echo.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run([gnuplot, gp], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"picture: gnuplot failed: {r.stderr.strip()[:500]}")
        return False
    print(f"picture: {svg}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--svg", help="write the echo picture here")
    ap.add_argument("--data", help="folder of the run's cdf-*.dat files (default: RESULTS without .jsonl)")
    a = ap.parse_args()
    run, rows = load(a.results)
    if run:
        print(f"coring benchmarks, run {run.get('run')}: commit {run.get('commit')}, kernel "
              f"{run.get('kernel')}, {run.get('cpus')} x {run.get('cpu')}"
              f"{', quick' if run.get('quick') else ''}")
        print()
    print_figures(rows)
    print()
    print_echo(rows)
    ok = True
    if a.svg:
        data = a.data or os.path.splitext(a.results)[0]
        print()
        ok = render_svg(rows, a.svg, data)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
