"""Allocation failure in the kernel objects and the selector backends.

Each case fails the allocations of one call in turn (``_testcapi.set_nomemory``
fails allocation number ``start + 1``; ``start`` runs from 0 up until the call
succeeds): every failure must be a MemoryError (never a crash, another
exception or a wrong result), the object must stay consistent, and the call
must give the right answer once memory is back.  The backends and the fd table
allocate through Python's allocators (PyMem_Raw*), so these paths are reached.
"""
from __future__ import annotations

import os
import select as std_select
import socket
from typing import Any, Callable

import pytest

import fastsel
from conftest import skip_module_unless_c_impl

skip_module_unless_c_impl()     # (PyPy's _testcapi fails to build on import)

_testcapi = pytest.importorskip(
    "_testcapi", reason="this interpreter has no _testcapi (set_nomemory)")
if not hasattr(_testcapi, "set_nomemory"):
    pytest.skip("_testcapi has no set_nomemory here", allow_module_level=True)

pytestmark = pytest.mark.c_impl

R, W = fastsel.EVENT_READ, fastsel.EVENT_WRITE
SELECTORS = [n for n in ("SelectSelector", "PollSelector", "EpollSelector",
                         "KqueueSelector") if hasattr(fastsel, n)]
_FAILED = object()


def exhaust(fn: Callable[..., Any], *args: Any,
            after_failure: Callable[[], None] = lambda: None,
            limit: int = 3000) -> tuple[Any, int]:
    """(fn(*args) once it succeeds, how many allocations failed first).

    Only fn, a C function, runs while allocations fail (CPython 3.13.0
    itself can crash when its bytecode runs into a failed allocation there,
    with the stdlib's selectors too).  after_failure() runs, memory back,
    after each MemoryError: the place to check the object's consistency."""
    nomem, restore = _testcapi.set_nomemory, _testcapi.remove_mem_hooks
    fails = 0
    for start in range(limit):
        nomem(start, start + 1)
        try:
            result = fn(*args)
        except BaseException as e:
            restore()
            if not isinstance(e, MemoryError):
                raise
        else:
            restore()
            return result, fails
        fails += 1
        after_failure()
    pytest.fail(f"still failing after {limit} allocations")


@pytest.fixture
def socks():
    made = []

    def make(n: int) -> list:
        for _ in range(n):
            made.extend(socket.socketpair())
        return made[-2 * n:]
    yield make
    for s in made:
        s.close()


# ---- the selectors' backends ---------------------------------------------

@pytest.mark.parametrize("name", SELECTORS)
def test_backend_open(name, socks):
    cls = getattr(fastsel, name)
    sel, fails = exhaust(cls)
    assert fails >= 1                   # the backend's own state is allocated
    try:
        a, b = socks(1)
        b.send(b"x")
        sel.register(a, R, "d")
        assert [(k.fd, ev) for k, ev in sel.select(0)] == [(a.fileno(), R)]
    finally:
        sel.close()


@pytest.mark.parametrize("name", SELECTORS)
def test_register_growth(name, socks):
    """The 9th..40th registration grows the fd table (poll, select) and the
    selector's own tables; a failed register leaves no trace."""
    ends = socks(20)
    with getattr(fastsel, name)() as sel:
        for s in ends[:8]:
            sel.register(s, R)
        for s in ends[8:]:
            def consistent(s=s):
                assert s not in [k.fileobj for k in sel.get_map().values()]
            key, _ = exhaust(sel.register, s, R | W, "x", after_failure=consistent)
            assert key.fd == s.fileno() and sel.get_key(s) is key
        assert len(sel.get_map()) == 40
        got = {k.fd: ev for k, ev in sel.select(0)}
        assert got == {s.fileno(): W for s in ends[8:]}


@pytest.mark.parametrize("name", SELECTORS)
def test_select_buffers(name, socks):
    """The first select() after changes takes a snapshot (poll, select) or
    grows the kernel event buffer (epoll, kqueue); results are built from
    them.  A failure loses no registration and no event."""
    ends = socks(30)
    with getattr(fastsel, name)() as sel:
        for i, s in enumerate(ends):
            sel.register(s, R, i)
        for s in ends[1::2]:
            s.send(b"x")
        want = sorted((ends.index(s), R) for s in ends[0::2])

        def consistent():
            assert len(sel.get_map()) in (59, 60)

        got, fails = exhaust(sel.select, 0, after_failure=consistent)
        assert sorted((k.data, ev) for k, ev in got) == want
        if name in ("PollSelector", "SelectSelector"):
            assert fails >= 1           # the snapshot (PyMem_Raw) was reached
        # a changed registration: a new snapshot, the same rules
        sel.unregister(ends[0])
        got, _ = exhaust(sel.select, 0, after_failure=consistent)
        assert sorted((k.data, ev) for k, ev in got) == want[1:]


