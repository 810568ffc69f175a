"""The cases of ``python -m fastsel bench``.

* ``wait/...``: one zero-timeout ``select()``, ``poll.poll()``,
  ``epoll.poll()`` (``kqueue.control()`` where present) with 1, 100, 1000
  watched fds, some ready -- per call and per ready event;
* ``selector/...``: the selector operations asyncio performs all the time,
  on ``DefaultSelector`` of the stdlib and of fastsel;
* ``scaling``: one zero-timeout wait with 5 ready fds as the number of
  watched fds grows from 10**2 toward 10**5 (as far as RLIMIT_NOFILE allows):
  the select O(n) / poll O(n) / epoll O(ready) table, measured;
* ``echo/...``: see echo.py.

Every case is named; ``--cases`` selects cases by those names.
"""
from __future__ import annotations

import contextlib
import fnmatch
import os
import select as std_select
import selectors as std_selectors
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import fastsel

from . import runner
from .runner import Settings, Stmt, close_pipes, pipes_layout, progress

MODULES = {"stdlib": std_select, "fastsel": fastsel}
SELECTOR_MODULES = {"stdlib": std_selectors, "fastsel": fastsel}
HAS_KQUEUE = hasattr(std_select, "kqueue") and hasattr(fastsel, "kqueue")
HAS_EPOLL = hasattr(std_select, "epoll") and hasattr(fastsel, "epoll")
HAS_SELECTORS = hasattr(fastsel, "DefaultSelector")


def matches(name: str, patterns: Optional[Sequence[str]]) -> bool:
    """``--cases``: comma-separated globs or substrings, case-insensitive."""
    if not patterns:
        return True
    low = name.lower()
    for p in patterns:
        p = p.strip().lower()
        if not p:
            continue
        if any(ch in p for ch in "*?["):
            if fnmatch.fnmatchcase(low, p):
                return True
        elif p in low:
            return True
    return False


@dataclass
class Micro:
    name: str                  # unique, matched by --cases
    op: str                    # shown in the table
    size: str                  # shown in the table
    setup: Callable[[List[str]], Any]   # impls -> context manager of {impl: Stmt}
    ops: int = 1               # operations per statement
    nready: Optional[int] = None        # events per call: per-event column
    floor: Optional[Tuple[str, int, int]] = None   # (mechanism, nfds, nready)
    note: str = ""


# -- waits --------------------------------------------------------------------

