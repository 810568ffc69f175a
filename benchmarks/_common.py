"""Timing helpers shared by fastsel's benchmark scripts.

Method (see docs/performance.md): each case is a set of zero-argument
callables, one per implementation, doing the same work.  The loop count is
calibrated once per case so that one timed run lasts at least ``min_time``;
then the implementations are run interleaved (A, B, A, B, ...) ``repeat``
times so that noise hits them alike, and the medians are compared.

    from _common import Case, run_cases, print_table
    results = run_cases([Case("select 1 fd", {"stdlib": f1, "fastsel": f2})])
    print_table(results, baseline="stdlib", contender="fastsel")
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

Fn = Callable[[], object]
clock = time.perf_counter


@dataclass
class Case:
    """One benchmark case: the same operation in several implementations."""

    name: str
    impls: Dict[str, Fn]
    note: str = ""


@dataclass
class Result:
    name: str
    loops: int
    # per-call seconds of every timed run, per implementation
    samples: Dict[str, List[float]] = field(default_factory=dict)
    note: str = ""

    def median(self, impl: str) -> float:
        return statistics.median(self.samples[impl])

    def spread(self, impl: str) -> tuple:
        return min(self.samples[impl]), max(self.samples[impl])

    def ratio(self, baseline: str, contender: str) -> Optional[float]:
        if baseline not in self.samples or contender not in self.samples:
            return None
        return self.median(baseline) / self.median(contender)


def time_loops(fn: Fn, loops: int) -> float:
    """Seconds for ``loops`` calls of ``fn`` (garbage collector off)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        it = range(loops)
        t0 = clock()
        for _ in it:
            fn()
        return clock() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(fn: Fn, min_time: float, max_loops: int = 10 ** 8) -> int:
    """Smallest power-of-two-ish loop count whose run lasts >= min_time."""
    loops = 1
    while loops < max_loops:
        elapsed = time_loops(fn, loops)
        if elapsed >= min_time:
            return loops
        # jump close to the target once there is a usable measurement
        if elapsed > min_time / 100:
            loops = max(loops * 2, int(loops * min_time * 1.2 / elapsed))
        else:
            loops *= 10
    return max_loops


def run_case(case: Case, repeat: int, min_time: float, warmup: int = 1) -> Result:
    """Calibrate on the slowest implementation, then time interleaved runs."""
    loops = max(calibrate(fn, min_time) for fn in case.impls.values())
    for fn in case.impls.values():
        for _ in range(warmup):
            time_loops(fn, max(1, loops // 4))
    result = Result(case.name, loops, {name: [] for name in case.impls}, case.note)
    names = list(case.impls)
    for i in range(repeat):
        # alternate the order too, so neither always runs first
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            result.samples[name].append(time_loops(case.impls[name], loops) / loops)
    return result


def run_cases(cases: Sequence[Case], repeat: int = 11, min_time: float = 0.02,
              progress: bool = True) -> List[Result]:
    results = []
    for case in cases:
        if progress:
            print(f"  timing {case.name} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, repeat, min_time))
    return results


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def print_table(results: Sequence[Result], baseline: str = "stdlib",
                contender: str = "fastsel", out=None) -> None:
    """Median per call for each implementation and the ratio baseline/contender."""
    out = out or sys.stdout
    header = ["case", f"{baseline} median", f"{contender} median",
              f"{baseline}/{contender}", "loops x repeats", "spread (min-max)"]
    rows = []
    for r in results:
        cells = [r.name]
        for impl in (baseline, contender):
            cells.append(fmt_time(r.median(impl)) if impl in r.samples else "n/a")
        ratio = r.ratio(baseline, contender)
        cells.append(f"{ratio:.2f}x" if ratio is not None else "n/a")
        reps = len(next(iter(r.samples.values()))) if r.samples else 0
        cells.append(f"{r.loops} x {reps}")
        spreads = []
        for impl in (baseline, contender):
            if impl in r.samples:
                lo, hi = r.spread(impl)
                spreads.append(f"{impl} {fmt_time(lo)}-{fmt_time(hi)}")
        cells.append("; ".join(spreads))
        rows.append(cells)
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)), file=out)
    for r in results:
        if r.note:
            print(f"note: {r.name}: {r.note}", file=out)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=11,
                        help="timed runs per implementation (median taken)")
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds one timed run lasts at least (calibrated)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 3 repeats of >= 2 ms")


def settings(args: argparse.Namespace) -> tuple:
    if args.quick:
        return 3, 0.002
    return args.repeat, args.min_time


def environment() -> str:
    import platform
    return (f"python {platform.python_version()} ({sys.executable}), "
            f"{platform.system()} {platform.release()} {platform.machine()}")