@pytest.mark.parametrize("name", SELECTORS)
def test_modify(name, socks):
    a, b = socks(1)
    with getattr(fastsel, name)() as sel:
        sel.register(a, R, "r")

        def consistent():
            # the stdlib drops a key whose poller.modify() failed: either way
            # what get_map says is what select() uses
            key = sel.get_map().get(a)
            if key is None:
                sel.register(a, R, "r")
        key, _ = exhaust(sel.modify, a, R | W, "rw", after_failure=consistent)
        assert (key.events, key.data) == (R | W, "rw")
        assert [(k.data, ev) for k, ev in sel.select(0)] == [("rw", W)]


# ---- the select module's objects -----------------------------------------

def test_poll_object(socks):
    ends = socks(12)
    p = fastsel.poll()
    for s in ends[:8]:
        p.register(s, std_select.POLLIN)
    for s in ends[8:]:
        # the 9th registration on grows the fd table
        exhaust(p.register, s, std_select.POLLIN | std_select.POLLOUT)
    ends[0].send(b"x")
    want = sorted([(ends[1].fileno(), std_select.POLLIN)]
                  + [(s.fileno(), std_select.POLLOUT) for s in ends[8:]])
    # the private copy polled, the result list, its tuples and ints
    got, fails = exhaust(p.poll, 0)
    assert sorted(got) == want and fails >= 1
    p.unregister(ends[8])
    got, _ = exhaust(p.poll, 0)
    assert sorted(got) == [w for w in want if w[0] != ends[8].fileno()]


@pytest.mark.skipif(not hasattr(fastsel, "epoll"), reason="no epoll on this platform")
@pytest.mark.parametrize("maxevents", [10, 1000, 70000])
def test_epoll_object(socks, maxevents):
    """maxevents 1000 grows the object's buffer, 70000 takes one for the call."""
    ends = socks(10)
    with fastsel.epoll() as ep:
        for s in ends:
            ep.register(s, std_select.EPOLLIN)
        for s in ends[0::2]:
            s.send(b"x")
        want = sorted((s.fileno(), std_select.EPOLLIN) for s in ends[1::2])
        got, fails = exhaust(ep.poll, 0, maxevents)
        assert sorted(got) == want and fails >= 1
        # the result tuples are cached per fd: a second round too
        got, _ = exhaust(ep.poll, 0, maxevents)
        assert sorted(got) == want


def test_select_function(socks):
    ends = socks(4)
    ends[0].send(b"x")
    r = ends[1]
    # more entries than the stack holds: a heap buffer for them
    many = [r] * 300
    got, fails = exhaust(fastsel.select, many, [ends[2]], [], 0)
    assert got == (many, [ends[2]], []) and fails >= 1


def test_select_function_high_fd(socks):
    a, b = socks(1)
    b.send(b"x")
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        pytest.skip(f"RLIMIT_NOFILE {soft} leaves no fd above FD_SETSIZE")
    high = os.dup2(a.fileno(), 1100)
    try:
        # an fd past FD_SETSIZE: the bitmaps come from the heap
        got, fails = exhaust(fastsel.select, [high], [], [], 0)
        assert got == ([high], [], []) and fails >= 1
    finally:
        os.close(high)


@pytest.mark.skipif(not hasattr(fastsel, "kqueue"), reason="no kqueue in this build")
def test_kqueue_object(socks):
    ends = socks(10)
    kq = fastsel.kqueue()
    try:
        # more than 16 changes and events: heap lists
        changes = [fastsel.kevent(s, fastsel.KQ_FILTER_WRITE, fastsel.KQ_EV_ADD)
                   for s in ends]
        got, fails = exhaust(kq.control, changes, 20, 0)
        assert sorted(e.ident for e in got) == sorted(s.fileno() for s in ends)
        assert fails >= 1
    finally:
        kq.close()


# ---- that the backends' own memory is Python's (reached by set_nomemory) ----

def test_fd_table_growth_is_reached(socks):
    # small ints are cached: the 9th register()'s only allocations are the
    # fd table's growth
    ends = socks(5)
    fds = [s.fileno() for s in ends]
    assert max(fds) < 256
    p = fastsel.poll()
    for fd in fds[:8]:
        p.register(fd)
    _, fails = exhaust(p.register, fds[8])
    assert fails >= 1
    assert sorted(fd for fd, _ in p.poll(0)) == sorted(fds[:9])


@pytest.mark.parametrize("name", ["PollSelector", "SelectSelector"])
def test_snapshot_is_reached(name, socks):
    """A select() after a change snapshots the registrations (PyMem_Raw:
    compaction, and select's sort); with as many keys as before, the
    selector itself allocates nothing new, so every failure is the
    backend's."""
    ends = socks(10)
    with getattr(fastsel, name)() as sel:
        for s in ends[0::2]:
            sel.register(s, R)      # nothing to read: select() gives []
        sel.select(0)
        _, clean = exhaust(sel.select, 0)
        for old, new in zip(ends[0:10:2], ends[1:10:2]):
            sel.unregister(old)
            sel.register(new, R)
        got, dirty = exhaust(sel.select, 0)
        assert got == [] and dirty > clean
        assert len(sel.get_map()) == 10
