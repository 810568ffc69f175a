"""fastsel.select() past FD_SETSIZE: fds >= 1024 and more than 1024 entries.

The stdlib refuses both (ValueError), so readiness is compared with what the
stdlib's poll() reports for the same fds.
"""
from __future__ import annotations

import errno
import os
import resource
import select as std_select
import threading
import time

import pytest

import fastsel

FD_SETSIZE = 1024
BIG = (1500, 4000)
NEEDED = 4200

pytestmark = pytest.mark.c_impl


@pytest.fixture(scope="module", autouse=True)
def nofile_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < NEEDED:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {NEEDED}: cannot open "
                    f"fd {max(BIG)} and enough others")
    if soft != resource.RLIM_INFINITY and soft < NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def big_pipes():
    """{fd: role}: a pipe's read and write ends dup'ed to the BIG numbers,
    plus a second pipe's ends; returns (r_big, w_big, r2_big, w2_big)."""
    wanted = [BIG[0], BIG[1], BIG[0] + 1, BIG[1] + 1]
    if any(is_open(fd) for fd in wanted):
        pytest.skip(f"one of fds {wanted} is already open")
    opened = []
    try:
        for _ in range(2):
            r, w = os.pipe()
            opened += [r, w]
        r1, w1, r2, w2 = opened
        for src, dst in zip((r1, w1, r2, w2), wanted):
            os.dup2(src, dst)
        for fd in opened:
            os.close(fd)
        opened = list(wanted)
        yield tuple(wanted)
    finally:
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass


def poll_readiness(fds):
    """What the stdlib's poll() says: readable / writable / exceptional."""
    p = std_select.poll()
    for fd in fds:
        p.register(fd, std_select.POLLIN | std_select.POLLOUT | std_select.POLLPRI)
    ev = dict(p.poll(0))
    # select(2) reports HUP/ERR as readable (and ERR as writable)
    rd = {fd for fd, e in ev.items()
          if e & (std_select.POLLIN | std_select.POLLHUP | std_select.POLLERR)}
    wr = {fd for fd, e in ev.items() if e & (std_select.POLLOUT | std_select.POLLERR)}
    ex = {fd for fd, e in ev.items() if e & std_select.POLLPRI}
    return rd, wr, ex


def test_stdlib_refuses_what_fastsel_does(big_pipes):
    r, w, r2, w2 = big_pipes
    with pytest.raises(ValueError, match=r"^filedescriptor out of range in select\(\)$"):
        std_select.select([r], [], [], 0)
    assert fastsel.select([r], [w], [r, w], 0) == ([], [w], [])
    os.write(w, b"x")
    assert fastsel.select([r], [w], [r, w], 0) == ([r], [w], [])


def test_big_fds_readiness_matches_poll(big_pipes):
    r, w, r2, w2 = big_pipes
    fds = [r, w, r2, w2]
    for step in range(3):
        if step == 1:
            os.write(w, b"data")
        if step == 2:
            os.close(w2)
            fds.remove(w2)
        rd, wr, ex = poll_readiness(fds)
        got = fastsel.select(fds, fds, fds, 0)
        assert got == ([fd for fd in fds if fd in rd], [fd for fd in fds if fd in wr],
                       [fd for fd in fds if fd in ex])


def test_more_than_fd_setsize_entries_of_one_fd():
    r, w = os.pipe()
    try:
        os.write(w, b"x")
        rlist = [r] * (FD_SETSIZE + 100)
        with pytest.raises(ValueError, match=r"^too many file descriptors in select\(\)$"):
            std_select.select(rlist, [], [], 0)
        got = fastsel.select(rlist, [w] * 2000, [], 0)
        assert got[0] == rlist and got[0] is not rlist
        assert got[1] == [w] * 2000 and got[2] == []
    finally:
        os.close(r)
        os.close(w)


def test_more_than_fd_setsize_distinct_fds():
    pipes = []
    try:
        for _ in range(700):
            pipes.append(os.pipe())
        for i, (r, w) in enumerate(pipes):
            if i % 3 == 0:
                os.write(w, b"x")
        fds = [fd for pair in pipes for fd in pair]
        assert len(fds) > FD_SETSIZE and max(fds) >= FD_SETSIZE
        rd, wr, ex = poll_readiness(fds)
        got = fastsel.select(fds, fds, fds, 0)
        assert got == ([fd for fd in fds if fd in rd], [fd for fd in fds if fd in wr],
                       [])
        assert len(got[0]) == len(range(0, 700, 3))
        with pytest.raises(ValueError):
            std_select.select(fds, [], [], 0)
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_closed_fds_past_fd_setsize_are_ebadf(big_pipes):
    r, w, r2, w2 = big_pipes
    os.close(w2)    # the highest of them
    os.close(r2)    # below the open w
    for lists in (([r], [w2], []), ([w2], [w], [r]), ([r2], [w], []),
                  ([], [w], [r2, r])):
        with pytest.raises(OSError) as info:
            fastsel.select(*lists, 0)
        assert info.value.errno == errno.EBADF
    # far past the fd table: still EBADF, and no giant allocation
    with pytest.raises(OSError) as info:
        fastsel.select([2**31 - 1], [], [], 0)
    assert info.value.errno == errno.EBADF


def test_blocking_on_a_big_fd(big_pipes):
    r, w, _, _ = big_pipes
    t = threading.Timer(0.05, os.write, (w, b"x"))
    t.start()
    try:
        t0 = time.monotonic()
        assert fastsel.select([r], [], [], 5) == ([r], [], [])
        assert time.monotonic() - t0 < 4
    finally:
        t.join()


def test_poll_objects_with_big_fds(big_pipes):
    r, w, r2, w2 = big_pipes
    os.write(w, b"x")
    out = []
    for mod in (std_select, fastsel):
        p = mod.poll()
        for fd in big_pipes:
            p.register(fd)
        out.append(p.poll(0))
    assert out[0] == out[1]
    assert dict(out[1])[r] & std_select.POLLIN


@pytest.mark.debug_build
@pytest.mark.parametrize("name", ["poll", "select"])
def test_backend_with_big_fds(big_pipes, name):
    """The poll/select backends (through the debug build's entry point, see
    test_backends.py): select's has no FD_SETSIZE limit."""
    from fastsel import _fastsel
    r, w, r2, w2 = big_pipes
    b = _fastsel._debug_backend(name)
    try:
        b.add(r, 1, 10)
        b.add(w, 2, 11)
        b.add(r2, 1, 12)
        assert b.wait(0) == [(11, 2)]
        os.write(w, b"x")
        assert b.wait(0) == [(10, 1), (11, 2)]
        b.remove(w, 2)
        os.close(w2)
        # r2 at EOF: a hangup is readable to select, read and write to poll
        # (the stdlib's PollSelector maps POLLHUP so)
        assert b.wait(0) == [(10, 1), (12, 1 if name == "select" else 3)]
    finally:
        b.close()