def _wait_case(mech: str, nfds: int, nready: int) -> Micro:
    @contextlib.contextmanager
    def setup(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        ps, fds, _ = pipes_layout(nfds, nready)
        objs: List[Any] = []
        try:
            stmts = {}
            for impl in impls:
                mod = MODULES[impl]
                if mech == "select":
                    stmts[impl] = ("sel(rl, wl, xl, 0)",
                                   {"sel": mod.select, "rl": list(fds), "wl": [], "xl": []})
                elif mech == "poll":
                    p = mod.poll()
                    for fd in fds:
                        p.register(fd, mod.POLLIN)
                    stmts[impl] = ("p.poll(0)", {"p": p})
                elif mech == "epoll":
                    ep = mod.epoll()
                    objs.append(ep)
                    for fd in fds:
                        ep.register(fd, mod.EPOLLIN)
                    stmts[impl] = ("ep.poll(0)", {"ep": ep})
                else:
                    kq = mod.kqueue()
                    objs.append(kq)
                    kq.control([mod.kevent(fd, mod.KQ_FILTER_READ, mod.KQ_EV_ADD)
                                for fd in fds], 0, 0)
                    stmts[impl] = ("kq.control(None, n, 0)", {"kq": kq, "n": len(fds)})
            yield stmts
        finally:
            for o in objs:
                o.close()
            close_pipes(ps)

    call = {"select": "select()", "poll": "poll.poll()", "epoll": "epoll.poll()",
            "kqueue": "kqueue.control()"}[mech]
    floor = (mech, nfds, nready) if mech != "kqueue" else None
    return Micro(f"wait/{mech}/{nfds}", f"{call} timeout 0",
                 f"{nfds} fd{'s' if nfds > 1 else ''}, {nready} ready", setup,
                 nready=nready, floor=floor)


def wait_cases() -> List[Micro]:
    out = []
    mechs = ["select", "poll"] + (["epoll"] if HAS_EPOLL else []) + (
        ["kqueue"] if HAS_KQUEUE else [])
    for mech in mechs:
        for nfds, nready in ((1, 1), (100, 10), (1000, 100)):
            out.append(_wait_case(mech, nfds, nready))
    return out


# -- selectors ----------------------------------------------------------------

def _selector_cases() -> List[Micro]:
    R, W = std_selectors.EVENT_READ, std_selectors.EVENT_WRITE
    out: List[Micro] = []

    def with_selectors(body: Callable[[Any, str, list], Stmt]):
        @contextlib.contextmanager
        def setup(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
            keep: list = []
            sels: list = []
            try:
                stmts = {}
                for impl in impls:
                    sel = SELECTOR_MODULES[impl].DefaultSelector()
                    sels.append(sel)
                    stmts[impl] = body(sel, impl, keep)
                yield stmts
            finally:
                for sel in sels:
                    sel.close()
                for k in keep:
                    if isinstance(k, list):
                        close_pipes(k)
                    else:
                        k.close()
        return setup

    def sockpair(keep: list) -> int:
        a, b = socket.socketpair()
        keep += [a, b]
        return a.fileno()

    def reg_unreg(sel: Any, impl: str, keep: list) -> Stmt:
        fd = sockpair(keep)
        return ("s.register(fd, R); s.unregister(fd)", {"s": sel, "fd": fd, "R": R})

    def mod_events(sel: Any, impl: str, keep: list) -> Stmt:
        fd = sockpair(keep)
        d = object()
        sel.register(fd, R, d)
        return ("s.modify(fd, W, d); s.modify(fd, R, d)", {"s": sel, "fd": fd, "R": R,
                                                          "W": W, "d": d})

    def mod_data(sel: Any, impl: str, keep: list) -> Stmt:
        fd = sockpair(keep)
        d1, d2 = object(), object()
        sel.register(fd, R, d1)
        return ("s.modify(fd, R, d2); s.modify(fd, R, d1)", {"s": sel, "fd": fd, "R": R,
                                                            "d1": d1, "d2": d2})

    def sel_100_1(sel: Any, impl: str, keep: list) -> Stmt:
        ps, fds, _ = pipes_layout(100, 1)
        keep.append(ps)
        for fd in fds:
            sel.register(fd, R)
        return ("s.select(0)", {"s": sel})

    def sel_1000_1000(sel: Any, impl: str, keep: list) -> Stmt:
        # write ends of 1000 pipes watched for writing: all always ready
        ps = [os.pipe() for _ in range(1000)]
        keep.append(ps)
        for _, w in ps:
            sel.register(w, W)
        return ("s.select(0)", {"s": sel})

    def get_map(sel: Any, impl: str, keep: list) -> Stmt:
        fd = sockpair(keep)
        sel.register(fd, R)
        return ("s.get_map().get(fd)", {"s": sel, "fd": fd})

    @contextlib.contextmanager
    def construct(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        yield {impl: ("C().close()", {"C": SELECTOR_MODULES[impl].DefaultSelector})
               for impl in impls}

    cls = std_selectors.DefaultSelector.__name__
    out.append(Micro("selector/register+unregister", f"{cls}.register + unregister",
                     "1 socket", with_selectors(reg_unreg)))
    out.append(Micro("selector/modify-events", f"{cls}.modify (events)", "1 socket",
                     with_selectors(mod_events), ops=2, note="per modify"))
    out.append(Micro("selector/modify-data", f"{cls}.modify (data only)", "1 socket",
                     with_selectors(mod_data), ops=2, note="per modify"))
    out.append(Micro("selector/select/100-1", f"{cls}.select(0)", "100 registered, 1 ready",
                     with_selectors(sel_100_1), nready=1, floor=("epoll", 100, 1)
                     if cls == "EpollSelector" else None))
    out.append(Micro("selector/select/1000-1000", f"{cls}.select(0)",
                     "1000 registered, 1000 ready", with_selectors(sel_1000_1000),
                     nready=1000))
    out.append(Micro("selector/get_map-get", f"{cls}.get_map().get(fd)", "1 registered",
                     with_selectors(get_map)))
    out.append(Micro("selector/construct-close", "DefaultSelector() + close()", "-",
                     construct))
    return out


def micro_cases(notes: List[str]) -> List[Micro]:
    out = wait_cases()
    if not HAS_KQUEUE and hasattr(std_select, "kqueue"):
        notes.append("kqueue: fastsel was built without kqueue here; kqueue cases skipped")
    if HAS_SELECTORS:
        out += _selector_cases()
    else:
        notes.append("selector cases skipped: fastsel has no DefaultSelector in this build")
    return out


def run_micro(cases: List[Micro], impls: List[str], s: Settings,
              floor_exe: Optional[str]) -> List[Dict[str, Any]]:
    results = []
    for i, case in enumerate(cases, 1):
        progress(f"({i}/{len(cases)}) {case.op}, {case.size}")
        with case.setup(impls) as stmts:
            # sanity: every implementation returns the same number of events
            if case.nready is not None:
                counts = {}
                for impl, (stmt, ns) in stmts.items():
                    r = eval(stmt, ns)
                    counts[impl] = len(r[0]) if isinstance(r, tuple) else len(r)
                if len(set(counts.values())) > 1 or case.nready not in counts.values():
                    raise RuntimeError(f"{case.name}: events per call differ: {counts}")
            m = measure_case(stmts, s, case.ops)
        rec: Dict[str, Any] = {
            "name": case.name, "op": case.op, "size": case.size, "ops_per_stmt": case.ops,
            "nready": case.nready, "loops": m["loops"], "repeat": s.repeat,
            "samples": m["samples"], "median": m["median"], "note": case.note,
        }
        if case.nready:
            rec["per_event"] = {k: v / case.nready for k, v in m["median"].items()}
        if "stdlib" in m["median"] and "fastsel" in m["median"]:
            rec["ratio"] = m["median"]["stdlib"] / m["median"]["fastsel"]
        if case.floor and floor_exe:
            rec["floor"] = runner.run_floor(floor_exe, *case.floor, s)
        results.append(rec)
    return results


def measure_case(stmts: Dict[str, Stmt], s: Settings, ops: int) -> Dict[str, Any]:
    return runner.measure(stmts, s, ops)


# -- scaling --------------------------------------------------------------------

SCALING_READY = 5


def scaling_sizes(s: Settings, soft_limit: Any) -> Tuple[List[int], int, Optional[str]]:
    """Sizes to measure, capped by RLIMIT_NOFILE; returns (sizes, cap, note)."""
    try:
        open_now = len(os.listdir("/proc/self/fd"))
    except OSError:
        open_now = 64
    limit = 10 ** 6 if soft_limit == "unlimited" else int(soft_limit)
    cap = max(100, (limit - open_now - 64) // 100 * 100)
    sizes = sorted({min(n, cap) for n in s.scaling_sizes})
    note = None
    if cap < max(s.scaling_sizes):
        note = (f"RLIMIT_NOFILE allows {limit} fds, so the largest size is {cap} "
                f"registered fds instead of {max(s.scaling_sizes)}")
    return sizes, cap, note


def run_scaling(impls: List[str], s: Settings, sizes: List[int],
                floor_exe: Optional[str]) -> Dict[str, Any]:
    mechs = ["select", "poll"] + (["epoll"] if HAS_EPOLL else []) + (
        ["kqueue"] if HAS_KQUEUE else [])
    series: Dict[str, Dict[str, Any]] = {}
    for mech in mechs:
        for impl in impls + (["C floor"] if floor_exe and mech != "kqueue" else []):
            series[f"{mech}/{impl}"] = {"mechanism": mech, "impl": impl, "points": [],
                                        "stopped": None}
    for j, n in enumerate(sizes, 1):
        for mech in mechs:
            progress(f"scaling ({j}/{len(sizes)}): {mech}, {n} fds, {SCALING_READY} ready")
            case = _wait_case(mech, n, SCALING_READY)
            live = []
            for impl in impls:
                ser = series[f"{mech}/{impl}"]
                if ser["stopped"] is None:
                    live.append(impl)
            with case.setup(live) as stmts:
                for impl in list(stmts):
                    try:
                        eval(stmts[impl][0], stmts[impl][1])
                    except (ValueError, OSError) as exc:
                        # the stdlib's select() refuses fds >= FD_SETSIZE
                        ser = series[f"{mech}/{impl}"]
                        ser["stopped"] = {"nfds": n, "error": f"{type(exc).__name__}: {exc}",
                                          "max_fd": max(stmts[impl][1].get("rl", [0]))}
                        del stmts[impl]
                if stmts:
                    m = runner.measure(stmts, s)
                    for impl in stmts:
                        series[f"{mech}/{impl}"]["points"].append(
                            {"nfds": n, "median": m["median"][impl],
                             "samples": m["samples"][impl], "loops": m["loops"]})
            if floor_exe and mech != "kqueue":
                t = runner.run_floor(floor_exe, mech, n, SCALING_READY, s)
                if t is not None:
                    series[f"{mech}/C floor"]["points"].append({"nfds": n, "median": t})
    return {"nready": SCALING_READY, "sizes": sizes,
            "fd_setsize": 1024, "series": list(series.values())}


# -- echo -----------------------------------------------------------------------

def echo_variants(s: Settings) -> List[Tuple[str, int]]:
    return [(v, size) for v in ("protocol", "sock") for size in s.echo_sizes]


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def run_echo_cases(variants: List[Tuple[str, int]], impls: List[str], s: Settings,
                   loadgen: Optional[str], notes: List[str]) -> List[Dict[str, Any]]:
    from . import echo
    import statistics
    out: Dict[Tuple[str, int, str], Dict[str, Any]] = {}
    for v, size in variants:
        for impl in impls:
            out[(v, size, impl)] = {"name": f"echo/{v}/{size_label(size).replace(' ', '')}",
                                    "variant": v, "size": size, "impl": impl,
                                    "conns": s.echo_conns, "runs": []}
    total = len(variants) * len(impls) * s.echo_repeat
    k = 0
    for rep in range(s.echo_repeat):
        for v, size in variants:
            order = impls[rep % len(impls):] + impls[:rep % len(impls)]
            for impl in order:
                k += 1
                progress(f"echo ({k}/{total}): {v}, {size_label(size)}, {impl}")
                try:
                    res = echo.run_echo(impl, v, size, s.echo_conns, s.echo_warmup,
                                        s.echo_duration, loadgen)
                except (OSError, RuntimeError, ValueError) as exc:
                    # one failed session must not lose the others' results
                    progress(f"echo run failed: {type(exc).__name__}: {exc}")
                    out[(v, size, impl)].setdefault("errors", []).append(
                        f"{type(exc).__name__}: {exc}")
                    continue
                out[(v, size, impl)]["runs"].append(res)
    keep = []
    for rec in out.values():
        runs = rec["runs"]
        if not runs:
            notes.append(f"{rec['name']} on {rec['impl']}: every run failed: "
                         f"{rec['errors'][0]}")
            continue
        rec["median"] = {key: statistics.median(r[key] for r in runs)
                         for key in ("rps", "p50_s", "p99_s", "cpu_per_request_s",
                                     "user_cpu_per_request_s")}
        keep.append(rec)
    return keep
