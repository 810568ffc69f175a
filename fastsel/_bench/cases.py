"""The cases of ``python -m fastsel bench``.

* ``wait/...``: one zero-timeout ``select()``, ``poll.poll()``,
  ``epoll.poll()`` (``kqueue.control()`` where present) with 1, 100, 1000
  watched fds, a tenth ready -- per call and per ready event; for epoll also
  1 ready of 100 (the per-call overhead) and 1000 of 1000 (the result list);
* ``ctl/epoll/...``: ``epoll.register()``, ``modify()``, ``unregister()``,
  per call, over 1000 sockets;
* ``selector/...``: the selector operations asyncio performs all the time,
  on ``DefaultSelector`` (``--selector``: another class) of the stdlib and of
  fastsel;
* ``scaling``: one zero-timeout wait with 5 ready fds as the number of
  watched fds grows from 10**2 toward 10**5 (as far as RLIMIT_NOFILE allows):
  the select O(n) / poll O(n) / epoll O(ready) table, measured, and the
  selector's ``select(0)`` (O(ready) too, on epoll);
* ``memory``, ``syscalls/...``: see extras.py;
* ``echo/...``: see echo.py.

Every case is named; ``--cases`` selects cases by those names.
"""
from __future__ import annotations

import contextlib
import fnmatch
import gc
import os
import select as std_select
import selectors as std_selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import fastsel

from . import runner
from .runner import Settings, Stmt, close_pipes, pipes_layout, pipes_writable, progress

MODULES = {"stdlib": std_select, "fastsel": fastsel}
SELECTOR_MODULES = {"stdlib": std_selectors, "fastsel": fastsel}
HAS_KQUEUE = hasattr(std_select, "kqueue") and hasattr(fastsel, "kqueue")
HAS_EPOLL = hasattr(std_select, "epoll") and hasattr(fastsel, "epoll")
HAS_SELECTORS = hasattr(fastsel, "DefaultSelector")
SELECTOR_CLASS = "DefaultSelector"      # --selector


def selector_class(impl: str) -> Any:
    return getattr(SELECTOR_MODULES[impl], SELECTOR_CLASS)


def selector_is_epoll() -> bool:
    return selector_class("stdlib").__name__ == "EpollSelector"


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
    floor: Optional[Tuple[str, int, int, bool]] = None  # (mechanism, nfds, nready, writable)
    note: str = ""


# -- waits --------------------------------------------------------------------

def _watch(mod: Any, mech: str, fds: List[int], writable: bool, objs: List[Any]) -> Stmt:
    """A zero-timeout wait of ``mech`` on ``fds`` for reading (writing)."""
    if mech == "select":
        rl, wl = ([], list(fds)) if writable else (list(fds), [])
        return ("sel(rl, wl, xl, 0)", {"sel": mod.select, "rl": rl, "wl": wl, "xl": []})
    if mech == "poll":
        p = mod.poll()
        for fd in fds:
            p.register(fd, mod.POLLOUT if writable else mod.POLLIN)
        return ("p.poll(0)", {"p": p})
    if mech == "epoll":
        ep = mod.epoll()
        objs.append(ep)
        for fd in fds:
            ep.register(fd, mod.EPOLLOUT if writable else mod.EPOLLIN)
        return ("ep.poll(0)", {"ep": ep})
    kq = mod.kqueue()
    objs.append(kq)
    filt = mod.KQ_FILTER_WRITE if writable else mod.KQ_FILTER_READ
    kq.control([mod.kevent(fd, filt, mod.KQ_EV_ADD) for fd in fds], 0, 0)
    return ("kq.control(None, n, 0)", {"kq": kq, "n": len(fds)})


