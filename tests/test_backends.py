"""The readiness backends of backend.h (epoll, kqueue, poll, select), each driven
through its fs_backend_ops table alone, by the debug-only entry point
``fastsel._fastsel._debug_backend(name)`` of a FASTSEL_DEBUG=1 build.

The selector classes only ever reach a backend through that table; these tests
check each table's contract (backend.h) directly: events in selectors terms,
errno for errors, wait() without the GIL and without EINTR retry, a token
handed back per event.  The entry point hands a backend the selector's token
``fd | tag << 32`` for ``add(fd, events, tag)`` and reports each event's tag.
Every backend this build has is tested: epoll on Linux, kqueue in a kqueue
build (FASTSEL_KQUEUE, .ci/matrix's kqueue job), poll and select everywhere.
"""
from __future__ import annotations

import errno
import faulthandler
import os
import random
import select as std_select
import selectors as std_selectors
import signal
import socket
import sys
import threading
import time

import pytest

import fastsel

pytestmark = [pytest.mark.c_impl, pytest.mark.debug_build]

R, W = 1, 2                     # FS_READ, FS_WRITE == EVENT_READ, EVENT_WRITE
ALL = ("epoll", "kqueue", "poll", "select")
# which backends a build must have: the mechanisms its select surface has
PRESENT = [n for n in ALL if n in ("poll", "select") or hasattr(fastsel, n)]
KERNEL = ("epoll", "kqueue")    # a kernel object: an fd, its own errno rules
SNAPSHOT = ("poll", "select")   # wait() polls a snapshot of the registrations
PER_FILTER = ("kqueue",)        # read and write of one fd: two events


def open_backend(name: str):
    from fastsel import _fastsel
    return _fastsel._debug_backend(name)


@pytest.fixture(autouse=True)
def _watchdog():
    # no test may hang: dump the stacks and die rather than block forever
    faulthandler.dump_traceback_later(60, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=PRESENT)
def backend(request):
    b = open_backend(request.param)
    yield b
    b.close()


def waited(backend, timeout_ns=0, max=64):
    """wait()'s events, sorted where the mechanism gives no order."""
    got = backend.wait(timeout_ns, max)
    return got if backend.name in SNAPSHOT else sorted(got)


def as_reported(backend, events):
    """[(tag, events)] in the backend's shape: kqueue splits R | W in two,
    as the stdlib's KqueueSelector reports one entry per kevent."""
    if backend.name not in PER_FILTER:
        return sorted(events)
    return sorted((t, bit) for t, ev in events for bit in (R, W) if ev & bit)


# ---- the entry point itself ----------------------------------------------------

def test_entry_point_has_each_backend_of_the_build() -> None:
    for name in ALL:
        if name in PRESENT:
            b = open_backend(name)
            assert (b.name, b.closed) == (name, False)
            b.close()
            b.close()                               # idempotent
            assert b.closed
            with pytest.raises(ValueError, match="closed backend"):
                b.wait(0)
        else:
            with pytest.raises(ValueError, match=f"no backend '{name}' in this build"):
                open_backend(name)
    from fastsel import _fastsel
    with pytest.raises(ValueError, match="no backend 'bogus'"):
        _fastsel._debug_backend(name="bogus")       # by keyword too
    with pytest.raises(TypeError):
        _fastsel._debug_backend()


def test_modify_is_there_or_said_to_be_absent(backend, pair) -> None:
    # the selector needs modify() from epoll, poll and select; kqueue's
    # selector removes and adds instead (its ops->modify may be NULL)
    if backend.name != "kqueue":
        assert backend.has_modify
    if not backend.has_modify:
        backend.add(pair[0].fileno(), R, 1)
        with pytest.raises(NotImplementedError, match="kqueue backend has no modify"):
            backend.modify(pair[0].fileno(), R, W, 2)


def test_argument_errors(backend) -> None:
    with pytest.raises(OverflowError):
        backend.add(0, R, -1)                       # tags are uint32
    with pytest.raises(OverflowError):
        backend.add(0, R, 1 << 32)
    with pytest.raises(ValueError):
        backend.wait(0, -1)
    with pytest.raises(TypeError):
        backend.remove("0", R)


def test_fileno(backend) -> None:
    fd = backend.fileno()
    if backend.name in KERNEL:
        assert fd >= 0 and not os.get_inheritable(fd)
    else:
        assert fd == -1


# ---- readiness and events ------------------------------------------------------

