"""``python -m fastsel bench``: fastsel against the stdlib (and uvloop), measured.

    python -m fastsel bench [--quick | --full] [--impl stdlib,fastsel[,uvloop]]
                            [--json PATH] [--plot PATH] [--cases PATTERN]

Runs, in one session, the micro-benchmarks (zero-timeout waits; selector
operations), the wait-scaling measurement (10**2 .. 10**5 watched fds, as far
as RLIMIT_NOFILE allows) and an asyncio echo server under load, for each
implementation, interleaved; prints the tables on stdout (progress on
stderr), writes every sample with a description of the machine as JSON, and
the scaling figure as a PNG when matplotlib is importable.  See
docs/performance.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional

USAGE_EPILOG = """\
cases (for --cases: comma-separated substrings or globs, case-insensitive):
  wait/select/1 wait/select/100 wait/select/1000 (also wait/poll/..., wait/epoll/...),
  selector/register+unregister selector/modify-events selector/modify-data
  selector/select/100-1 selector/select/1000-1000 selector/get_map-get
  selector/construct-close, scaling, echo/protocol/1KiB echo/protocol/64KiB
  echo/sock/1KiB echo/sock/64KiB
examples:
  python -m fastsel bench --quick
  python -m fastsel bench --cases 'wait/epoll,scaling' --json out.json
