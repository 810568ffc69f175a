"""The stdlib's selectors against fastsel's, measured in the same run.

    python3 benchmarks/bench_selectors.py [--kind EpollSelector] [--quick]
                                          [--no-floor] [--no-strace]

Every case runs the same operation on a stdlib selector and on a fastsel
selector of the same class watching the same descriptors; their timed runs
alternate (benchmarks/_common.py) and the medians are compared; the ratio is
stdlib time / fastsel time (above 1: fastsel is faster).

Cases: select(0) with 1000 registered and 1000 ready (pipe write ends, per
event), and with 100 registered / 1 ready (per call); register + unregister
of a socket; modify changing events; modify changing data only;
get_map().get(fd); get_key(fd); DefaultSelector() + close().  Then:

- the C floor: benchmarks/epoll_floor.c (compiled with ``cc -O2`` into
  benchmarks/bin/) calling epoll_wait(timeout 0) on the same 1000 fds;
- O(ready): fastsel's select(0) with N registered (10**5, or as many as
  RLIMIT_NOFILE allows) and 10 ready, against 10**3 registered and 10 ready;
- memory per registration (tracemalloc), stdlib and fastsel;
- syscalls per modify (strace -c), when strace is installed.
"""
from __future__ import annotations

import argparse
import os
import resource
import selectors as std_selectors
import shutil
import socket
import subprocess
import sys
import textwrap
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import (Case, common_arguments, environment, fmt_time,  # noqa: E402
                     print_table, run_cases, settings)

import fastsel  # noqa: E402

R, W = std_selectors.EVENT_READ, std_selectors.EVENT_WRITE


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if hard != resource.RLIM_INFINITY else 10 ** 6


def pipes(n: int) -> list:
    return [os.pipe() for _ in range(n)]


def close_pipes(ps: list) -> None:
    for r, w in ps:
        os.close(r)
        os.close(w)


def pair_of(kind: str):
    return getattr(std_selectors, kind)(), getattr(fastsel, kind)()


def cases(kind: str, keep: list) -> list:
    out = []

    # select(0): 1000 registered, 1000 ready
    ps = pipes(1000)
    keep.append(ps)
    std, fast = pair_of(kind)
    keep += [std, fast]
    for s in (std, fast):
        for r, w in ps:
            s.register(w, W, None)
    assert len(std.select(0)) == len(fast.select(0)) == 1000
    out.append(Case("select(0) 1000 reg/1000 ready",
                    {"stdlib": lambda: std.select(0),
                     "fastsel": lambda: fast.select(0)},
                    note="per call; divide by 1000 for per event"))

    # select(0): 100 registered, 1 ready
    ps = pipes(100)
    keep.append(ps)
    os.write(ps[37][1], b"x")
    std2, fast2 = pair_of(kind)
    keep += [std2, fast2]
    for s in (std2, fast2):
        for r, w in ps:
            s.register(r, R, None)
    assert len(std2.select(0)) == len(fast2.select(0)) == 1
    out.append(Case("select(0) 100 reg/1 ready",
                    {"stdlib": lambda: std2.select(0),
                     "fastsel": lambda: fast2.select(0)}))

    # register + unregister of a socket
    a, b = socket.socketpair()
    keep += [a, b]
    std3, fast3 = pair_of(kind)
    keep += [std3, fast3]

    def reg_unreg(s):
        def fn():
            s.register(a, R)
            s.unregister(a)
        return fn
    out.append(Case("register+unregister (socket)",
                    {"stdlib": reg_unreg(std3), "fastsel": reg_unreg(fast3)}))

    # modify: events change (two modifies per call), data only, nothing
    c, d = socket.socketpair()
    keep += [c, d]
    std4, fast4 = pair_of(kind)
    keep += [std4, fast4]
    d1, d2 = object(), object()
    for s in (std4, fast4):
        s.register(c, R, d1)

    def mod_events(s):
        def fn():
            s.modify(c, W, d1)
            s.modify(c, R, d1)
        return fn

    def mod_data(s):
        def fn():
            s.modify(c, R, d2)
            s.modify(c, R, d1)
        return fn
    out.append(Case("modify events (x2)",
                    {"stdlib": mod_events(std4), "fastsel": mod_events(fast4)}))
    out.append(Case("modify data only (x2)",
                    {"stdlib": mod_data(std4), "fastsel": mod_data(fast4)}))

    fd = c.fileno()
    out.append(Case("get_map().get(fd)",
                    {"stdlib": lambda: std4.get_map().get(fd),
                     "fastsel": lambda: fast4.get_map().get(fd)}))
    out.append(Case("get_key(socket)",
                    {"stdlib": lambda: std4.get_key(c),
                     "fastsel": lambda: fast4.get_key(c)}))

    std_cls, fast_cls = getattr(std_selectors, kind), getattr(fastsel, kind)
    out.append(Case(f"{kind}() + close()",
                    {"stdlib": lambda: std_cls().close(),
                     "fastsel": lambda: fast_cls().close()}))
    return out


def build_floor() -> str | None:
    src = os.path.join(HERE, "epoll_floor.c")
    out_dir = os.path.join(HERE, "bin")
    exe = os.path.join(out_dir, "epoll_floor")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run([cc, "-O2", "-o", exe, src], check=True)
    return exe


