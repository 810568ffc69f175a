"""``python -m fastsel bench``: fastsel against the stdlib (and uvloop), measured.

    python -m fastsel bench [--quick | --full] [--echo] [--impl stdlib,fastsel[,uvloop]]
                            [--selector CLASS] [--malloc SETTINGS]
                            [--json PATH] [--plot PATH] [--cases PATTERN]

Runs, in one session, the micro-benchmarks (zero-timeout waits; epoll
control calls; selector operations), the wait-scaling measurement (10**2 ..
10**5 watched fds, as far as RLIMIT_NOFILE allows), memory per registration,
system calls per modify (with strace), and an asyncio echo server under load
with the split of its CPU time (kernel / Python / selector), for each
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
from typing import Any, Dict, List, Optional, TextIO

USAGE_EPILOG = """\
cases (for --cases: comma-separated substrings or globs, case-insensitive):
  wait/select/1 wait/select/100 wait/select/1000 (also wait/poll/..., wait/epoll/...),
  wait/epoll/100-1 wait/epoll/1000-1000, ctl/epoll/register ctl/epoll/modify
  ctl/epoll/unregister, selector/register+unregister selector/modify-events
  selector/modify-data selector/select/100-1 selector/select/1000-1000
  selector/get_map-get selector/get_key selector/construct-close, scaling, memory,
  syscalls/modify-data syscalls/modify-events,
  echo/protocol/1KiB/default echo/protocol/64KiB/mmap+trim echo/sock/1KiB/... (one per
  server style, message size and --malloc setting)
