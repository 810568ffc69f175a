"""The selector core's own guarantees (src/_fastsel/selector.h and sel_*.c):
interest changes made without the GIL where the stdlib's pollers release it,
safe against concurrent close()/register()/select(); the epoll drain's
duplicate check for every fd; PEP 475 retries of huge timeouts.

Tests that read the C core's probes or knobs need a FASTSEL_DEBUG=1 build and
say so when skipped.  Every test is bounded in time.
"""
from __future__ import annotations

import random
import selectors as std_selectors
import signal
import socket
import sys
import textwrap
import threading
import time

import pytest

import fastsel
from _helpers import child_env, run_python

pytestmark = pytest.mark.c_impl

R, W = fastsel.EVENT_READ, fastsel.EVENT_WRITE

try:
    from fastsel import _fastsel
except ImportError:             # fastsel serves the stdlib here (c_impl skips)
    _fastsel = None

needs_debug = pytest.mark.debug_build

# the kinds whose backend makes a kernel call per interest change, and its probe
KERNEL_CTL = [(name, probe) for name, probe in (("EpollSelector", "epoll_ctl"),
                                                ("KqueueSelector", "kevent"))
              if hasattr(fastsel, name)]
KINDS = [k for k in ("EpollSelector", "PollSelector", "SelectSelector",
                     "KqueueSelector") if hasattr(fastsel, k)]


@pytest.fixture
def socks():
    """socketpair() maker; every socket is closed afterwards."""
    made = []

    def make():
        a, b = socket.socketpair()
        made.extend((a, b))
        return a, b
    yield make
    for s in made:
        s.close()


# ---- 1. interest changes without the GIL ---------------------------------------

@needs_debug
@pytest.mark.parametrize("name,probe", KERNEL_CTL)
def test_interest_changes_release_the_gil(name, probe, socks):
    """register/modify/unregister reach the kernel without the GIL, as
    select.epoll's (and select.kqueue's) methods do."""
    a, _ = socks()
    sel = getattr(fastsel, name)()
    try:
        before = _fastsel._debug_syscalls()[probe]
        sel.register(a, R)
        sel.modify(a, R | W)
        sel.unregister(a)
        after = _fastsel._debug_syscalls()[probe]
    finally:
        sel.close()
    without_gil, with_gil = (after[0] - before[0], after[1] - before[1])
    assert with_gil == 0, (before, after)
    assert without_gil >= 3, (before, after)


@needs_debug
def test_poll_and_select_keep_the_gil(socks):
    """Their interest changes touch only the fd table: no kernel call at all."""
    a, _ = socks()
    for name in ("PollSelector", "SelectSelector"):
        before = _fastsel._debug_syscalls()
        sel = getattr(fastsel, name)()
        sel.register(a, R)
        sel.modify(a, W)
        sel.unregister(a)
        sel.close()
        assert _fastsel._debug_syscalls() == before, name


class _Yields:
    """Data whose comparison gives up the GIL."""
    def __ne__(self, other):
        time.sleep(0)
        return True


def _select_per_key(sel):
    """select(0) as [(key, events)], one per key: KqueueSelector reports the
    read and write readiness of one fd as two entries (one per kevent, as
    the stdlib's), the other classes as one."""
    merged = {}
    for k, ev in sel.select(0):
        merged[k.fd] = (k, merged.get(k.fd, (k, 0))[1] | ev)
    return list(merged.values())


def _check_consistent(sel, socks_by_fd):
    """The key table and the kernel agree: the map lists each key once, and a
    select(0) reports exactly the registered fds (all readable and writable)
    with their keys' events; after unregistering everything, each fd can be
    registered again (no kernel leftover)."""
    keys = list(sel.get_map().values())
    fds = [k.fd for k in keys]
    assert len(fds) == len(set(fds)) == len(sel.get_map())
    for k in keys:
        assert sel.get_key(k.fileobj) is k
    got = {k.fd: ev for k, ev in _select_per_key(sel)}
    assert got == {k.fd: k.events for k in keys}
    for k in keys:
        sel.unregister(k.fileobj)
    assert len(sel.get_map()) == 0 and sel.select(0) == []
    for fd, s in socks_by_fd.items():
        sel.register(s, R)
    assert {k.fd for k, ev in sel.select(0)} == set(socks_by_fd)