"""


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fastsel bench",
        description="Measure fastsel against the stdlib select/selectors (and uvloop "
                    "for asyncio), interleaved in one run.",
        epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="short run (under a minute)")
    g.add_argument("--full", action="store_true", help="long run: more repeats, longer runs")
    g.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", default="stdlib,fastsel,uvloop",
                   help="implementations, comma-separated (default: %(default)s; "
                        "uvloop only for the asyncio case, and only when importable)")
    p.add_argument("--json", default="fastsel-bench.json", metavar="PATH",
                   help="raw results (default: %(default)s; '' for none)")
    p.add_argument("--plot", default="fastsel-bench.png", metavar="PATH",
                   help="scaling figure, when matplotlib is importable "
                        "(default: %(default)s; '' for none)")
    p.add_argument("--cases", default="", metavar="PATTERN",
                   help="only the cases whose names match (see below)")
    p.add_argument("--repeat", type=int, help="timed runs per implementation (override)")
    p.add_argument("--min-time", type=float, help="seconds per timed run (override)")
    p.add_argument("--no-cc", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    t_start = time.perf_counter()
    from . import cases, report, runner
    from .runner import progress

    mode = "smoke" if args.smoke else "quick" if args.quick else "full" if args.full else "default"
    s = runner.settings_for(mode)
    if args.repeat:
        s.repeat = max(1, args.repeat)
    if args.min_time:
        s.min_time = args.min_time
    patterns = [x for x in args.cases.split(",") if x.strip()] or None
    runner.NO_CC = args.no_cc

    notes: List[str] = []
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impls:
        if i not in ("stdlib", "fastsel", "uvloop"):
            print(f"python -m fastsel bench: unknown implementation {i!r} "
                  "(choose from stdlib, fastsel, uvloop)", file=sys.stderr)
            return 2
    if "uvloop" in impls:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            impls.remove("uvloop")
            notes.append("uvloop is not importable: the asyncio case runs without it")
    select_impls = [i for i in impls if i in ("stdlib", "fastsel")]

    fd_limit = runner.raise_nofile()
    machine = runner.machine_info()
    data: Dict[str, Any] = {
        "schema": "fastsel-bench/1",
        "command": ["python", "-m", "fastsel", "bench"] + list(sys.argv[2:] if argv is None
                                                              else argv),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine,
        "settings": {"mode": s.mode, "repeat": s.repeat, "min_time_s": s.min_time,
                     "warmup_runs": s.warmup, "impls": impls,
                     "echo": {"conns": s.echo_conns, "warmup_s": s.echo_warmup,
                              "duration_s": s.echo_duration, "repeat": s.echo_repeat}},
        "fd_limit": fd_limit, "notes": notes, "micro": [], "scaling": None, "echo": [],
    }
    out = sys.stdout
    print(f"fastsel {machine['fastsel_version']} benchmark ({s.mode}): Python "
          f"{machine['python']} on {machine['cpu_model']}, {machine['cores']} cores, "
          f"{machine['system']} {machine['kernel']}", file=out)
    print(f"method: medians of {s.repeat} interleaved timed runs of >= "
          f"{s.min_time * 1000:g} ms each, after warm-up; implementations: "
          f"{', '.join(impls)}", file=out)
    lim = (f"RLIMIT_NOFILE: soft {fd_limit['soft_before']} -> {fd_limit['soft']} "
           f"(hard {fd_limit['hard']}")
    if fd_limit.get("hard_raisable") is False:
        lim += ", which this process cannot raise)"
    else:
        lim += ")"
    print(lim, file=out)

    want_floor = any(cases.matches(n, patterns) for n in ("scaling", "wait/epoll/1",
                                                          "wait/select/1", "wait/poll/1",
                                                          "selector/select/100-1"))
    floor_exe = None
    if want_floor:
        floor_exe, why = runner.build_helper("floor")
        data["floor_build"] = why
        if floor_exe is None:
            notes.append(f"C floor skipped: {why}")

    # -- micro-benchmarks
    micro = [c for c in cases.micro_cases(notes) if cases.matches(c.name, patterns)]
    if micro and len(select_impls) >= 1:
        data["micro"] = cases.run_micro(micro, select_impls, s, floor_exe)
        print(file=out)
        report.print_micro(data["micro"], select_impls, out)
        out.flush()

    # -- scaling
    if cases.matches("scaling", patterns) and select_impls:
        sizes, cap, note = cases.scaling_sizes(s, fd_limit["soft"])
        if note:
            if fd_limit.get("hard_raisable") is False:
                note += f" (the hard limit {fd_limit['hard']} cannot be raised here)"
            fd_limit["note"] = note
        data["scaling"] = cases.run_scaling(select_impls, s, sizes, floor_exe)
        report.print_scaling(data["scaling"], out)
        if note:
            print(f"  {note}", file=out)
        out.flush()

    # -- asyncio echo
    variants = [(v, size) for v, size in cases.echo_variants(s)
                if cases.matches(f"echo/{v}/{cases.size_label(size).replace(' ', '')}",
                                 patterns)]
    loop_impls = [i for i in impls if i != "fastsel" or cases.HAS_SELECTORS]
    if variants and loop_impls:
        loadgen, why = runner.build_helper("loadgen")
        if loadgen is None:
            client = "Python client processes (fastsel/_bench/echo.py client)"
            notes.append(f"echo: C load generator unavailable ({why}); the Python client "
                         "may be the bottleneck")
        else:
            client = "C load generator (loadgen.c) in its own process"
        data["echo_client"] = client
        data["echo"] = cases.run_echo_cases(variants, loop_impls, s, loadgen, notes)
        report.print_echo(data["echo"], loop_impls, client, out)
        out.flush()

    data["summary"] = report.summary(data)
    data["elapsed_s"] = time.perf_counter() - t_start
    if hasattr(os, "getloadavg"):
        machine["loadavg_end"] = list(os.getloadavg())
    if data["summary"]:
        print("\nsummary:", file=out)
        for line in data["summary"]:
            print(f"  {line}", file=out)
    for n in notes:
        print(f"note: {n}", file=out)
    if args.json:
        report.write_json(data, args.json)
        print(f"raw results: {args.json}", file=out)
    if args.plot:
        why_not = report.plot(data, args.plot)
        if why_not:
            print(f"plot: {why_not}", file=out)
        else:
            print(f"plot: {args.plot}", file=out)
    print(f"elapsed: {time.perf_counter() - t_start:.1f} s", file=out)
    progress(f"done in {time.perf_counter() - t_start:.1f} s")
    return 0