def _wait_case(mech: str, nfds: int, nready: int, writable: bool = False,
               name: Optional[str] = None) -> Micro:
    """``nfds`` watched fds, ``nready`` of them readable (pipes_layout); or,
    ``writable``, the write ends of ``nfds`` pipes watched for writing."""
    if writable:
        nready = nfds

    @contextlib.contextmanager
    def setup(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        if writable:
            ps, fds = pipes_writable(nfds)
        else:
            ps, fds, _ = pipes_layout(nfds, nready)
        objs: List[Any] = []
        try:
            yield {impl: _watch(MODULES[impl], mech, fds, writable, objs) for impl in impls}
        finally:
            for o in objs:
                o.close()
            close_pipes(ps)

    call = {"select": "select()", "poll": "poll.poll()", "epoll": "epoll.poll()",
            "kqueue": "kqueue.control()"}[mech]
    floor = (mech, nfds, nready, writable) if mech != "kqueue" else None
    how = "all writable" if writable else f"{nready} ready"
    return Micro(name or f"wait/{mech}/{nfds}", f"{call} timeout 0",
                 f"{nfds} fd{'s' if nfds > 1 else ''}, {how}", setup,
                 nready=nready, floor=floor)


def wait_cases() -> List[Micro]:
    out = []
    mechs = ["select", "poll"] + (["epoll"] if HAS_EPOLL else []) + (
        ["kqueue"] if HAS_KQUEUE else [])
    for mech in mechs:
        for nfds, nready in ((1, 1), (100, 10), (1000, 100)):
            out.append(_wait_case(mech, nfds, nready))
        if mech == "epoll":
            # the per-call overhead, and the cost of a long result list
            out.append(_wait_case(mech, 100, 1, name="wait/epoll/100-1"))
            out.append(_wait_case(mech, 1000, 1000, writable=True,
                                  name="wait/epoll/1000-1000"))
    return out


# -- epoll.register / modify / unregister ------------------------------------

CTL_SOCKETS = 1000


def _ctl_case(phase: str) -> Micro:
    """One ``epoll`` control call per socket of CTL_SOCKETS, on a fresh epoll
    object per round; only ``phase`` is timed (registering before a modify
    or unregister, closing after, are not)."""
    @contextlib.contextmanager
    def setup(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        pairs = [socket.socketpair() for _ in range(CTL_SOCKETS)]
        fds = [a.fileno() for a, _ in pairs]
        try:
            yield {impl: _ctl_runner(MODULES[impl], phase, fds) for impl in impls}
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    return Micro(f"ctl/epoll/{phase}", f"epoll.{phase}()", f"{CTL_SOCKETS} sockets", setup,
                 ops=CTL_SOCKETS)


def _ctl_runner(mod: Any, phase: str, fds: List[int]) -> Stmt:
    IN, OUT = mod.EPOLLIN, mod.EPOLLOUT

    def run(loops: int) -> float:
        total = 0.0
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for _ in range(loops):
                with mod.epoll() as ep:
                    reg, modify, unreg = ep.register, ep.modify, ep.unregister
                    if phase != "register":
                        for fd in fds:
                            reg(fd, IN)
                    t0 = time.perf_counter()
                    if phase == "register":
                        for fd in fds:
                            reg(fd, IN)
                    elif phase == "modify":
                        for fd in fds:
                            modify(fd, OUT)
                    else:
                        for fd in fds:
                            unreg(fd)
                    total += time.perf_counter() - t0
        finally:
            if gc_was:
                gc.enable()
        return total
    return run


def ctl_cases() -> List[Micro]:
    if not HAS_EPOLL:
        return []
    return [_ctl_case(p) for p in ("register", "modify", "unregister")]


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
                    sel = selector_class(impl)()
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

    def get_key(sel: Any, impl: str, keep: list) -> Stmt:
        # by the socket object: the fileobj -> fd lookup is part of it
        a, b = socket.socketpair()
        keep += [a, b]
        sel.register(a, R)
        return ("s.get_key(sock)", {"s": sel, "sock": a})

    def get_map(sel: Any, impl: str, keep: list) -> Stmt:
        fd = sockpair(keep)
        sel.register(fd, R)
        return ("s.get_map().get(fd)", {"s": sel, "fd": fd})

    @contextlib.contextmanager
    def construct(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        yield {impl: ("C().close()", {"C": selector_class(impl)}) for impl in impls}

    cls = selector_class("stdlib").__name__
    epoll = cls == "EpollSelector"
    out.append(Micro("selector/register+unregister", f"{cls}.register + unregister",
                     "1 socket", with_selectors(reg_unreg)))
    out.append(Micro("selector/modify-events", f"{cls}.modify (events)", "1 socket",
                     with_selectors(mod_events), ops=2, note="per modify"))
    out.append(Micro("selector/modify-data", f"{cls}.modify (data only)", "1 socket",
                     with_selectors(mod_data), ops=2, note="per modify"))
    out.append(Micro("selector/select/100-1", f"{cls}.select(0)", "100 registered, 1 ready",
                     with_selectors(sel_100_1), nready=1,
                     floor=("epoll", 100, 1, False) if epoll else None))
    out.append(Micro("selector/select/1000-1000", f"{cls}.select(0)",
                     "1000 registered, 1000 ready", with_selectors(sel_1000_1000),
                     nready=1000, floor=("epoll", 1000, 1000, True) if epoll else None))
    out.append(Micro("selector/get_map-get", f"{cls}.get_map().get(fd)", "1 registered",
                     with_selectors(get_map)))
    out.append(Micro("selector/get_key", f"{cls}.get_key(socket)", "1 registered",
                     with_selectors(get_key)))
    out.append(Micro("selector/construct-close", f"{SELECTOR_CLASS}() + close()", "-",
                     construct))
    return out


def micro_cases(notes: List[str]) -> List[Micro]:
    out = wait_cases() + ctl_cases()
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
                for impl, st in stmts.items():
                    r = eval(st[0], st[1])  # type: ignore[index]
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
            mech, nfds, nready, writable = case.floor
            rec["floor"] = runner.run_floor(floor_exe, mech, nfds, nready, s, writable)
            if rec["floor"]:
                rec["vs_floor"] = {k: v / rec["floor"] for k, v in m["median"].items()}
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


def _selector_wait_case(nfds: int, nready: int) -> Micro:
    """The selector's ``select(0)`` on the pipes_layout of the wait cases."""
    @contextlib.contextmanager
    def setup(impls: List[str]) -> Iterator[Dict[str, Stmt]]:
        ps, fds, _ = pipes_layout(nfds, nready)
        sels: List[Any] = []
        try:
            stmts: Dict[str, Stmt] = {}
            for impl in impls:
                sel = selector_class(impl)()
                sels.append(sel)
                for fd in fds:
                    sel.register(fd, std_selectors.EVENT_READ)
                stmts[impl] = ("s.select(0)", {"s": sel, "rl": fds})
            yield stmts
        finally:
            for sel in sels:
                sel.close()
            close_pipes(ps)
    return Micro(f"scaling/selector/{nfds}", "select(0)", f"{nfds} fds", setup, nready=nready)


def run_scaling(impls: List[str], s: Settings, sizes: List[int],
                floor_exe: Optional[str]) -> Dict[str, Any]:
    mechs = ["select", "poll"] + (["epoll"] if HAS_EPOLL else []) + (
        ["kqueue"] if HAS_KQUEUE else []) + (["selector"] if HAS_SELECTORS else [])
    series: Dict[str, Dict[str, Any]] = {}
    for mech in mechs:
        for impl in impls + (["C floor"] if floor_exe and mech not in ("kqueue", "selector")
                             else []):
            series[f"{mech}/{impl}"] = {"mechanism": mech, "impl": impl, "points": [],
                                        "stopped": None}
    for j, n in enumerate(sizes, 1):
        for mech in mechs:
            progress(f"scaling ({j}/{len(sizes)}): {mech}, {n} fds, {SCALING_READY} ready")
            case = (_selector_wait_case(n, SCALING_READY) if mech == "selector"
                    else _wait_case(mech, n, SCALING_READY))
            live = []
            for impl in impls:
                ser = series[f"{mech}/{impl}"]
                if ser["stopped"] is None:
                    live.append(impl)
            with case.setup(live) as stmts:
                for impl in list(stmts):
                    try:
                        eval(stmts[impl][0], stmts[impl][1])  # type: ignore[index]
                    except (ValueError, OSError) as exc:
                        # the stdlib's select() refuses fds >= FD_SETSIZE
                        ser = series[f"{mech}/{impl}"]
                        ser["stopped"] = {"nfds": n, "error": f"{type(exc).__name__}: {exc}",
                                          "max_fd": max(stmts[impl][1].get(  # type: ignore
                                              "rl", [0]))}
                        del stmts[impl]
                if stmts:
                    m = runner.measure(stmts, s)
                    for impl in stmts:
                        series[f"{mech}/{impl}"]["points"].append(
                            {"nfds": n, "median": m["median"][impl],
                             "samples": m["samples"][impl], "loops": m["loops"]})
            if floor_exe and mech not in ("kqueue", "selector"):
                t = runner.run_floor(floor_exe, mech, n, SCALING_READY, s)
                if t is not None:
                    series[f"{mech}/C floor"]["points"].append({"nfds": n, "median": t})
    return {"nready": SCALING_READY, "sizes": sizes, "fd_setsize": 1024,
            "selector_class": selector_class("stdlib").__name__ if HAS_SELECTORS else None,
            "series": list(series.values())}


# -- echo -----------------------------------------------------------------------

EchoVariant = Tuple[str, int, str]          # (server style, message size, malloc setting)


def echo_mallocs(wanted: Sequence[str], notes: List[str]) -> List[str]:
    """The malloc settings to run: glibc's variables mean nothing elsewhere."""
    import platform
    if platform.libc_ver()[0] != "glibc" and any(m != "default" for m in wanted):
        notes.append("echo: not glibc: the MALLOC_* settings are skipped")
        return [m for m in wanted if m == "default"]
    return list(wanted)


def echo_variants(s: Settings, mallocs: Sequence[str]) -> List[EchoVariant]:
    # the malloc settings of one server style and size run back to back, so
    # that their comparison, like the event loops', sees the same load
    return [(v, size, m) for v in ("protocol", "sock") for size in s.echo_sizes
            for m in mallocs]


def echo_name(v: EchoVariant) -> str:
    return f"echo/{v[0]}/{size_label(v[1]).replace(' ', '')}/{v[2]}"


def size_label(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


ECHO_MEDIANS = ("rps", "p50_s", "p99_s", "cpu_per_request_s", "user_cpu_per_request_s",
                "sys_cpu_per_request_s", "python_cpu_per_request_s",
                "selector_cpu_per_request_s", "kernel_share", "python_share",
                "selector_share", "events_per_select", "instrumentation_share",
                "page_faults_per_request")


def _shares(res: Dict[str, Any]) -> None:
    """Each part's share of the server's CPU, for one run."""
    cpu = res.get("server_cpu_s") or 0.0
    for part, key in (("kernel", "server_sys_s"), ("python", "python_cpu_s"),
                      ("selector", "selector_cpu_s"), ("instrumentation", "instrumentation_s")):
        v = res.get(key)
        res[f"{part}_share"] = v / cpu if v is not None and cpu else None


def run_echo_cases(variants: List[EchoVariant], impls: List[str], s: Settings,
                   loadgen: Optional[str], notes: List[str]) -> List[Dict[str, Any]]:
    from . import echo
    import statistics
    out: Dict[Tuple[EchoVariant, str], Dict[str, Any]] = {}
    for var in variants:
        for impl in impls:
            out[(var, impl)] = {"name": echo_name(var), "variant": var[0], "size": var[1],
                                "malloc": var[2], "malloc_env": echo.MALLOC_SETTINGS[var[2]],
                                "impl": impl, "conns": s.echo_conns,
                                "sample_every": s.echo_sample_every, "runs": []}
    total = len(variants) * len(impls) * s.echo_repeat
    k = 0
    for rep in range(s.echo_repeat):
        for var in variants:
            order = impls[rep % len(impls):] + impls[:rep % len(impls)]
            for impl in order:
                k += 1
                progress(f"echo ({k}/{total}): {var[0]}, {size_label(var[1])}, "
                         f"malloc {var[2]}, {impl}")
                try:
                    res = echo.run_echo(impl, var[0], var[1], s.echo_conns, s.echo_warmup,
                                        s.echo_duration, loadgen, var[2], s.echo_sample_every)
                except (OSError, RuntimeError, ValueError) as exc:
                    # one failed session must not lose the others' results
                    progress(f"echo run failed: {type(exc).__name__}: {exc}")
                    out[(var, impl)].setdefault("errors", []).append(
                        f"{type(exc).__name__}: {exc}")
                    continue
                _shares(res)
                out[(var, impl)]["runs"].append(res)
    keep = []
    for rec in out.values():
        runs = rec["runs"]
        if not runs:
            notes.append(f"{rec['name']} on {rec['impl']}: every run failed: "
                         f"{rec['errors'][0]}")
            continue
        rec["median"] = {}
        for key in ECHO_MEDIANS:
            vals = [r[key] for r in runs if r.get(key) is not None]
            rec["median"][key] = statistics.median(vals) if vals else None
        keep.append(rec)
    return keep