def test_basic_readiness(backend, pipe, pair) -> None:
    r, w = pipe
    a, b = pair
    backend.add(r, R, 100)
    backend.add(w, W, 101)
    backend.add(a.fileno(), R | W, 102)
    assert sorted(backend.wait(0)) == [(101, W), (102, W)]
    os.write(w, b"x")
    b.send(b"y")
    assert sorted(backend.wait(0)) == as_reported(backend, [(100, R), (101, W), (102, R | W)])
    backend.remove(w, W)
    backend.remove(a.fileno(), R | W)
    backend.add(a.fileno(), R, 4000000000)          # a new token for the fd
    assert sorted(backend.wait(0)) == [(100, R), (4000000000, R)]


def test_modify(backend, pair) -> None:
    if not backend.has_modify:
        pytest.skip(f"the {backend.name} backend has no modify() (its selector removes and "
                    "adds; test_modify_is_there_or_said_to_be_absent checks that it says so)")
    a, b = pair
    fd = a.fileno()
    backend.add(fd, R, 1)
    b.send(b"x")
    assert backend.wait(0) == [(1, R)]
    backend.modify(fd, R, W, 2)                     # READ dropped, WRITE added
    assert backend.wait(0) == [(2, W)]
    backend.modify(fd, W, R | W, 3)
    assert backend.wait(0) == [(3, R | W)]
    backend.modify(fd, R | W, R, 4)                 # the kept interest: new token
    assert backend.wait(0) == [(4, R)]
    backend.remove(fd, R)
    assert backend.wait(0) == []


def test_registration_errors(backend, pipe) -> None:
    r, w = pipe
    with pytest.raises(FileNotFoundError):
        backend.remove(w, W)
    if backend.has_modify and backend.name != "kqueue":
        # (kqueue's modify adds the new filters: EV_ADD needs no prior one)
        with pytest.raises(FileNotFoundError):
            backend.modify(w, W, R, 1)
    backend.add(r, R, 1)
    if backend.name != "kqueue":    # kevent's EV_ADD of a present filter is no error
        with pytest.raises(FileExistsError):
            backend.add(r, R, 2)
    backend.remove(r, R)
    with pytest.raises(FileNotFoundError):
        backend.remove(r, R)


def test_closed_fd(backend) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    if backend.name in KERNEL:                      # the kernel checks at once
        for events in (R, R | W):
            with pytest.raises(OSError) as info:
                backend.add(r, events, 1)
            assert info.value.errno == errno.EBADF
    elif backend.name == "select":                  # select() refuses it
        backend.add(r, R, 1)
        with pytest.raises(OSError) as info:
            backend.wait(0)
        assert info.value.errno == errno.EBADF
        backend.remove(r, R)
        assert backend.wait(0) == []
    else:                                           # poll: POLLNVAL, as the stdlib
        backend.add(r, R, 1)
        events = std_poll_selector_events(r)
        assert backend.wait(0) == ([(1, events)] if events else [])


@pytest.fixture(params=[n for n in PRESENT if n in KERNEL])
def kernel_backend(request):
    b = open_backend(request.param)
    yield b
    b.close()


def test_change_after_close_fails(kernel_backend) -> None:
    """Closing an fd drops it from a kernel object (poll/select keep a
    closed fd's registration: test_closed_fd)."""
    backend = kernel_backend
    r, w = os.pipe()
    backend.add(r, R, 1)
    os.close(r)
    os.close(w)
    if backend.name == "kqueue" and sys.platform.startswith("linux"):
        # libkqueue cannot see a close(2): the filters stay until deleted,
        # so deleting them succeeds (a kernel kqueue dropped them: ENOENT)
        backend.remove(r, R)
    else:
        with pytest.raises(OSError) as info:
            if backend.has_modify:
                backend.modify(r, R, R | W, 2)
            else:
                backend.remove(r, R)
        assert info.value.errno in (errno.EBADF, errno.ENOENT)
    # the fd number can be registered afresh
    r2, w2 = os.pipe()
    try:
        if r2 == r:
            backend.add(r2, R, 3)
            os.write(w2, b"x")
            assert backend.wait(0) == [(3, R)]
    finally:
        os.close(r2)
        os.close(w2)


