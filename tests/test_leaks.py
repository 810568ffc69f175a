"""Memory stays flat over many iterations of every operation and error path.

Each case is one iteration of a loop (a call, or a short sequence of calls)
on fastsel's select(), poll, epoll and selector classes, including the error
paths (fileno() raising, bad masks, unknown fds, closed objects).  A case is
run for a warm-up, then for N iterations while three meters are read:

* tracemalloc: bytes held by the Python allocators (PyMem_*/PyObject_*),
  which is where _fastsel allocates;
* glibc's mallinfo2(): bytes in use from malloc() (catches raw malloc leaks,
  and with PYTHONMALLOC=malloc every Python allocation too);
* RSS from /proc/self/statm: the last word, coarse.

Bounds (for N iterations, after the warm-up): tracemalloc growth below
``TRACE_BOUND`` (32 KiB), malloc growth below ``MALLOC_BOUND`` (256 KiB),
RSS growth below ``RSS_BOUND`` (1 MiB).  A leak of one 16-byte block per
iteration grows by 1.6 MB over 10**5 iterations, so every bound catches it.

N is 10**5 per loop by default (CI budget, a few seconds per case with
tracemalloc off for the malloc/RSS pass), 10**6 with FASTSEL_LONG=1, or
FASTSEL_LEAK_N=<n>.  The tracemalloc pass uses N/10 iterations since
tracing slows every allocation down ~5x; its bound scales with that.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import socket
from typing import Callable, Iterator

import pytest

from _helpers import FileNo, FileNoRaises
from conftest import fastsel_name, skip_module_unless_c_impl

skip_module_unless_c_impl()     # (tracemalloc, mallinfo2: CPython's allocators)

import tracemalloc  # noqa: E402

import select as std_select  # noqa: E402

import fastsel  # noqa: E402

LONG = os.environ.get("FASTSEL_LONG", "") not in ("", "0")
N = int(os.environ.get("FASTSEL_LEAK_N", 10**6 if LONG else 10**5))
TRACE_N = max(N // 10, 100)
# FASTSEL_LEAK_METERS=0: run the loops but do not judge the meters (under
# ASan or valgrind, whose allocators hold freed memory in quarantine)
METERS = os.environ.get("FASTSEL_LEAK_METERS", "1") != "0"
TRACE_BOUND = 32 * 1024
MALLOC_BOUND = 256 * 1024
RSS_BOUND = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")

pytestmark = [pytest.mark.c_impl, pytest.mark.skipif(
    os.environ.get("FASTSEL_SKIP_LEAKS") == "1", reason="FASTSEL_SKIP_LEAKS=1")]


# ---- meters ------------------------------------------------------------------

class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


def _libc_mallinfo() -> Callable[[], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []

    def in_use() -> int:
        info = fn()
        return info.uordblks + info.hblkhd
    return in_use


malloc_in_use = _libc_mallinfo()


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def run_loop(body: Callable[[], None], n: int) -> None:
    for _ in range(n):
        body()


def measure(body: Callable[[], None]) -> dict:
    """Growth of each meter over the measured loops (bytes)."""
    gc.collect()
    run_loop(body, max(N // 20, 100))           # warm-up: caches, free lists
    gc.collect()
    m0 = malloc_in_use() if malloc_in_use else 0
    r0 = rss()
    run_loop(body, N)
    gc.collect()
    m1 = malloc_in_use() if malloc_in_use else 0
    r1 = rss()
    tracemalloc.start()
    try:
        run_loop(body, 100)
        gc.collect()
        t0 = tracemalloc.get_traced_memory()[0]
        run_loop(body, TRACE_N)
        gc.collect()
        t1 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {"tracemalloc": t1 - t0, "malloc": m1 - m0, "rss": r1 - r0}


def assert_flat(body: Callable[[], None]) -> None:
    growth = measure(body)
    report = os.environ.get("FASTSEL_LEAK_REPORT")
    if report:                  # one line per case, for docs/reliability.md
        with open(report, "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split()[0]} "
                    f"N={N} {growth}\n")
    if not METERS:
        return
    msg = f"growth over {N} iterations ({TRACE_N} traced): {growth}"
    assert growth["tracemalloc"] < TRACE_BOUND, msg
    if malloc_in_use:
        assert growth["malloc"] < MALLOC_BOUND, msg
    assert growth["rss"] < RSS_BOUND, msg


# ---- fixtures: fds the cases use ---------------------------------------------

class Fds:
    def __init__(self) -> None:
        self.r, self.w = os.pipe()                  # w is writable, r is not ready
        self.a, self.b = socket.socketpair()
        self.closed = socket.socket()
        self.closed.close()
        # a closed fd inside the fd table (select(2) ignores fds past the
        # table instead of failing); nothing in a loop body opens fds, so
        # the number stays free while a case runs (set per case)
        self.dead_fd = -1
        self.keep = os.open(os.devnull, os.O_RDONLY)   # reserves nothing; for spacing

    def close(self) -> None:
        for fd in (self.r, self.w, self.keep):
            os.close(fd)
        self.a.close()
        self.b.close()


@pytest.fixture(scope="module")
def fds() -> Iterator[Fds]:
    f = Fds()
    try:
        yield f
    finally:
        f.close()


FILENO_RAISES = FileNoRaises(ValueError, "no fileno today")    # a fresh one per call
FILENO_NONE = FileNo(None)                                      # fileno() returns a non-int


def expect(exc: type | tuple, fn: Callable[[], object]) -> Callable[[], None]:
    """A loop body that must raise ``exc`` (checked on every iteration)."""
    def body() -> None:
        try:
            fn()
        except exc:
            return
        raise AssertionError(f"{fn} did not raise {exc}")
    return body


# ---- the cases ---------------------------------------------------------------

def select_cases(f: Fds) -> dict:
    sel = fastsel.select
    return {
        "select-ready": lambda: sel([f.r, f.a], [f.w, f.b], [f.r], 0),
        "select-objs": lambda: sel([FileNo(f.r)], [FileNo(f.w)], [], 0.0),
        "select-fileno-raises": expect(ValueError, lambda: sel([f.r, FILENO_RAISES], [], [], 0)),
        "select-fileno-bad": expect(TypeError, lambda: sel([FILENO_NONE], [], [], 0)),
        "select-negative-fd": expect(ValueError, lambda: sel([-1], [], [], 0)),
        "select-closed-fd": expect(OSError, lambda: sel([f.dead_fd], [], [], 0)),
        "select-closed-sock": expect(ValueError, lambda: sel([f.closed], [], [], 0)),
        "select-bad-timeout": expect(TypeError, lambda: sel([], [], [], "1")),
        "select-neg-timeout": expect(ValueError, lambda: sel([], [], [], -1)),
        "select-not-seq": expect(TypeError, lambda: sel(1, [], [])),
        "select-gen": lambda: sel((x for x in [f.r]), [], [], 0),
    }


def poll_cases(f: Fds) -> dict:
    p = fastsel.poll()

    def cycle() -> None:
        q = fastsel.poll()
        q.register(f.r, fastsel.POLLIN)
        q.register(f.w)
        q.modify(f.r, fastsel.POLLIN | fastsel.POLLPRI)
        q.poll(0)
        q.unregister(f.r)
        q.unregister(FileNo(f.w))

    return {
        "poll-create": fastsel.poll,
        "poll-cycle": cycle,
        "poll-unregister-unknown": expect(KeyError, lambda: p.unregister(f.keep)),
        "poll-modify-unknown": expect(OSError, lambda: p.modify(f.keep, 1)),
        "poll-bad-mask": expect(OverflowError, lambda: p.register(f.r, 1 << 40)),
        "poll-neg-mask": expect((OverflowError, ValueError), lambda: p.register(f.r, -1)),
        "poll-fileno-raises": expect(ValueError, lambda: p.register(FILENO_RAISES)),
        "poll-fileno-bad": expect(TypeError, lambda: p.register(FILENO_NONE)),
        "poll-bad-timeout": expect(TypeError, lambda: p.poll("x")),
        "poll-closed-fd": lambda: (p.register(f.dead_fd), p.poll(0), p.unregister(f.dead_fd)),
    }


def epoll_cases(f: Fds) -> dict:
    ep = fastsel.epoll()
    closed = fastsel.epoll()
    closed.close()

    def cycle() -> None:
        with fastsel.epoll() as e:
            e.register(f.r, fastsel.EPOLLIN)
            e.register(f.w)
            e.modify(FileNo(f.r), fastsel.EPOLLIN | fastsel.EPOLLOUT)
            e.poll(0)
            e.poll(timeout=0, maxevents=4)
            e.unregister(f.r)
            e.unregister(f.w)

    def twice() -> None:
        ep.register(f.a)
        try:
            ep.register(f.a)
        finally:
            ep.unregister(f.a)

    return {
        "epoll-create": lambda: fastsel.epoll().close(),
        "epoll-create-gc": fastsel.epoll,
        "epoll-fromfd": lambda: fastsel.epoll.fromfd(os.dup(ep.fileno())).close(),
        "epoll-cycle": cycle,
        "epoll-register-twice": expect(FileExistsError, twice),
        "epoll-unregister-unknown": expect(FileNotFoundError, lambda: ep.unregister(f.b)),
        "epoll-modify-unknown": expect(FileNotFoundError, lambda: ep.modify(f.b, 1)),
        "epoll-bad-mask-type": expect(TypeError, lambda: ep.register(f.r, "1")),
        "epoll-einval-mask": expect(OSError, lambda: ep.register(f.r, -1)),
        "epoll-unsupported-fd": expect(PermissionError, lambda: ep.register(f.keep)),
        "epoll-fileno-raises": expect(ValueError, lambda: ep.register(FILENO_RAISES)),
        "epoll-fileno-bad": expect(TypeError, lambda: ep.register(FILENO_NONE)),
        "epoll-closed-fd": expect(OSError, lambda: ep.register(f.dead_fd)),
        "epoll-closed-obj": expect(ValueError, lambda: closed.register(f.r)),
        "epoll-closed-poll": expect(ValueError, lambda: closed.poll(0)),
        "epoll-bad-maxevents": expect(ValueError, lambda: ep.poll(0, -5)),
        "epoll-bad-timeout": expect(TypeError, lambda: ep.poll("1")),
        "epoll-kwargs-bad": expect(TypeError, lambda: ep.poll(nope=1)),
    }


SELECTOR_CLASSES = ["SelectSelector", "PollSelector", "EpollSelector", "KqueueSelector"]


def selector_cases(cls: type, f: Fds) -> dict:
    sel = cls()
    closed = cls()
    closed.close()
    data = object()

    def cycle() -> None:
        with cls() as s:
            s.register(f.r, fastsel.EVENT_READ, data)
            s.register(FileNo(f.w), fastsel.EVENT_WRITE)
            s.register(f.a, fastsel.EVENT_READ | fastsel.EVENT_WRITE, [1])
            s.modify(f.r, fastsel.EVENT_READ | fastsel.EVENT_WRITE)
            s.modify(f.r, fastsel.EVENT_READ | fastsel.EVENT_WRITE, "other data")
            s.select(0)
            s.get_key(f.w)
            s.get_map()[f.a]
            list(s.get_map())
            s.unregister(f.r)

    def persistent() -> None:
        sel.register(f.a, fastsel.EVENT_WRITE, data)
        sel.select(0)
        sel.modify(f.a, fastsel.EVENT_READ | fastsel.EVENT_WRITE, data)
        sel.select(0)
        sel.unregister(f.a)

    def twice() -> None:
        sel.register(f.b, fastsel.EVENT_READ)
        try:
            sel.register(f.b, fastsel.EVENT_READ)
        finally:
            sel.unregister(f.b)

    return {
        "create": lambda: cls().close(),
        "create-gc": cls,
        "cycle": cycle,
        "persistent": persistent,
        "register-twice": expect(KeyError, twice),
        "bad-events": expect(ValueError, lambda: sel.register(f.r, 0)),
        "bad-events-big": expect(ValueError, lambda: sel.register(f.r, 1 << 70)),
        "fileno-raises": expect(ValueError, lambda: sel.register(FILENO_RAISES, 1)),
        "fileno-bad": expect(ValueError, lambda: sel.register(FILENO_NONE, 1)),
        "unregister-unknown": expect(KeyError, lambda: sel.unregister(f.keep)),
        "modify-unknown": expect(KeyError, lambda: sel.modify(f.keep, 1)),
        "get_key-unknown": expect(KeyError, lambda: sel.get_key(f.keep)),
        "map-missing": lambda: sel.get_map().get(f.keep),
        "closed-register": expect(Exception, lambda: closed.register(f.r, 1)),
        "closed-select": expect(RuntimeError, lambda: closed.select(0)),
        "closed-unregister": expect(RuntimeError, lambda: closed.unregister(f.r)),
        "bad-timeout": expect(TypeError, lambda: sel.select("1")),
    }


def _collect_params() -> list:
    """Case names, listed once at collection with real (temporary) fds."""
    f = Fds()
    try:
        out = [pytest.param("select", n, id=f"select:{n}") for n in select_cases(f)]
        out += [pytest.param("poll", n, id=f"poll:{n}") for n in poll_cases(f)]
        if hasattr(std_select, "epoll"):
            out += [pytest.param("epoll", n, id=f"epoll:{n}") for n in epoll_cases(f)]
        names = list(selector_cases(fastsel.SelectSelector, f))
    finally:
        f.close()
    for cls in SELECTOR_CLASSES:
        out += [pytest.param(cls, n, id=f"{cls}:{n}") for n in names]
    return out


@pytest.mark.parametrize("group,case", _collect_params())
def test_flat(group: str, case: str, fds: Fds) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    fds.dead_fd = r
    if group == "select":
        body = select_cases(fds)[case]
    elif group == "poll":
        body = poll_cases(fds)[case]
    elif group == "epoll":
        body = epoll_cases(fds)[case]
    else:
        cls = fastsel_name(group)
        body = selector_cases(cls, fds)[case]
    body()          # the case itself works (or raises what it should)
    assert_flat(body)


@pytest.mark.skipif(not METERS, reason="FASTSEL_LEAK_METERS=0")
def test_meters_catch_a_leak() -> None:
    """The harness itself: a 16-byte leak per iteration fails every bound."""
    kept: list = []
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    blocks: list = []

    # 16 bytes at the default N; more when N is made smaller
    size = max(16, 4 * RSS_BOUND // N, 4 * TRACE_BOUND // TRACE_N)

    def leak() -> None:
        kept.append(bytes(size))                # Python allocator
        blocks.append(libc.malloc(size))        # raw malloc

    try:
        growth = measure(leak)
    finally:
        libc.free.argtypes = [ctypes.c_void_p]
        for b in blocks:
            libc.free(b)
    assert growth["tracemalloc"] >= TRACE_BOUND, growth
    if malloc_in_use:
        assert growth["malloc"] >= MALLOC_BOUND, growth
    assert growth["rss"] >= RSS_BOUND, growth