@pytest.mark.parametrize("name", KINDS)
def test_concurrent_register_unregister_select_close(name, socks):
    """Threads register/modify/unregister/select on one selector while it is
    closed under them: no crash, stdlib exceptions only, and a consistent
    table and kernel afterwards."""
    pairs = [socks() for _ in range(12)]
    for a, b in pairs:
        b.send(b"x")                       # every `a` readable (and writable)
    by_fd = {a.fileno(): a for a, _ in pairs}
    expected = (KeyError, RuntimeError, OSError, ValueError)
    errors = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        deadline = time.monotonic() + 2.0
        rounds = 0
        while time.monotonic() < deadline:
            rounds += 1
            sel = getattr(fastsel, name)()
            stop = threading.Event()

            def churn(seed):
                rnd = random.Random(seed)
                while not stop.is_set():
                    a = rnd.choice(pairs)[0]
                    op = rnd.randrange(4)
                    try:
                        if op == 0:
                            sel.register(a, rnd.choice((R, W, R | W)), seed)
                        elif op == 1:
                            sel.unregister(a)
                        elif op == 2:
                            # a data whose __ne__ lets other threads run
                            # between the kernel call and the key store
                            sel.modify(a, rnd.choice((R, W, R | W)),
                                       rnd.choice((None, _Yields())))
                        else:
                            sel.select(0)
                    except expected:
                        pass
                    except BaseException as exc:     # pragma: no cover - the failure
                        errors.append(exc)
                        return

            threads = [threading.Thread(target=churn, args=(rounds * 10 + i,))
                       for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.05)
            if rounds % 2:
                sel.close()                 # under the threads' feet
                time.sleep(0.01)
            stop.set()
            for t in threads:
                t.join(10)
                assert not t.is_alive()
            if not rounds % 2:
                _check_consistent(sel, by_fd)
            sel.close()
            with pytest.raises(RuntimeError, match="Selector is closed"):
                sel.register(pairs[0][0], R)
    finally:
        sys.setswitchinterval(old_interval)
    assert not errors, errors
    assert rounds >= 2


# ---- 1b. other threads' calls while one call is in the kernel ----------------------
# A debug build's hold gate keeps the next epoll_ctl/kevent from entering the
# kernel until released: another thread's call on the same fd then runs while
# the held one is "in the kernel", as it would while a FUSE file's poll hook
# waits.  Were the GIL kept there, nothing could run until the gate's timeout.
# The outcome must be one of the stdlib's own (with its poller call run just
# before or just after the other thread's call), and leave the kernel as the
# key table says.  (The other call's own kernel call, if it makes one, waits
# for the held one: one selector's calls enter the kernel in the order made.)

HOLD_TIMEOUT = 30.0                 # reached only if the GIL is kept (a failure)

# held call | the other thread's call; `a` is registered for reading first
OVERLAPS = {
    "modify|modify-data": (lambda sel, a, b: sel.modify(a, W, "t"),
                           lambda sel, a, b: sel.modify(a, R, "m")),
    "modify|modify-events": (lambda sel, a, b: sel.modify(a, W, "t"),
                             lambda sel, a, b: sel.modify(a, R | W, "m")),
    "modify|unregister": (lambda sel, a, b: sel.modify(a, W, "t"),
                          lambda sel, a, b: sel.unregister(a)),
    "modify|unregister-register": (lambda sel, a, b: sel.modify(a, W, "t"),
                                   (lambda sel, a, b: sel.unregister(a),
                                    lambda sel, a, b: sel.register(a, R, "m"))),
    "unregister|register": (lambda sel, a, b: sel.unregister(a),
                            lambda sel, a, b: sel.register(a, W, "m")),
    "register|unregister": (lambda sel, a, b: sel.register(b, R, "t"),
                            lambda sel, a, b: sel.unregister(b)),
    "register|modify": (lambda sel, a, b: sel.register(b, R, "t"),
                        lambda sel, a, b: sel.modify(b, W, "m")),
    "register|modify-data": (lambda sel, a, b: sel.register(b, R, "t"),
                             lambda sel, a, b: sel.modify(b, R, "m")),
}


def _key_view(k, names):
    return None if k is None else (names[id(k.fileobj)], k.events, k.data)


def _overlap_outcome(sel, a, b, held_out, other_out):
    """What a user of sel can see afterwards, with fileobjs as names."""
    names = {id(a): "a", id(b): "b"}

    def view(out):
        if out[0] == "ok" and isinstance(out[1], tuple) and hasattr(out[1], "fileobj"):
            return ("ok", _key_view(out[1], names))
        return out[:3] if out[0] == "raise" else ("ok", None)
    keys = sorted((_key_view(k, names) for k in sel.get_map().values()), key=repr)
    ready = sorted((names[id(k.fileobj)], ev, k.events) for k, ev in _select_per_key(sel))
    return view(held_out), view(other_out), keys, ready


def _outcome(fn):
    try:
        return ("ok", fn())
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        return ("raise", type(exc), str(exc))


