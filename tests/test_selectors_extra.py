"""fastsel's selectors beyond the stdlib's contract: scale, fds closed while
registered, stale events, subclassing, type names, the uniform close()
behaviour, and the result-tuple cache.  Every test is bounded in time.
(Fork, threads and signals: test_faults.py.)
"""
from __future__ import annotations

import gc
import os
import resource
import selectors as std_selectors
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping

import pytest

import fastsel
from _helpers import open_fds, wait_until_blocked

# fastsel's own selector behaviour (beyond the stdlib's contract)
pytestmark = pytest.mark.c_impl

KINDS = [k for k in ("EpollSelector", "PollSelector", "SelectSelector",
                     "KqueueSelector") if hasattr(fastsel, k)]
R, W = fastsel.EVENT_READ, fastsel.EVENT_WRITE


@pytest.fixture(params=KINDS)
def cls(request):
    return getattr(fastsel, request.param)


@pytest.fixture
def sel(cls):
    s = cls()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _watchdog():
    # no test may hang the suite
    import faulthandler
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# ---- scale --------------------------------------------------------------------

def _many(cls, nfds):
    """Register nfds pipe ends (read ends for READ, write ends for WRITE) and
    check select() reports exactly the writable half, then 10 readable."""
    pairs = []
    s = cls()
    try:
        for _ in range(nfds // 2):
            r, w = os.pipe()
            pairs.append((r, w))
            s.register(r, R, r)
            s.register(w, W, w)
        assert len(s.get_map()) == 2 * len(pairs)
        ready = s.select(0)
        assert len(ready) == len(pairs)
        assert len({k.fd for k, ev in ready}) == len(ready)   # no duplicates
        assert all(ev == W and k.fd == k.data for k, ev in ready)
        for r, w in pairs:
            s.unregister(w)
        for r, w in pairs[:10]:
            os.write(w, b"x")
        ready = s.select(0)
        assert sorted(k.fd for k, ev in ready) == sorted(r for r, w in pairs[:10])
        assert all(ev == R for k, ev in ready)
    finally:
        s.close()
        for r, w in pairs:
            os.close(r)
            os.close(w)


def test_100k_registered(cls):
    need = 10 ** 5 + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}: cannot open "
                    f"10**5 fds here (test_many_registered covers the limit)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        _many(cls, 10 ** 5)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_registered(cls):
    # as many as this machine allows, above FD_SETSIZE and above epoll's
    # 1024-event batch (the drain path)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(hard - open_fds() - 64, 12000) // 2 * 2
    if n < 3000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        _many(cls, n)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("ready", [1, 1023, 1024, 1025, 2048, 2049, 3000])
def test_every_ready_fd_reported_once(cls, ready):
    # epoll hands out at most 1024 events per wait: fastsel drains the
    # rest with non-blocking waits and reports each ready fd exactly once
    pairs = [os.pipe() for _ in range(3000)]
    s = cls()
    try:
        for r, w in pairs:
            s.register(r, R, "r")
            s.register(w, R, "w")       # a write end is never readable
        for r, w in pairs[:ready]:
            os.write(w, b"x")
        got = s.select(0)
        fds = [k.fd for k, ev in got]
        assert len(fds) == len(set(fds)) == ready
        assert {k.data for k, ev in got} == {"r"}
    finally:
        s.close()
        for r, w in pairs:
            os.close(r)
            os.close(w)


def test_huge_fd_numbers_poll_select():
    # poll and select accept any fd number at register(); a bogus huge one
    # must not allocate a table that large
    for name in ("PollSelector", "SelectSelector"):
        s = getattr(fastsel, name)()
        try:
            k = s.register(2 ** 30, R, "far")
            assert s.get_key(2 ** 30) is k
            assert list(s.get_map()) == [2 ** 30]
            assert s.unregister(2 ** 30) is k
            assert len(s.get_map()) == 0
        finally:
            s.close()


