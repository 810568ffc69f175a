"""Time select() and poll.poll(): the stdlib and fastsel in the same run.

For 1, 100 and 1000 watched descriptors (pipes, both ends watched for
reading, about a tenth of them readable), each implementation waits with
timeout 0 and builds its result.  Runs are interleaved and the medians
compared; the last column is stdlib median / fastsel median (> 1: fastsel
is faster).

    python benchmarks/bench_select_poll.py [--sizes 1,100,1000] [--repeat 11]
                                           [--min-time 0.02] [--quick]

The stdlib's select() refuses fds >= FD_SETSIZE (1024), so every descriptor
used here is below 1024: 1000 fds are 500 pipes, fds 3..1002 or so.
"""
from __future__ import annotations

import argparse
import os
import resource
import select as std_select
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Case, common_arguments, environment, print_table, run_cases, settings  # noqa: E402

import fastsel  # noqa: E402

FD_LIMIT_FOR_SELECT = 1024


class Pipes:
    """``n`` descriptors (n/2 pipes, both ends), ``ready`` of them readable."""

    def __init__(self, n: int, ready: int) -> None:
        self.pairs = []
        while 2 * len(self.pairs) < n:
            self.pairs.append(os.pipe())
        self.fds = [fd for pair in self.pairs for fd in pair][:n]
        if max(self.fds) >= FD_LIMIT_FOR_SELECT:
            raise SystemExit(f"fd {max(self.fds)} >= {FD_LIMIT_FOR_SELECT}: too many files "
                             "already open for the stdlib's select()")
        # make `ready` read ends readable (a read end watched on its own when n == 1)
        readable = [r for r, _ in self.pairs if r in self.fds][:ready]
        for r in readable:
            os.write(self._writer(r), b"x")
        self.ready = readable

    def _writer(self, r: int) -> int:
        for rr, w in self.pairs:
            if rr == r:
                return w
        raise KeyError(r)

    def close(self) -> None:
        for r, w in self.pairs:
            os.close(r)
            os.close(w)


def select_case(p: Pipes, mod) -> object:
    fds = p.fds
    sel = mod.select

    def run() -> object:
        return sel(fds, [], [], 0)
    return run


def poll_case(p: Pipes, mod) -> object:
    poller = mod.poll()
    for fd in p.fds:
        poller.register(fd, mod.POLLIN)
    poll = poller.poll

    def run() -> object:
        return poll(0)
    return run


def check_same(p: Pipes) -> None:
    """Both implementations report the same ready set before timing."""
    want = sorted(p.ready)
    if hasattr(fastsel, "select"):
        got = sorted(fastsel.select(p.fds, [], [], 0)[0])
        assert got == want == sorted(std_select.select(p.fds, [], [], 0)[0]), (got, want)
    if hasattr(fastsel, "poll"):
        got = sorted(fd for fd, _ in poll_case(p, fastsel)())
        assert got == want, (got, want)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000",
                        help="comma-separated numbers of watched fds")
    common_arguments(parser)
    args = parser.parse_args(argv)
    repeat, min_time = settings(args)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(sizes) + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    print(environment())
    print(f"fastsel {fastsel.__version__} from {os.path.dirname(fastsel.__file__)}")
    missing = [n for n in ("select", "poll") if not hasattr(fastsel, n)]
    if missing:
        print(f"fastsel has no {', '.join(missing)} yet: only the stdlib is timed there")

    results = []
    for n in sizes:
        # one size at a time, closed before the next, so fds stay below 1024
        p = Pipes(n, max(1, n // 10))
        try:
            check_same(p)
            label = f"{n} fd{'s' if n > 1 else ''}, {len(p.ready)} ready"
            impls = {"stdlib": select_case(p, std_select)}
            if hasattr(fastsel, "select"):
                impls["fastsel"] = select_case(p, fastsel)
            cases = [Case(f"select() {label}", impls)]
            impls = {"stdlib": poll_case(p, std_select)}
            if hasattr(fastsel, "poll"):
                impls["fastsel"] = poll_case(p, fastsel)
            cases.append(Case(f"poll.poll() {label}", impls))
            results += run_cases(cases, repeat=repeat, min_time=min_time)
        finally:
            p.close()
    print(f"timeout 0; {repeat} interleaved runs of >= {min_time * 1000:g} ms each; "
          "per-call medians")
    print_table(results, baseline="stdlib", contender="fastsel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