class _HookedPoller:
    """The stdlib's poller object, running `other` once around its first
    interest change (before or after it), on the calling thread."""
    def __init__(self, poller, other, when):
        self._poller, self._other, self._when, self.other_out = poller, other, when, None

    def __getattr__(self, name):
        attr = getattr(self._poller, name)
        if name not in ("register", "modify", "unregister", "control") or self._other is None:
            return attr

        def call(*args):
            other, self._other = self._other, None
            if self._when == "before":
                self.other_out = _outcome(other)
            try:
                return attr(*args)
            finally:
                if self._when == "after":
                    self.other_out = _outcome(other)
        return call


def _steps(other):
    """The other thread's call as a tuple of steps (most are one call)."""
    return other if isinstance(other, tuple) else (other,)


def _run_steps(steps, sel, a, b):
    results = tuple(step(sel, a, b) for step in steps)
    return results[0] if len(results) == 1 else results


def _stdlib_overlaps(name, case, a, b):
    """The stdlib's outcomes with the other call run just before the held
    call's poller call, just after it, or after the whole held call (its
    bookkeeping, run once its poller call returned, may come first); an
    other call of several steps may also be split around that
    bookkeeping."""
    held, other = OVERLAPS[case]
    steps = _steps(other)
    found = []
    for when, split in [("before", len(steps))] + [
            ("after", k) for k in range(len(steps) + 1)]:
        sel = getattr(std_selectors, name)()
        try:
            sel.register(a, R, "0")
            hook = _HookedPoller(
                sel._selector, lambda: _run_steps(steps[:split], sel, a, b), when)
            sel._selector = hook
            held_out = _outcome(lambda: held(sel, a, b))
            other_out = hook.other_out
            if split < len(steps) and other_out[0] == "ok":
                rest = _outcome(lambda: _run_steps(steps[split:], sel, a, b))
                other_out = rest if rest[0] == "raise" or split == 0 else (
                    "ok", (other_out[1], rest[1]))
            found.append(_overlap_outcome(sel, a, b, held_out, other_out))
        finally:
            sel._selector = hook._poller
            sel.close()
    return found


def _consistent(outcomes):
    """The stdlib's outcomes, each also as the kernel leaves it: where the
    stdlib stores a modify()'s key over another thread's unregister (a key
    its poller no longer has, so never reported), fastsel keeps the
    unregister (docs/differences.md)."""
    found = list(outcomes)
    for held, other, keys, ready in outcomes:
        reported = {(n, ev) for n, _, ev in ready}
        kept = [k for k in keys if (k[0], k[1]) in reported]
        found.append((held, other, kept, ready))
    return found


@needs_debug
@pytest.mark.parametrize("case", sorted(OVERLAPS))
@pytest.mark.parametrize("name,probe", KERNEL_CTL)
def test_calls_while_another_is_in_the_kernel(name, probe, case, socks):
    (a, a2), (b, b2) = socks(), socks()
    a2.send(b"x")
    b2.send(b"x")                           # a and b: readable and writable
    held, other = OVERLAPS[case]
    sel = getattr(fastsel, name)()
    try:
        sel.register(a, R, "0")
        result = {}
        _fastsel._debug_hold(probe, HOLD_TIMEOUT)
        try:
            t = threading.Thread(target=lambda: result.update(
                held=_outcome(lambda: held(sel, a, b))))
            t.start()
            deadline = time.monotonic() + HOLD_TIMEOUT / 2
            while _fastsel._debug_held() == 0:
                assert t.is_alive() and time.monotonic() < deadline, \
                    "the held call kept the GIL (or never reached the kernel)"
                time.sleep(0.001)
            # the other call runs its bookkeeping now; a kernel call of its
            # waits for the held one (the selector's calls enter the kernel
            # one at a time, in the order they were made)
            t2 = threading.Thread(target=lambda: result.update(
                other=_outcome(lambda: _run_steps(_steps(other), sel, a, b))))
            t2.start()
            while t2.is_alive() and _fastsel._debug_queued() == 0:
                assert time.monotonic() < deadline, "the other call is stuck"
                time.sleep(0.001)
            assert _fastsel._debug_held() == 1, "the held call ended early"
        finally:
            _fastsel._debug_release()
        t.join(HOLD_TIMEOUT)
        t2.join(HOLD_TIMEOUT)
        assert not t.is_alive() and not t2.is_alive()
        got = _overlap_outcome(sel, a, b, result["held"], result["other"])
        if hasattr(std_selectors, name):
            assert got in _consistent(_stdlib_overlaps(name, case, a, b))
        # the kernel holds what the table says: each key's events are
        # reported (both sockets are ready both ways), and nothing is left
        assert got[3] == sorted((n, ev, ev) for n, ev, _ in got[2])
        for k in list(sel.get_map().values()):
            sel.unregister(k.fileobj)
        assert sel.select(0) == []
        sel.register(a, R | W)
        sel.register(b, R | W)
        assert sorted(ev for k, ev in _select_per_key(sel)) == [R | W, R | W]
    finally:
        _fastsel._debug_release()
        sel.close()