malloc settings (the echo server's environment; glibc only):
  default         glibc's defaults
  mmap-threshold  MALLOC_MMAP_THRESHOLD_=1048576
  mmap+trim       MALLOC_MMAP_THRESHOLD_=1048576 MALLOC_TRIM_THRESHOLD_=16777216
examples:
  python -m fastsel bench --quick
  python -m fastsel bench --echo --full
  python -m fastsel bench --cases 'wait/epoll,scaling' --json out.json
  python -m fastsel bench --selector PollSelector --cases selector/
"""

SELECTOR_CLASSES = ("DefaultSelector", "EpollSelector", "PollSelector", "SelectSelector",
                    "KqueueSelector", "DevpollSelector")


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
    p.add_argument("--echo", action="store_true",
                   help="only the asyncio echo cases (with the mode's settings)")
    p.add_argument("--impl", default="stdlib,fastsel,uvloop",
                   help="implementations, comma-separated (default: %(default)s; "
                        "uvloop only for the asyncio case, and only when importable)")
    p.add_argument("--selector", default="DefaultSelector", choices=SELECTOR_CLASSES,
                   metavar="CLASS", help="the selector class of the selector/, scaling, "
                   "memory and syscalls cases (default: %(default)s)")
    p.add_argument("--malloc", default="", metavar="SETTINGS",
                   help="the echo server's malloc settings, comma-separated (see below; "
                        "default: default,mmap+trim with --quick, all three otherwise)")
    p.add_argument("--json", default="fastsel-bench.json", metavar="PATH",
                   help="raw results (default: %(default)s; '' for none)")
    p.add_argument("--plot", default="fastsel-bench.png", metavar="PATH",
                   help="scaling figure, when matplotlib is importable "
                        "(default: %(default)s; '' for none)")
    p.add_argument("--cases", default="", metavar="PATTERN",
                   help="only the cases whose names match (see below)")
    p.add_argument("--repeat", type=int, help="timed runs per implementation (override)")
    p.add_argument("--min-time", type=float, help="seconds per timed run (override)")
    p.add_argument("--echo-sample", type=int, metavar="N",
                   help="time every N-th select() of the echo server (default: 1, all)")
    p.add_argument("--no-cc", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Run:
    """One benchmark session: its settings, what it found, and its output."""

    def __init__(self, args: argparse.Namespace, argv: Optional[List[str]]) -> None:
        from . import cases, runner
        self.args = args
        self.out: TextIO = sys.stdout
        self.notes: List[str] = []
        self.t_start = time.perf_counter()
        mode = ("smoke" if args.smoke else "quick" if args.quick else
                "full" if args.full else "default")
        s = self.s = runner.settings_for(mode)
        if args.repeat:
            s.repeat = max(1, args.repeat)
        if args.min_time:
            s.min_time = args.min_time
        if args.echo_sample:
            s.echo_sample_every = max(1, args.echo_sample)
        pats = [x for x in args.cases.split(",") if x.strip()] or None
        self.patterns = ["echo/"] if args.echo and not pats else pats
        if args.echo and pats:
            self.patterns = [p for p in pats if "echo" in p.lower()] or ["echo/"]
        runner.NO_CC = args.no_cc
        cases.SELECTOR_CLASS = args.selector
        self.fd_limit = runner.raise_nofile()
        self.machine = runner.machine_info()
        self.data: Dict[str, Any] = {
            "schema": "fastsel-bench/1",
            "command": ["python", "-m", "fastsel", "bench"] + list(
                sys.argv[2:] if argv is None else argv),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": self.machine, "fd_limit": self.fd_limit, "notes": self.notes,
            "micro": [], "scaling": None, "memory": None, "syscalls": [], "echo": [],
        }

    def want(self, name: str) -> bool:
        from . import cases
        return cases.matches(name, self.patterns)


def _impls(args: argparse.Namespace, notes: List[str]) -> Optional[List[str]]:
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impls:
        if i not in ("stdlib", "fastsel", "uvloop"):
            print(f"python -m fastsel bench: unknown implementation {i!r} "
                  "(choose from stdlib, fastsel, uvloop)", file=sys.stderr)
            return None
    if "uvloop" in impls:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            impls.remove("uvloop")
            notes.append("uvloop is not importable: the asyncio case runs without it")
    import fastsel
    if fastsel.implementation != "c" and "fastsel" in impls:
        notes.append(f"fastsel serves this Python's own select/selectors "
                     f"(implementation {fastsel.implementation!r}, docs/platforms.md): "
                     "its columns time the stdlib against itself")
    return impls


def _mallocs(args: argparse.Namespace, mode: str) -> Optional[List[str]]:
    from .echo import MALLOC_SETTINGS
    if not args.malloc:
        if mode in ("smoke", "quick"):
            return ["default", "mmap+trim"]
        return list(MALLOC_SETTINGS)
    wanted = [m.strip() for m in args.malloc.split(",") if m.strip()]
    for m in wanted:
        if m not in MALLOC_SETTINGS:
            print(f"python -m fastsel bench: unknown malloc setting {m!r} (choose from "
                  f"{', '.join(MALLOC_SETTINGS)})", file=sys.stderr)
            return None
    return wanted


def _header(run: Run, impls: List[str], mallocs: List[str]) -> None:
    s, m, lim_info, out = run.s, run.machine, run.fd_limit, run.out
    run.data["settings"] = {
        "mode": s.mode, "repeat": s.repeat, "min_time_s": s.min_time,
        "warmup_runs": s.warmup, "impls": impls, "selector": run.args.selector,
        "echo": {"conns": s.echo_conns, "warmup_s": s.echo_warmup,
                 "duration_s": s.echo_duration, "repeat": s.echo_repeat,
                 "sample_every": s.echo_sample_every, "mallocs": mallocs}}
    print(f"fastsel {m['fastsel_version']} benchmark ({s.mode}): Python "
          f"{m['python']} on {m['cpu_model']}, {m['cores']} cores, "
          f"{m['system']} {m['kernel']}", file=out)
    print(f"method: medians of {s.repeat} interleaved timed runs of >= "
          f"{s.min_time * 1000:g} ms each, after warm-up; implementations: "
          f"{', '.join(impls)}", file=out)
    lim = (f"RLIMIT_NOFILE: soft {lim_info['soft_before']} -> {lim_info['soft']} "
           f"(hard {lim_info['hard']}")
    lim += ", which this process cannot raise)" if lim_info.get("hard_raisable") is False \
        else ")"
    print(lim, file=out)


def _micro_and_scaling(run: Run, select_impls: List[str]) -> None:
    from . import cases, report, runner
    s, out, data = run.s, run.out, run.data
    micro = [c for c in cases.micro_cases(run.notes) if run.want(c.name)]
    want_scaling = run.want("scaling") and bool(select_impls)
    floor_exe = None
    if want_scaling or any(c.floor for c in micro):
        floor_exe, why = runner.build_helper("floor")
        data["floor_build"] = why
        if floor_exe is None:
            run.notes.append(f"C floor skipped: {why}")
    if micro and select_impls:
        data["micro"] = cases.run_micro(micro, select_impls, s, floor_exe)
        print(file=out)
        report.print_micro(data["micro"], select_impls, out)
        out.flush()
    if want_scaling:
        sizes, cap, note = cases.scaling_sizes(s, run.fd_limit["soft"])
        if note:
            if run.fd_limit.get("hard_raisable") is False:
                note += f" (the hard limit {run.fd_limit['hard']} cannot be raised here)"
            run.fd_limit["note"] = note
        data["scaling"] = cases.run_scaling(select_impls, s, sizes, floor_exe)
        report.print_scaling(data["scaling"], out)
        if note:
            print(f"  {note}", file=out)
        out.flush()


def _extras(run: Run, select_impls: List[str]) -> None:
    from . import cases, extras, report
    if not (select_impls and cases.HAS_SELECTORS):
        return
    if run.want("memory"):
        run.data["memory"] = extras.run_memory(select_impls)
        if run.data["memory"] is None:
            run.notes.append("memory: tracemalloc is absent or already tracing; not measured")
    if run.want("syscalls/modify-data") or run.want("syscalls/modify-events"):
        n = 1000 if run.s.mode == "smoke" else 10000
        res = extras.run_syscalls(select_impls, n, run.notes)
        run.data["syscalls"] = [r for r in res if run.want(r["name"])]
    report.print_extras(run.data, run.out)
    run.out.flush()


def _echo(run: Run, impls: List[str], mallocs: List[str]) -> None:
    from . import cases, report, runner
    variants = [v for v in cases.echo_variants(run.s, cases.echo_mallocs(mallocs, run.notes))
                if run.want(cases.echo_name(v))]
    loop_impls = [i for i in impls if i != "fastsel" or cases.HAS_SELECTORS]
    if not (variants and loop_impls):
        return
    loadgen, why = runner.build_helper("loadgen")
    if loadgen is None:
        client = "Python client processes (fastsel/_bench/echo.py client)"
        run.notes.append(f"echo: C load generator unavailable ({why}); the Python client "
                         "may be the bottleneck")
    else:
        client = "C load generator (loadgen.c) in its own process"
    run.data["echo_client"] = client
    run.data["echo"] = cases.run_echo_cases(variants, loop_impls, run.s, loadgen, run.notes)
    report.print_echo(run.data["echo"], loop_impls, client, run.out)
    run.out.flush()


def _finish(run: Run) -> None:
    from . import report
    from .runner import progress
    data, out, args = run.data, run.out, run.args
    data["summary"] = report.summary(data)
    data["elapsed_s"] = time.perf_counter() - run.t_start
    if hasattr(os, "getloadavg"):
        run.machine["loadavg_end"] = list(os.getloadavg())
    if data["summary"]:
        print("\nsummary:", file=out)
        for line in data["summary"]:
            print(f"  {line}", file=out)
    for n in run.notes:
        print(f"note: {n}", file=out)
    if args.json:
        report.write_json(data, args.json)
        print(f"raw results: {args.json}", file=out)
    if args.plot:
        why_not = report.plot(data, args.plot)
        print(f"plot: {why_not or args.plot}", file=out)
    print(f"elapsed: {time.perf_counter() - run.t_start:.1f} s", file=out)
    progress(f"done in {time.perf_counter() - run.t_start:.1f} s")


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    notes: List[str] = []
    impls = _impls(args, notes)
    mode = ("smoke" if args.smoke else "quick" if args.quick else
            "full" if args.full else "default")
    mallocs = _mallocs(args, mode)
    if impls is None or mallocs is None:
        return 2
    import fastsel
    import selectors
    if not (hasattr(selectors, args.selector) and hasattr(fastsel, args.selector)):
        print(f"python -m fastsel bench: {args.selector} is not available here",
              file=sys.stderr)
        return 2
    run = Run(args, argv)
    run.notes.extend(notes)
    select_impls = [i for i in impls if i in ("stdlib", "fastsel")]
    _header(run, impls, mallocs)
    _micro_and_scaling(run, select_impls)
    _extras(run, select_impls)
    _echo(run, impls, mallocs)
    _finish(run)
    return 0