def std_poll_selector_events(fd: int) -> int:
    """What the stdlib's PollSelector makes of fd's poll() events."""
    p = std_select.poll()
    p.register(fd, std_select.POLLIN)
    got = p.poll(0)
    if not got:
        return 0
    ev = got[0][1]
    return (W if ev & ~std_select.POLLIN else 0) | (R if ev & ~std_select.POLLOUT else 0)


def std_selector_events(name: str, fd: int) -> int:
    """What the stdlib's selector for mechanism `name` reports for fd
    registered for reading (kqueue on Linux: the BSD rule, EV_EOF on the
    read filter is readable)."""
    cls = {"epoll": "EpollSelector", "kqueue": "KqueueSelector",
           "poll": "PollSelector", "select": "SelectSelector"}[name]
    if not hasattr(std_selectors, cls):
        assert name == "kqueue"
        return R
    with getattr(std_selectors, cls)() as sel:
        sel.register(fd, std_selectors.EVENT_READ)
        ready = sel.select(0)
    # the stdlib masks with the key's events; the backend leaves that to
    # the caller (backend.h), so compare the read bit and the raw rule
    if name in ("epoll", "poll") and ready:
        return std_poll_selector_events(fd)
    return ready[0][1] if ready else 0


def test_event_mapping_matches_the_stdlib_selector(backend, pipe) -> None:
    # the writer closed: epoll/poll report the hangup as read and write,
    # select and kqueue report readable
    r, w = pipe
    os.close(w)
    backend.add(r, R, 7)
    assert backend.wait(0) == [(7, std_selector_events(backend.name, r))]


def test_read_and_write_readiness_of_one_fd(backend, pair) -> None:
    """One event per fd, both bits in it; kqueue: one per filter, as the
    stdlib's KqueueSelector reports one (key, events) entry per kevent."""
    a, b = pair
    backend.add(a.fileno(), R | W, 7)
    assert backend.wait(0) == [(7, W)]
    b.send(b"x")
    if backend.name in PER_FILTER:
        assert sorted(backend.wait(0)) == [(7, R), (7, W)]
        assert backend.wait(0, max=1) in ([(7, R)], [(7, W)])
    else:
        assert backend.wait(0) == [(7, R | W)]
        assert backend.wait(0, max=1) == [(7, R | W)]


def test_many_fds_and_small_buffers(backend) -> None:
    socks = [socket.socketpair() for _ in range(40)]
    try:
        for i, (a, b) in enumerate(socks):
            backend.add(a.fileno(), R | W if i % 2 else R, 1000 + i)
            b.send(b"x")
        want = as_reported(backend, [(1000 + i, R | W if i % 2 else R)
                                     for i in range(len(socks))])
        assert sorted(backend.wait(0, max=80)) == want
        # a smaller buffer returns fewer events, each one of the above
        got = backend.wait(0, max=10)
        assert 0 < len(got) <= 10
        assert len(set(got)) == len(got)            # no event twice
        assert set(got) <= set(want) | {(1000 + i, R) for i in range(40)} \
            | {(1000 + i, W) for i in range(40)}
    finally:
        for a, b in socks:
            a.close()
            b.close()


def test_order_of_events(backend) -> None:
    rs, ws = [], []
    try:
        for _ in range(10):
            r, w = os.pipe()
            rs.append(r)
            ws.append(w)
        for i, w in enumerate(reversed(ws)):
            backend.add(w, W, 1000 + i)
        got = backend.wait(0)
        assert sorted(got) == [(1000 + i, W) for i in range(10)]
        tokens = [t for t, _ in got]
        if backend.name == "select":                # ascending fd order
            assert tokens == sorted(tokens, reverse=True)
        elif backend.name == "poll":                # registration order
            assert tokens == [1000 + i for i in range(10)]
        assert len(backend.wait(0, max=3)) == 3
    finally:
        for fd in rs + ws:
            os.close(fd)


def test_many_add_remove_cycles(backend) -> None:
    r, w = os.pipe()
    dups = [os.dup(r) for _ in range(40)]
    try:
        os.write(w, b"x")
        live = {}
        rng = random.Random(1)
        for step in range(3000):
            fd = rng.choice(dups)
            if fd in live:
                backend.remove(fd, R)
                del live[fd]
            else:
                backend.add(fd, R, step)
                live[fd] = step
            if step % 97 == 0:
                assert sorted(backend.wait(0, max=64)) == sorted((t, R) for t in live.values())
        assert sorted(backend.wait(0)) == sorted((t, R) for t in live.values())
    finally:
        for fd in [r, w] + dups:
            os.close(fd)


