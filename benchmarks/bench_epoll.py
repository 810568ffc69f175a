"""select.epoll against fastsel.epoll, measured in the same run.

    python3 benchmarks/bench_epoll.py [--fds 1000] [--repeats 15] [--quick]

poll: ``epoll.poll(0)`` with --fds registered descriptors, every one ready
(one end of a socketpair with unread data, EPOLLIN), so each call returns
--fds events; a second row polls one ready fd among 100 (per-call
overhead).  register / modify / unregister: one call each on the same
descriptors.  Both implementations watch the same descriptors; their runs
alternate within every repeat so that machine noise hits both alike.  Each
figure is the median over the repeats, per call (and per event for poll);
the ratio is stdlib time / fastsel time (above 1: fastsel is faster).
"""
from __future__ import annotations

import argparse
import resource
import select as std_select
import socket
import statistics
import sys
import time

import fastsel


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"need {need} file descriptors, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def ready_sockets(n: int) -> list:
    pairs = [socket.socketpair() for _ in range(n)]
    for a, b in pairs:
        b.send(b"x")                # a stays readable: nobody reads it
    return pairs


def time_poll(ep, calls: int, expect: int) -> float:
    poll = ep.poll
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        poll(0)
    elapsed = time.perf_counter_ns() - t0
    got = len(poll(0))
    if got != expect:
        raise AssertionError(f"{ep!r}: {got} events, expected {expect}")
    return elapsed / calls


def time_ctl(ep, fds: list) -> tuple:
    """ns per register, per modify, per unregister over all fds."""
    register, modify, unregister = ep.register, ep.modify, ep.unregister
    IN, OUT = std_select.EPOLLIN, std_select.EPOLLOUT
    t0 = time.perf_counter_ns()
    for fd in fds:
        register(fd, IN)
    t1 = time.perf_counter_ns()
    for fd in fds:
        modify(fd, OUT)
    t2 = time.perf_counter_ns()
    for fd in fds:
        unregister(fd)
    t3 = time.perf_counter_ns()
    n = len(fds)
    return (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fds", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200,
                    help="poll calls per timed run")
    ap.add_argument("--quick", action="store_true",
                    help="a few repeats only (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.calls = 3, 20

    raise_fd_limit(2 * args.fds + 64)
    pairs = ready_sockets(args.fds)
    fds = [a.fileno() for a, _ in pairs]
    impls = {"stdlib": std_select.epoll, "fastsel": fastsel.epoll}

    # poll(0): every registered fd is ready
    eps = {}
    for name, cls in impls.items():
        ep = cls()
        for fd in fds:
            ep.register(fd, std_select.EPOLLIN)
        eps[name] = ep
    poll_ns = {name: [] for name in impls}
    ctl_ns = {name: [] for name in impls}
    for name, ep in eps.items():          # warm-up: buffers, caches
        time_poll(ep, max(1, args.calls // 10), args.fds)
    for _ in range(args.repeats):
        for name, ep in eps.items():
            poll_ns[name].append(time_poll(ep, args.calls, args.fds))
    for ep in eps.values():
        ep.close()

    # poll(0): 100 registered, 1 ready (per-call overhead)
    small_ns = {name: [] for name in impls}
    idle = [socket.socketpair() for _ in range(99)]
    for name, cls in impls.items():
        ep = cls()
        ep.register(fds[0], std_select.EPOLLIN)
        for a, _ in idle:
            ep.register(a.fileno(), std_select.EPOLLIN)
        eps[name] = ep
    for _ in range(args.repeats):
        for name, ep in eps.items():
            small_ns[name].append(time_poll(ep, args.calls * 50, 1))
    for ep in eps.values():
        ep.close()
    for a, b in idle:
        a.close()
        b.close()

    # register / modify / unregister, on fresh objects each repeat
    for _ in range(args.repeats):
        for name, cls in impls.items():
            with cls() as ep:
                ctl_ns[name].append(time_ctl(ep, fds))

    for a, b in pairs:
        a.close()
        b.close()

    print(f"Python {sys.version.split()[0]}, {args.fds} ready fds, "
          f"{args.repeats} repeats, medians")
    print(f"{'operation':<24}{'stdlib':>12}{'fastsel':>12}{'ratio':>8}")

    def row(label: str, std: float, fast: float, unit: str) -> None:
        print(f"{label:<24}{std:>10.1f}{unit}{fast:>10.1f}{unit}"
              f"{std / fast:>7.2f}x")

    std_med = statistics.median(poll_ns["stdlib"])
    fast_med = statistics.median(poll_ns["fastsel"])
    row("poll(0) per call", std_med / 1000, fast_med / 1000, "us")
    row("poll(0) per event", std_med / args.fds, fast_med / args.fds, "ns")
    row("poll(0) 1 of 100 ready", statistics.median(small_ns["stdlib"]),
        statistics.median(small_ns["fastsel"]), "ns")
    for i, label in enumerate(("register", "modify", "unregister")):
        std = statistics.median(r[i] for r in ctl_ns["stdlib"])
        fast = statistics.median(r[i] for r in ctl_ns["fastsel"])
        row(f"{label} per call", std, fast, "ns")


if __name__ == "__main__":
    main()
