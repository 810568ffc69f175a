"""fork() while another thread is inside a PollSelector/SelectSelector wait,
inside a modify(), and what the child's kernel object then holds.

The poll and select backends guard their registrations with a mutex that a
wait() holds while it snapshots them.  A fork at that moment hands the child
a mutex locked by a thread that does not exist there: the child must neither
lock nor destroy it (its selector opens a fresh backend and frees the old
one's memory only).  The forks are repeated while a thread keeps taking
snapshots, so that some of them land inside one.
"""
from __future__ import annotations

import os
import selectors as std_selectors
import socket
import threading
import time
import warnings

import pytest

import fastsel

from _helpers import fork_child

pytestmark = pytest.mark.c_impl


@pytest.mark.parametrize("name", ["PollSelector", "SelectSelector"])
def test_fork_while_a_thread_snapshots(name):
    R = fastsel.EVENT_READ
    pairs = [socket.socketpair() for _ in range(40)]
    extra = socket.socketpair()
    sel = getattr(fastsel, name)()
    for i, (a, _) in enumerate(pairs):
        sel.register(a, R, i)
    stop = threading.Event()
    errors = []

    def churn():
        # select(0) after each change: every wait takes a snapshot under the
        # backend's lock, released between calls
        try:
            while not stop.is_set():
                sel.select(0)
                time.sleep(0)
        except BaseException as e:      # noqa: BLE001
            errors.append(e)

    def child() -> int:
        # the churning thread does not exist here: the selector must work
        sel.register(extra[0], R, "x")
        extra[1].send(b"!")
        got = [k.data for k, _ in sel.select(1.0)]
        sel.close()
        return 0 if got == ["x"] else 3

    t = threading.Thread(target=churn)
    t.start()
    try:
        for i in range(30):
            a, _ = pairs[i % len(pairs)]
            sel.unregister(a)           # dirty: the next wait snapshots
            sel.register(a, R, i % len(pairs))
            assert fork_child(child) == 0, f"fork {i}"
    finally:
        stop.set()
        t.join(10)
        sel.close()
        for a, b in pairs + [extra]:
            a.close()
            b.close()
    assert not t.is_alive() and not errors


# ---- fork and the interest the kernel holds ----------------------------------

def _child_modifies_after_fork(mod, name):
    """register, modify(fd, 0) (modify() does not validate events), fork; the
    child's modify() of the fd and select(0), as the child reports them."""
    a, b = socket.socketpair()
    b.send(b"x")
    sel = getattr(mod, name)()
    rd, wr = os.pipe()
    try:
        sel.register(a, 1)
        sel.modify(a, 0)

        def child():
            try:
                k = sel.modify(a, 1)
                out = f"ok {k.events} {[ev for _, ev in sel.select(0)]}"
            except Exception as exc:            # noqa: BLE001 - reported
                out = f"{type(exc).__name__} {a.fileno() in sel.get_map()}"
            os.write(wr, out.encode())
            return 0
        assert fork_child(child) == 0
        return os.read(rd, 200).decode()
    finally:
        os.close(rd)
        os.close(wr)
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("name", [n for n in ("EpollSelector", "PollSelector")
                                  if hasattr(std_selectors, n)])
def test_fork_keeps_an_empty_interest(name):
    """The child's kernel object holds what the parent's held, a registration
    with no events included (the stdlib's epoll object is shared)."""
    assert (_child_modifies_after_fork(fastsel, name)
            == _child_modifies_after_fork(std_selectors, name))


@pytest.mark.debug_build
@pytest.mark.skipif(not hasattr(fastsel, "EpollSelector"), reason="epoll is Linux's")
def test_fork_inside_a_modify_leaves_the_parents_epoll_alone():
    """A child forked by data.__ne__ inside a modify() whose kernel call
    another thread overlapped must not resync the parent's epoll (which it
    shares): after the parent unregistered the fd, it can register it again."""
    from fastsel import _fastsel
    R, W = fastsel.EVENT_READ, fastsel.EVENT_WRITE
    a, b = socket.socketpair()
    b.send(b"x")
    sel = fastsel.EpollSelector()
    parent = os.getpid()
    rd, wr = os.pipe()
    status = []

    class ForksInNe:
        def __ne__(self, other):
            if os.fork() == 0:
                os.read(rd, 1)          # the child waits for the parent
            return True

    def held():
        sel.modify(a, R | W, ForksInNe())
        if os.getpid() != parent:
            os._exit(0)                 # the child ends after its modify()
    try:
        sel.register(a, R)
        _fastsel._debug_hold("epoll_ctl", 30.0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork + threads
                t = threading.Thread(target=held)
                t.start()
                deadline = time.monotonic() + 15
                while _fastsel._debug_held() == 0:
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                sel.modify(a, R, "other")       # a change beside the held call
        finally:
            _fastsel._debug_release()
        t.join(30)
        assert not t.is_alive()
        sel.unregister(a)
        os.write(wr, b"x")                      # the child may go on now
        pid, st = os.wait()
        status.append(os.waitstatus_to_exitcode(st))
        assert sel.select(0) == []
        sel.register(a, R)                      # FileExistsError if the child re-added it
        assert [ev for _, ev in sel.select(0)] == [R]
    finally:
        _fastsel._debug_release()
        os.close(rd)
        os.close(wr)
        sel.close()
        a.close()
        b.close()
    assert status == [0]


@pytest.mark.debug_build
@pytest.mark.skipif(not hasattr(fastsel, "EpollSelector"), reason="epoll is Linux's")
def test_fork_during_another_threads_modify_rebuilds_from_the_keys():
    """A fork while another thread's modify() is in epoll_ctl: the child
    rebuilds its epoll from its keys (the key still says READ|WRITE there,
    the modify having not stored its key yet), so a writable socket is
    reported as writable, as the key says."""
    from fastsel import _fastsel
    R, W = fastsel.EVENT_READ, fastsel.EVENT_WRITE
    a, b = socket.socketpair()
    b.send(b"x")                                # a: readable and writable
    sel = fastsel.EpollSelector()

    def child():
        key = sel.get_key(a)
        ready = [ev for k, ev in sel.select(0) if k.fileobj is a]
        return 0 if (key.events, ready) == (R | W, [R | W]) else 1
    try:
        sel.register(a, R | W)
        _fastsel._debug_hold("epoll_ctl", 30.0)
        try:
            t = threading.Thread(target=lambda: sel.modify(a, R))
            t.start()
            deadline = time.monotonic() + 15
            while _fastsel._debug_held() == 0:
                assert time.monotonic() < deadline
                time.sleep(0.001)
            status = fork_child(child)
        finally:
            _fastsel._debug_release()
        t.join(30)
        assert not t.is_alive()
        assert status == 0
        assert sel.get_key(a).events == R       # the parent goes on as before
        assert [ev for _, ev in sel.select(0)] == [R]
    finally:
        _fastsel._debug_release()
        sel.close()
        a.close()
        b.close()