# ---- waiting: timeouts, the GIL, signals, fork -------------------------------------

def test_timeouts(backend, pipe) -> None:
    backend.add(pipe[0], R, 1)
    t0 = time.monotonic()
    assert backend.wait(50_000_000) == []
    assert 0.045 <= time.monotonic() - t0 < 5
    # sub-resolution timeouts round up, never down to a busy 0
    t0 = time.monotonic()
    assert backend.wait(1) == []
    assert time.monotonic() - t0 < 5


def test_max_zero(backend) -> None:
    if backend.name in KERNEL:                      # epoll_wait and kevent refuse it
        with pytest.raises(OSError) as info:
            backend.wait(0, max=0)
        assert info.value.errno == errno.EINVAL
    else:
        assert backend.wait(0, max=0) == []


def test_changes_during_wait(backend, pipe) -> None:
    """wait() runs without the GIL: another thread changes the registrations
    meanwhile.  poll/select wait on the snapshot they took; the kernel's
    backends see the change."""
    r, w = pipe
    dups = [os.dup(r) for _ in range(30)]
    try:
        for i, fd in enumerate(dups):
            backend.add(fd, R, i)
        result = []
        t = threading.Thread(target=lambda: result.append(backend.wait(10_000_000_000)))
        t.start()
        time.sleep(0.05)
        with pytest.raises(RuntimeError, match="during wait"):
            backend.close()                         # refused, not freed under the waiter
        with pytest.raises(RuntimeError, match="concurrent wait"):
            backend.wait(0)                         # one wait at a time (backend.h)
        for fd in dups:
            backend.remove(fd, R)
        for i, fd in enumerate(dups[:10]):
            backend.add(fd, R, 100 + i)
        os.write(w, b"x")
        t.join(10)
        assert not t.is_alive()
        new = [(100 + i, R) for i in range(10)]
        if backend.name in SNAPSHOT:
            assert sorted(result[0]) == [(i, R) for i in range(30)]
        else:
            assert sorted(result[0]) == new
        assert sorted(backend.wait(0)) == new
    finally:
        for fd in dups:
            os.close(fd)


def test_wait_releases_the_gil(backend, pipe) -> None:
    """The syscall probes of the debug build count the wait's kernel call
    among those made without the GIL."""
    from fastsel import _fastsel
    backend.add(pipe[0], R, 1)
    probe = {"epoll": "epoll_wait", "kqueue": "kevent", "poll": "poll",
             "select": "select"}[backend.name]
    before = _fastsel._debug_syscalls()[probe]
    assert backend.wait(1_000_000) == []
    after = _fastsel._debug_syscalls()[probe]
    assert after[0] > before[0]                     # a call without the GIL
    assert after[1] == before[1]                    # none with it


def test_eintr_is_returned(backend, pipe, alarm_handler) -> None:
    """No retry in the backend (backend.h: the caller retries, PEP 475)."""
    signal.signal(signal.SIGALRM, lambda *a: None)
    backend.add(pipe[0], R, 1)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    t0 = time.monotonic()
    with pytest.raises(InterruptedError):
        backend.wait(5_000_000_000)
    assert time.monotonic() - t0 < 4


def test_signal_handler_exception_propagates(backend, pipe, alarm_handler) -> None:
    class Stop(Exception):
        pass

    def handler(*args):
        raise Stop
    signal.signal(signal.SIGALRM, handler)
    backend.add(pipe[0], R, 1)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    with pytest.raises(Stop):
        backend.wait(5_000_000_000)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_after_fork(backend, pair) -> None:
    """The child's copy of a kqueue backend is closed (kqueues are not
    inherited); every backend's free() in the child leaves the parent's
    kernel object alone."""
    a, _ = pair
    backend.add(a.fileno(), R, 5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok = True
            if backend.name == "kqueue":
                ok = backend.fileno() == -1
                try:
                    backend.add(a.fileno(), W, 1)
                except OSError as e:
                    ok = ok and e.errno == errno.EBADF
                else:
                    ok = False
            backend.close()                         # must not close the parent's fd
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)              # bounded by the watchdog
    assert os.waitstatus_to_exitcode(status) == 0
    if backend.name in KERNEL:
        assert backend.fileno() >= 0 and os.fstat(backend.fileno())
    backend.remove(a.fileno(), R)
    backend.add(a.fileno(), W, 9)
    assert backend.wait(0) == [(9, W)]