# ---- fds closed while registered, reuse, stale events ------------------------------

def test_fd_closed_while_registered(sel, pipes):
    r, w = pipes()
    os.write(w, b"x")
    sel.register(r, R, "old")
    os.close(r)
    # epoll forgot it with the file; poll/select see a closed fd
    try:
        ready = sel.select(0)
    except OSError:
        ready = None            # select(2) refuses a closed fd (as stdlib)
    if ready is not None:
        assert all(k.data == "old" for k, ev in ready)
    assert sel.unregister(r).data == "old"
    assert len(sel.get_map()) == 0


def test_fd_reuse_after_unregister(sel, pipes):
    r, w = pipes()
    sel.register(r, R, "old")
    sel.unregister(r)
    os.close(r)
    r2, w2 = pipes()
    assert r2 == r              # the lowest free number comes back
    os.write(w2, b"x")
    sel.register(r2, R, "new")
    assert [(k.data, ev) for k, ev in sel.select(0)] == [("new", R)]


@pytest.mark.skipif(not hasattr(fastsel, "EpollSelector"), reason="epoll")
def test_stale_event_is_dropped(pipes):
    """An event fetched for a registration that was replaced before the
    waiting thread got the GIL back never reaches the new key."""
    s = fastsel.EpollSelector()
    r, w = pipes()
    s.register(r, R, "old")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time; time.sleep(0.3); os.write(int(sys.argv[1]), b'x')",
         str(w)], pass_fds=[w])
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", s.select(5)))
    old = sys.getswitchinterval()
    try:
        t.start()
        wait_until_blocked(t)           # the thread is now in epoll_wait
        sys.setswitchinterval(30)       # keep the GIL while spinning
        end = time.monotonic() + 0.8
        while time.monotonic() < end:   # the writer fires at ~0.3 s
            pass
        # still holding the GIL: the waiter has its event but not the GIL
        s.unregister(r)
        s.register(r, R, "new")
    finally:
        sys.setswitchinterval(old)
    t.join(10)
    writer.wait(10)
    assert not t.is_alive()
    assert result["r"] == [], result     # the old registration's event
    assert [(k.data, ev) for k, ev in s.select(0)] == [("new", R)]
    s.close()


# ---- the classes ---------------------------------------------------------------------

def test_isinstance_and_names(cls):
    s = cls()
    assert isinstance(s, std_selectors.BaseSelector)
    assert isinstance(s, fastsel.BaseSelector)
    assert cls.__name__ in ("EpollSelector", "PollSelector", "SelectSelector",
                            "KqueueSelector")
    assert isinstance(s.get_map(), Mapping)
    s.close()


def test_type_names_outlive_module_setup(sel):
    # On 3.9/3.10 PyType_FromModuleAndSpec keeps spec->name as tp_name
    # without copying it; the selector classes' names were built in a stack
    # buffer, so every message naming the type read dead stack memory.
    import pickle

    with pytest.raises(TypeError) as info:
        pickle.dumps(sel)
    assert f"'fastsel.{type(sel).__name__}'" in str(info.value)


def test_subclass_and_attributes(cls, pipes):
    calls = []

    class Sub(cls):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def register(self, fileobj, events, data=None):
            calls.append(("register", events))
            return super().register(fileobj, events, data)

        def unregister(self, fileobj):
            calls.append(("unregister",))
            return super().unregister(fileobj)

    s = Sub("t")
    assert s.tag == "t" and isinstance(s, std_selectors.BaseSelector)
    s.extra = 1
    assert s.__dict__ == {"tag": "t", "extra": 1}
    r, w = pipes()
    s.register(r, R)
    s.modify(r, W)
    # the stdlib's select-based classes modify through unregister+register;
    # the poll-like ones make one kernel call
    if cls.__name__ in ("SelectSelector", "KqueueSelector"):
        assert calls == [("register", R), ("unregister",), ("register", W)]
    else:
        assert calls == [("register", R)]
    ref = weakref.ref(s)
    s.close()
    del s
    gc.collect()
    assert ref() is None


