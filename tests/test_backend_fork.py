"""fork() while another thread is inside a PollSelector/SelectSelector wait.

The poll and select backends guard their registrations with a mutex that a
wait() holds while it snapshots them.  A fork at that moment hands the child
a mutex locked by a thread that does not exist there: the child must neither
lock nor destroy it (its selector opens a fresh backend and frees the old
one's memory only).  The forks are repeated while a thread keeps taking
snapshots, so that some of them land inside one.
"""
from __future__ import annotations

import socket
import threading
import time

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