def floor(kind: str, repeat: int, min_time: float) -> None:
    """fastsel's select(0) against epoll_wait(0) in C on the same fds, both
    setups of the table; C and Python runs alternate (5 rounds, medians)."""
    if kind != "EpollSelector":
        return
    exe = build_floor()
    if exe is None:
        print("C floor: no C compiler")
        return
    import statistics
    for nreg, nready in ((1000, 1000), (100, 1)):
        ps = pipes(nreg)
        if nready == nreg:
            fds, events = [w for r, w in ps], W       # write ends: all ready
        else:
            fds, events = [r for r, w in ps], R
            for r, w in ps[:nready]:
                os.write(w, b"x")
        fast = fastsel.EpollSelector()
        for fd in fds:
            fast.register(fd, events)
        try:
            c_ns, py_ns = [], []
            loops = max(20, int(min_time / (nreg * 100e-9 + 300e-9)))
            for _ in range(5):
                res = subprocess.run(
                    [exe, str(loops), str(max(repeat, 5)), str(events),
                     *map(str, fds)], pass_fds=fds, capture_output=True,
                    text=True, check=True)
                c_ns.append(float(res.stdout.split()[0]))
                r = run_cases([Case("x", {"fastsel": lambda: fast.select(0)})],
                              repeat, min_time, progress=False)[0]
                py_ns.append(r.median("fastsel") * 1e9)
            c, p = statistics.median(c_ns), statistics.median(py_ns)
            print(f"C floor, {nreg} registered / {nready} ready: epoll_wait "
                  f"{c:.0f} ns per call; fastsel select(0) {p:.0f} ns "
                  f"= {p / c:.2f}x the floor")
        finally:
            fast.close()
            close_pipes(ps)


def o_ready(kind: str, repeat: int, min_time: float, limit: int) -> None:
    big = min(10 ** 5, (limit - 300) // 2 * 2)
    results = {}
    for n in (1000, big):
        ps = pipes(n // 2)
        std, fast = pair_of(kind)
        try:
            for s in (std, fast):
                for r, w in ps:
                    s.register(r, R)
                    s.register(w, R)        # write ends never readable
            for r, w in ps[:10]:
                os.write(w, b"x")
            assert len(fast.select(0)) == 10
            res = run_cases([Case(f"{n}", {"stdlib": lambda: std.select(0),
                                           "fastsel": lambda: fast.select(0)})],
                            repeat, min_time, progress=False)[0]
            results[n] = res
        finally:
            std.close()
            fast.close()
            close_pipes(ps)
    for impl in ("stdlib", "fastsel"):
        small, large = results[1000].median(impl), results[big].median(impl)
        print(f"O(ready) {impl}: 10 ready of 1000 registered {fmt_time(small)}, "
              f"of {big} registered {fmt_time(large)}: ratio {large / small:.2f}")
    if big < 10 ** 5:
        print(f"  (RLIMIT_NOFILE hard limit {limit}: {big} registered instead "
              f"of 10**5)")


def memory(kind: str, n: int = 4000) -> None:
    per = {}
    for name, mod in (("stdlib", std_selectors), ("fastsel", fastsel)):
        socks = [socket.socketpair() for _ in range(n // 2)]
        objs = [s for p in socks for s in p]
        sel = getattr(mod, kind)()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for o in objs:
            sel.register(o, R)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        per[name] = (after - before) / len(objs)
        sel.close()
        for o in objs:
            o.close()
    print(f"memory per registration (tracemalloc, {n} sockets): stdlib "
          f"{per['stdlib']:.0f} B, fastsel {per['fastsel']:.0f} B")


def strace_counts(kind: str) -> None:
    strace = shutil.which("strace")
    if strace is None or kind != "EpollSelector":
        print("strace: not installed" if strace is None else "")
        return
    code = textwrap.dedent("""
        import socket, sys, fastsel, selectors
        mod = fastsel if sys.argv[1] == "fastsel" else selectors
        a, b = socket.socketpair()
        s = mod.EpollSelector()
        s.register(a, 1, 0)
        for i in range(10000):
            if sys.argv[2] == "data":
                s.modify(a, 1, i + 1)
            else:
                s.modify(a, 2 if i % 2 == 0 else 1, 0)
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastsel.__file__)),
         os.path.dirname(sys.modules["_fastsel"].__file__),
         env.get("PYTHONPATH", "")])
    for impl in ("stdlib", "fastsel"):
        for what in ("data", "events"):
            res = subprocess.run([strace, "-f", "-c", "-e", "trace=epoll_ctl",
                                  sys.executable, "-c", code, impl, what],
                                 capture_output=True, text=True, env=env)
            calls = 0
            for line in res.stderr.splitlines():
                parts = line.split()
                if parts and parts[-1] == "epoll_ctl":
                    calls = int(parts[3])
            print(f"strace: {impl} 10000 modify ({what}): {calls} epoll_ctl "
                  f"calls (1 is the register)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--kind", default="EpollSelector",
                        choices=["EpollSelector", "PollSelector",
                                 "SelectSelector"])
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--no-strace", action="store_true")
    args = parser.parse_args()
    repeat, min_time = settings(args)
    limit = raise_fd_limit()
    print(environment())
    print(f"class: {args.kind}; ratio = stdlib / fastsel (medians of {repeat})")
    keep: list = []
    try:
        results = run_cases(cases(args.kind, keep), repeat, min_time)
    finally:
        for k in keep:
            if isinstance(k, list):
                close_pipes(k)
            else:
                k.close()
    print_table(results)
    if not args.no_floor:
        floor(args.kind, repeat, min_time)
    o_ready(args.kind, repeat, min_time, limit)
    memory(args.kind)
    if not args.no_strace:
        strace_counts(args.kind)


if __name__ == "__main__":
    main()