def test_instance_attribute_overrides(sel, pipes):
    # as CPython's test_modify does with mock.Mock
    r, w = pipes()
    sel.register(r, R, 1)
    sel.register = None
    sel.unregister = None
    assert sel.modify(r, R, 2).data == 2


def test_selector_key_is_stdlib(sel, pipes):
    r, w = pipes()
    k = sel.register(r, R, "d")
    assert type(k) is std_selectors.SelectorKey
    assert k == (r, r, R, "d")
    assert k._replace(data=1) == std_selectors.SelectorKey(r, r, R, 1)
    assert k._asdict() == {"fileobj": r, "fd": r, "events": R, "data": "d"}


def test_cycle_through_data_is_collected(cls, pipes):
    r, w = pipes()
    s = cls()
    s.register(r, R, s)             # the selector in its own key's data
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is None


def test_close_behaviour(cls, pipes):
    s = cls()
    r, w = pipes()
    s.register(r, R)
    m = s.get_map()
    s.close()
    s.close()                       # idempotent
    for call in (lambda: s.register(w, W), lambda: s.unregister(r),
                 lambda: s.modify(r, W), lambda: s.select(0),
                 lambda: s.get_key(r)):
        with pytest.raises(RuntimeError, match="^Selector is closed$"):
            call()
    assert s.get_map() is None
    assert len(m) == 0 and m.get(r) is None and list(m) == []
    if hasattr(s, "fileno"):
        with pytest.raises(ValueError, match="closed"):
            s.fileno()
    with cls() as s2:
        s2.register(r, R)
    with pytest.raises(RuntimeError):
        s2.get_key(r)


def test_result_tuples_cached(sel, pipes):
    r, w = pipes()
    os.write(w, b"x")
    k = sel.register(r, R, "a")
    first = sel.select(0)
    again = sel.select(0)
    assert first == [(k, R)] and again[0] is first[0]
    k2 = sel.modify(r, R, "b")
    assert sel.select(0) == [(k2, R)]
    assert sel.select(0)[0][0] is k2


def test_construction_makes_kernel_object(cls):
    # as the stdlib: the kernel object exists from construction (so EMFILE
    # surfaces there) and close() releases it
    # libkqueue (the Linux test build's kqueue) opens helper fds of its own
    # per kqueue and keeps some after close: there only the kqueue's own fd is
    # checked
    emulated = cls.__name__ == "KqueueSelector" and sys.platform.startswith("linux")
    before = open_fds()
    s = cls()
    if hasattr(cls, "fileno"):
        fd = s.fileno()
        assert fd >= 0
        if emulated:
            os.fstat(fd)
        else:
            assert open_fds() == before + 1
    else:
        assert open_fds() == before
    s.close()
    if emulated:
        with pytest.raises(ValueError, match="closed kqueue"):
            s.fileno()
    else:
        assert open_fds() == before


def test_default_selector():
    assert fastsel.DefaultSelector.__name__ == std_selectors.DefaultSelector.__name__
    s = fastsel.DefaultSelector()
    s.close()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13 warns for bools")
def test_bool_fd_warnings_match(diff, cls):
    """3.13 warns 'bool is used as a file descriptor' wherever the stdlib
    hands key.fd to the poller: compare counts with a socket at fd 1."""
    a, b = socket.socketpair()
    saved = os.dup(1)
    try:
        os.dup2(a.fileno(), 1)
        name = cls.__name__

        def body(impl):
            s = getattr(impl.selectors, name)()
            try:
                s.register(True, R | W)
                s.select(0)
                s.modify(True, W)
                s.select(0)
                s.unregister(True)
            finally:
                s.close()
        if hasattr(std_selectors, name):
            diff(body)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        a.close()
        b.close()