# ---- 2. the drain's duplicate check ---------------------------------------------

DRAIN_SCRIPT = textwrap.dedent("""
    import os, resource, socket, sys
    import fastsel
    n = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))
    a, b = socket.socketpair()
    b.send(b"x")                            # a (and every dup of it) readable
    fds = [os.dup(a.fileno()) for _ in range(n)]
    sel = fastsel.EpollSelector()
    for fd in fds:
        sel.register(fd, fastsel.EVENT_READ)
    for _ in range(3):
        got = [k.fd for k, ev in sel.select(0)]
        assert len(got) == len(set(got)), ("repeated", len(got) - len(set(got)))
        assert sorted(got) == sorted(fds), (len(got), len(fds))
    print("ok", len(got))
""")


@pytest.mark.skipif(not hasattr(fastsel, "EpollSelector"), reason="epoll is Linux's")
@pytest.mark.parametrize("far", [
    pytest.param(False, id="direct"),
    pytest.param(True, id="far", marks=needs_debug),
])
def test_drain_reports_each_fd_once(far):
    """More ready fds than one epoll batch (1024): select() drains the rest
    and reports each fd once, also fds in the far list (>= 1 << 20, which no
    fd here can reach: a debug build lowers the threshold to 64)."""
    import resource
    n = 1100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < n + 64:
        pytest.fail(f"RLIMIT_NOFILE hard limit below {n + 64}: cannot open the fds")
    env = None
    if far:
        env = child_env(FASTSEL_DEBUG_DIRECT_MAX="64")
    proc = run_python(["-c", DRAIN_SCRIPT, str(n)], timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok", str(n)]


# ---- 4. huge timeouts ---------------------------------------------------------------

# The largest timeout each class takes (epoll's and poll's: a C int of ms).
HUGE = [9223372036, 2147483]


def _huge_timeout(name, sock):
    """The largest of HUGE that the stdlib's class accepts, with sock ready."""
    std = getattr(std_selectors, name, None)
    if std is None:
        return HUGE[-1]
    for t in HUGE:
        s = std()
        try:
            s.register(sock, W)
            s.select(t)
            return t
        except OverflowError:
            continue
        finally:
            s.close()
    pytest.fail(f"{name}: no huge timeout accepted")


@pytest.mark.parametrize("name", KINDS)
def test_huge_timeout_with_a_ready_fd_returns_at_once(name, socks):
    a, _ = socks()
    t = _huge_timeout(name, a)
    sel = getattr(fastsel, name)()
    try:
        sel.register(a, W)
        t0 = time.monotonic()
        assert [(k.fileobj, ev) for k, ev in sel.select(t)] == [(a, W)]
        assert time.monotonic() - t0 < 5
    finally:
        sel.close()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
@pytest.mark.parametrize("name", KINDS)
def test_signal_during_huge_timeout_keeps_waiting(name, socks):
    """After a handler that does not raise, the wait goes on (PEP 475) with
    what is left of a timeout of centuries: no wrapped deadline that ends
    it early with []."""
    a, b = socks()
    t = _huge_timeout(name, a)
    sel = getattr(fastsel, name)()
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        if len(calls) == 2:
            b.send(b"x")                    # the second signal makes a ready

    old = signal.signal(signal.SIGALRM, handler)
    try:
        sel.register(a, R)
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        t0 = time.monotonic()
        result = sel.select(t)
        dt = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        sel.close()
    assert [(k.fileobj, ev) for k, ev in result] == [(a, R)]
    assert len(calls) >= 2 and dt < 30, (calls, dt)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="POSIX interval timers")
@pytest.mark.parametrize("name", KINDS)
def test_handler_that_closes_ends_the_wait(name, socks):
    """fastsel's rule for a select() whose selector a signal handler closed:
    the wait ends with [] (its keys are gone) instead of waiting on a freed
    backend."""
    a, _ = socks()
    sel = getattr(fastsel, name)()
    sel.register(a, R)
    old = signal.signal(signal.SIGALRM, lambda *args: sel.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        assert sel.select(None) == []
        assert time.monotonic() - t0 < 30
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(RuntimeError, match="Selector is closed"):
        sel.select(0)
