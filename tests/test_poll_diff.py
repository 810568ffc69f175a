"""select.poll() objects: fastsel against the stdlib, call for call (the
poll/select backends of backend.h are tested in test_backends.py)."""
from __future__ import annotations

import copy
import decimal
import fractions
import os
import pickle
import random
import select as std_select
import signal
import sys
import threading
import time

import pytest

import fastsel

from _helpers import (FileNo, FileNoRaises, FloatAndIndex, FloatOnly, timeout_objects,
                      wait_until_blocked)
from conftest import differential

BOTH = [std_select, fastsel]


@pytest.fixture
def sockpair(pair):
    # the backend tests' name for conftest's pair
    return pair


def unused_fds(count, start=3000):
    """fds that are not open (poll reports POLLNVAL for them)."""
    out = []
    fd = start
    while len(out) < count:
        try:
            os.fstat(fd)
        except OSError:
            out.append(fd)
        fd += 1
    return out


class Index:
    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v


class Float:
    def __float__(self):
        return 0.0


class IntSub(int):
    pass


def with_poll(fn, *register):
    """fn(poll_object) after registering (fd, mask) pairs, for both impls."""
    def run(impl):
        p = impl.select.poll()
        for fd, mask in register:
            p.register(fd, mask)
        return fn(p)
    return run


# --- module level --------------------------------------------------------

def test_poll_constants_match_stdlib():
    std = {k: v for k, v in vars(std_select).items() if k.startswith("POLL")}
    fast = {k: v for k, v in vars(fastsel).items() if k.startswith("POLL")}
    assert fast == std
    assert all(type(v) is int for v in fast.values())


@pytest.mark.parametrize("call", [
    lambda s: s.poll(1),
    lambda s: s.poll(1, 2),
    lambda s: s.poll(a=1),
    lambda s: s.poll(1, a=1),
    lambda s: type(s.poll(**{})).__name__,
    lambda s: type(s.poll())(),
    lambda s: type(s.poll())(1),
    lambda s: type(s.poll()).__new__(type(s.poll())),
    lambda s: s.poll().x,
    lambda s: setattr(s.poll(), "x", 1),
    lambda s: s.poll().__dict__,
    lambda s: s.poll().__weakref__,
    lambda s: type(s.poll()).__name__,
    lambda s: type(s.poll()).__qualname__,
    lambda s: type(s.poll()).__module__,
    lambda s: repr(type(s.poll())),
    lambda s: repr(s.poll()).split(" at ")[0],
    lambda s: type("Sub", (type(s.poll()),), {}),
    lambda s: sorted(n for n in dir(s.poll()) if not n.startswith("__")),
    lambda s: hash(s.poll()) is not None,
    lambda s: s.poll() == s.poll(),
    lambda s: pickle.dumps(s.poll()),
    lambda s: copy.copy(s.poll()),
    lambda s: copy.deepcopy(s.poll()),
    lambda s: s.poll().__reduce_ex__(2),
    lambda s: [m.__text_signature__ for m in
               (s.poll().register, s.poll().modify, s.poll().unregister,
                s.poll().poll, s.poll)],
], ids=["arg", "args", "kw", "arg+kw", "emptykw", "instantiate",
        "instantiate-arg", "__new__", "getattr", "setattr", "__dict__",
        "__weakref__", "name", "qualname", "module", "type-repr", "repr",
        "subclass", "dir", "hash", "eq", "pickle", "copy", "deepcopy",
        "reduce", "signatures"])
def test_module_function_and_type(call):
    differential(lambda impl: call(impl.select))


def _type_changes(select):
    """Set, read and delete attributes of the poll type, replace and delete
    one of its methods: what each step gives.  The type is restored."""
    tp = type(select.poll())
    saved = {n: tp.__dict__[n] for n in ("poll", "register")}
    out = []

    def step(fn):
        try:
            out.append(("ok", fn()))
        except (AttributeError, TypeError) as exc:
            out.append(("raise", type(exc), str(exc)))
    try:
        step(lambda: setattr(tp, "x", 1))
        step(lambda: select.poll().x)
        step(lambda: delattr(tp, "x"))
        step(lambda: setattr(tp, "poll", lambda self, *a: "replaced"))
        step(lambda: select.poll().poll(0))
        step(lambda: delattr(tp, "register"))
        step(lambda: hasattr(select.poll(), "register"))
    finally:
        for name, value in saved.items():
            if tp.__dict__.get(name) is not value:
                setattr(tp, name, value)
    return out


@pytest.mark.xfail((3, 10) <= sys.version_info[:2] <= (3, 14), strict=True,
                   reason="defect 6 (issue 18): pyver.h's FS_PY_DISALLOW_INSTANTIATION "
                          "makes the type immutable before 3.15; drop this mark with its fix")
def test_type_mutability():
    """The stdlib's poll type takes new attributes and methods up to 3.14;
    3.15 makes it immutable (gh-116946)."""
    differential(lambda impl: _type_changes(impl.select))


# --- argument rules ------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda p: p.register(),
    lambda p: p.register(1, 1, 1),
    lambda p: p.register(fd=1),
    lambda p: p.register(1, eventmask=1),
    lambda p: p.register(1, **{}),
    lambda p: p.modify(),
    lambda p: p.modify(1),
    lambda p: p.modify(1, 1, 1),
    lambda p: p.modify(fd=1, eventmask=1),
    lambda p: p.modify(1, eventmask=1),
    lambda p: p.unregister(),
    lambda p: p.unregister(1, 2),
    lambda p: p.unregister(fd=1),
    lambda p: p.unregister(1, fd=1),
    lambda p: p.poll(1, 2),
    lambda p: p.poll(timeout=0),
    lambda p: p.poll(0, timeout=0),
    lambda p: p.poll(**{}),
    lambda p: p.poll(),
    lambda p: p.poll(None),
], ids=["reg0", "reg3", "reg-kw", "reg-kwmask", "reg-emptykw", "mod0", "mod1",
        "mod3", "mod-kw", "mod-kwmask", "unreg0", "unreg2", "unreg-kw",
        "unreg-pos+kw", "poll2", "poll-kw", "poll-pos+kw", "poll-emptykw",
        "poll0", "pollNone"])
def test_argument_count_and_keywords(call):
    # fd 1 (stdout) is registered so modify/unregister/poll can succeed
    differential(with_poll(call, (1, std_select.POLLOUT)))


# --- fd and mask conversion ----------------------------------------------

FDS = [0, True, False, -1, -5, 2**31, 2**31 - 1, -(2**31), 2**100, 1.0, "1",
       None, object(), Index(1), IntSub(1), FileNo(1), FileNo(-1), FileNo("1"),
       FileNo(2**40), FileNo(1.5), FileNo(True), FileNo(IntSub(1)),
       FileNoRaises(ValueError, "no fileno")]


@pytest.mark.parametrize("fd", FDS, ids=repr)
@pytest.mark.parametrize("method", ["register", "modify", "unregister"])
def test_fd_conversion(fd, method):
    def call(p):
        args = (fd,) if method == "unregister" else (fd, std_select.POLLIN)
        r = getattr(p, method)(*args)
        return r, p.poll(0)
    # 0 and 1 are registered, so modify/unregister of them succeed
    differential(with_poll(call, (0, 0), (1, 0)))


MASKS = [0, 1, 7, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 2**31, 2**32, 2**63 - 1,
         2**63, 2**64 - 1, 2**64, 2**100, -1, -2**15, -2**16, -2**63, -2**64,
         -2**100, True, False, 1.0, "1", None, Index(1), IntSub(4),
         decimal.Decimal(1), object()]


@pytest.mark.parametrize("mask", MASKS, ids=repr)
@pytest.mark.parametrize("method", ["register", "modify"])
def test_mask_conversion(mask, method):
    differential(with_poll(lambda p: (getattr(p, method)(1, mask), p.poll(0)),
                           (1, 0)))


MORE_MASKS = [Index(-1), Index(2**70), Index(0xFFFF), Index(0x10000),
              FloatAndIndex(0.5, 4), FloatOnly(1.0), -(2**31), 2**16 - 1,
              -0]


@pytest.mark.parametrize("mask", MORE_MASKS, ids=repr)
@pytest.mark.parametrize("method", ["register", "modify"])
def test_mask_index_objects(mask, method, pipe):
    """3.14 converts the mask with __index__ and new texts."""
    r, w = pipe
    os.write(w, b"x")

    def fn(impl):
        p = impl.select.poll()
        if method == "modify":
            p.register(r)
        getattr(p, method)(r, mask)
        return p.poll(0)
    differential(fn)


def test_fd_converted_before_mask():
    differential(with_poll(lambda p: p.register(FileNo("x"), -1)))
    differential(with_poll(lambda p: p.modify(-1, 2**70)))
    differential(with_poll(lambda p: p.modify(77, -1)))   # mask before lookup


def test_default_mask_and_high_bits(pipe):
    r, w = pipe

    def run(p):
        p.register(w)                          # POLLIN|POLLPRI|POLLOUT
        p.register(r, 0xFFFF)                  # every bit, as unsigned short
        return p.poll(0)
    differential(with_poll(run))


# --- modify / unregister errors --------------------------------------------

def test_modify_unknown_fd():
    def run(p):
        try:
            p.modify(77, std_select.POLLIN)
        except OSError as e:
            return type(e), e.errno, e.strerror, e.args, e.filename
    assert differential(with_poll(run))[1][0] is FileNotFoundError


def test_unregister_unknown_fd_keyerror_args():
    def run(p):
        out = []
        for fd in (77, FileNo(78), True):
            try:
                p.unregister(fd)
            except KeyError as e:
                out.append((e.args, type(e.args[0])))
        return out
    assert differential(with_poll(run))[1] == [((77,), int), ((78,), int),
                                               ((1,), int)]


def test_unregister_twice():
    differential(with_poll(lambda p: (p.unregister(5), p.unregister(5)),
                           (5, 1)))


# --- order of results ----------------------------------------------------

def test_registration_order_rules():
    a, b, c, d = unused_fds(4)

    def run(p):
        snapshots = []
        for fd in (c, a, d, b):
            p.register(fd)
        snapshots.append(p.poll(0))
        p.register(a, std_select.POLLIN)       # re-register keeps position
        p.modify(d, std_select.POLLOUT)        # modify keeps position
        snapshots.append(p.poll(0))
        p.unregister(c)
        p.register(c)                          # moves to the end
        snapshots.append(p.poll(0))
        p.unregister(a)
        p.unregister(b)
        snapshots.append(p.poll(0))
        p.register(b)
        p.register(a)
        snapshots.append(p.poll(0))
        return snapshots
    differential(with_poll(run))


@pytest.mark.parametrize("seed", range(6))
def test_random_register_sequences(seed):
    # POLLNVAL is reported for every registered fd that is not open, so the
    # whole registry (order included) shows in each poll(0)
    fds = unused_fds(150)
    ops = []
    rng = random.Random(seed)
    for _ in range(1500):
        ops.append((rng.choice(["register", "register", "modify", "unregister",
                                "poll"]), rng.choice(fds),
                    rng.choice([0, 1, 4, 0xFFFF])))

    def run(p):
        out = []
        for op, fd, mask in ops:
            try:
                if op == "poll":
                    out.append(p.poll(0))
                elif op == "unregister":
                    p.unregister(fd)
                else:
                    getattr(p, op)(fd, mask)
            except (KeyError, OSError) as e:
                out.append(type(e).__name__)
        out.append(p.poll(0))
        return out
    differential(with_poll(run))


def test_many_registrations():
    fds = unused_fds(3000)

    def run(p):
        for fd in fds:
            p.register(fd)
        first = p.poll(0)
        for fd in fds[::3]:
            p.unregister(fd)
        return first, p.poll(0)
    differential(with_poll(run))


# --- readiness -----------------------------------------------------------

def test_pipe_readiness_and_hup(pipe):
    r, w = pipe
    P = std_select
    regs = ((r, P.POLLIN | P.POLLPRI | P.POLLOUT), (w, P.POLLIN | P.POLLOUT))
    differential(with_poll(lambda p: p.poll(0), *regs))
    os.write(w, b"data")
    differential(with_poll(lambda p: p.poll(0), *regs))
    os.close(w)
    # writer gone: POLLIN|POLLHUP while data is left, then POLLHUP
    differential(with_poll(lambda p: p.poll(0), (r, P.POLLIN)))
    os.read(r, 4)
    res = differential(with_poll(lambda p: p.poll(0), (r, P.POLLIN)))
    assert res[1] == [(r, P.POLLHUP)]


def test_socket_readiness(pair):
    a, b = pair
    P = std_select
    mask = P.POLLIN | P.POLLOUT | P.POLLPRI
    differential(with_poll(lambda p: p.poll(0), (a, mask), (b, mask)))
    b.send(b"hi")
    differential(with_poll(lambda p: p.poll(0), (a, mask), (b, mask)))
    b.close()
    differential(with_poll(lambda p: p.poll(0), (a, mask | getattr(P, "POLLRDHUP", 0x2000))))  # Linux value where absent (PyPy)


def test_pollnval_for_closed_fd():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    res = differential(with_poll(lambda p: p.poll(), (r, std_select.POLLIN)))
    assert res[1] == [(r, std_select.POLLNVAL)]


def test_regular_file(tmp_path):
    with open(tmp_path / "f", "wb") as f:
        differential(with_poll(lambda p: p.poll(None), (f, 0xFFFF)))


def test_result_shape(pipe):
    os.write(pipe[1], b"x")
    for mod in BOTH:
        p = mod.poll()
        p.register(pipe[0], mod.POLLIN)
        res = p.poll(0)
        assert type(res) is list and type(res[0]) is tuple
        assert all(type(x) is int for x in res[0])
        assert res is not p.poll(0)


# --- timeouts ------------------------------------------------------------

TIMEOUTS = [
    None, 0, 0.0, -0.0, 1, 1.5, 0.1, 1e-9, -1, -1.0, -0.1, -1e-100, -1000,
    True, False, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32, 2**63,
    2**64, 10**30, -(10**30), 9.2e12, 9.3e12, 1e300, -1e300, float("nan"),
    float("inf"), float("-inf"), "1", b"1", decimal.Decimal("1"),
    decimal.Decimal("1.5"), fractions.Fraction(1, 2), Index(1), Index(-1),
    Index(2**64), Float(), IntSub(0), object(), complex(1),
]


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=repr)
def test_timeout_forms(timeout, pipe):
    r, w = pipe
    os.write(w, b"x")     # ready: valid timeouts (blocking ones too) return
    differential(with_poll(lambda p: p.poll(timeout), (r, std_select.POLLIN)))


@pytest.mark.parametrize("timeout", timeout_objects(), ids=repr)
def test_timeout_objects(timeout, pipe):
    r, w = pipe
    os.write(w, b"x")
    differential(with_poll(lambda p: p.poll(timeout), (r, std_select.POLLIN)))


# ms that overflow a C int; 3.15 waits with ppoll() where the system has it,
# so only PyTime_t's nanoseconds limit the timeout
MS_LIMIT = (2**63 - 1) // 10**6
BIG_TIMEOUTS = [2**31 - 1, 2**31, 2**31 + 0.5, -(2**31) - 1, 2**40, -(2**40),
                MS_LIMIT, MS_LIMIT + 1, -MS_LIMIT, -MS_LIMIT - 2, 9.2e12,
                float(MS_LIMIT) * 0.999, 1e13, Index(2**40)]


@pytest.mark.parametrize("timeout", BIG_TIMEOUTS, ids=repr)
def test_large_timeouts(timeout, pipe):
    r, w = pipe
    os.write(w, b"x")
    differential(with_poll(lambda p: p.poll(timeout), (r, std_select.POLLIN)))


def test_large_timeout_waits_for_data(pipe):
    """A timeout past a C int of ms either fails at once (up to 3.14) or
    waits until the data comes (3.15 with ppoll)."""
    r, w = pipe

    def fn(impl):
        p = impl.select.poll()
        p.register(r, std_select.POLLIN)
        writer = threading.Timer(0.05, os.write, (w, b"x"))
        writer.start()
        try:
            return p.poll(2**31)
        finally:
            writer.join()
            while select_ready(r):
                os.read(r, 100)
    differential(fn)


def select_ready(fd):
    return bool(std_select.select([fd], [], [], 0)[0])


@pytest.mark.parametrize("timeout", [FloatOnly(0.0), FloatOnly(1.0),
                                     FloatOnly(1e-9)], ids=repr)
def test_float_only_timeout_expires(timeout, pipe):
    differential(with_poll(lambda p: p.poll(timeout),
                           (pipe[0], std_select.POLLIN)))


@pytest.mark.parametrize("timeout", [0, 1, 10, 0.5, 1e-9, Index(5)], ids=repr)
def test_timeout_expires(timeout, pipe):
    differential(with_poll(lambda p: p.poll(timeout),
                           (pipe[0], std_select.POLLIN)))


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
@pytest.mark.parametrize("timeout", [None, -1, -1000, -0.1, -1e-100])
def test_negative_timeout_blocks(mod, timeout, pipe):
    r, w = pipe
    p = mod.poll()
    p.register(r, mod.POLLIN)
    t = threading.Thread(target=p.poll, args=(timeout,))
    t.start()
    t.join(0.05)
    alive = t.is_alive()
    os.write(w, b"x")
    t.join(5)
    assert alive and not t.is_alive()


# --- concurrency -----------------------------------------------------------

@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_concurrent_poll_refused_and_registry_changes_allowed(mod):
    r, w = os.pipe()
    extra = [os.dup(r) for _ in range(20)]
    others = unused_fds(50)
    try:
        p = mod.poll()
        for fd in extra:
            p.register(fd, mod.POLLIN)
        result = []
        t = threading.Thread(target=lambda: result.append(p.poll(5000)))
        t.start()
        wait_until_blocked(t)
        with pytest.raises(RuntimeError, match=r"^concurrent poll\(\) invocation$"):
            p.poll(0)
        # what the kernel is polling may be reshuffled under it, safely
        for fd in extra:
            p.unregister(fd)
        for fd in others:
            p.register(fd, mod.POLLIN)
        p.modify(others[0], mod.POLLOUT)
        p.unregister(others[1])
        with pytest.raises(RuntimeError):
            p.poll(0)
        os.write(w, b"x")
        t.join(5)
        assert not t.is_alive()
        # the running poll reports the fds it was started with
        assert result == [[(fd, mod.POLLIN) for fd in extra]]
        # the next poll sees the new registry
        after = p.poll(0)
        assert [fd for fd, _ in after] == [others[0]] + others[2:]
        assert all(ev == mod.POLLNVAL for _, ev in after)
    finally:
        for fd in [r, w] + extra:
            os.close(fd)


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_poll_usable_after_concurrent_error(mod, pipe):
    p = mod.poll()
    p.register(pipe[0], mod.POLLIN)
    t = threading.Thread(target=p.poll, args=(5000,))
    t.start()
    wait_until_blocked(t)
    with pytest.raises(RuntimeError):
        p.poll(0)
    os.write(pipe[1], b"x")
    t.join(5)
    assert p.poll(0) == [(pipe[0], mod.POLLIN)]


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_gil_released_while_polling(mod, pipe):
    stop = threading.Event()
    counter = [0]

    def spin():
        while not stop.is_set():
            counter[0] += 1
    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.01)
        before = counter[0]
        p = mod.poll()
        p.register(pipe[0], mod.POLLIN)
        p.poll(200)
        progressed = counter[0] - before
    finally:
        stop.set()
        t.join()
    assert progressed > 1000


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_eintr_retried_with_remaining_time(mod, pipe, alarm_handler):
    calls = []
    signal.signal(signal.SIGALRM, lambda *a: calls.append(1))
    p = mod.poll()
    p.register(pipe[0], mod.POLLIN)
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    t0 = time.monotonic()
    assert p.poll(300) == []
    elapsed = time.monotonic() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(calls) >= 2
    assert 0.29 <= elapsed < 3 * 0.3 + 2    # the whole timeout; then it ended


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_eintr_handler_exception_propagates(mod, pipe, alarm_handler):
    class Stop(Exception):
        pass

    def handler(*a):
        raise Stop
    signal.signal(signal.SIGALRM, handler)
    p = mod.poll()
    p.register(pipe[0], mod.POLLIN)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    t0 = time.monotonic()
    with pytest.raises(Stop):
        p.poll(-1)
    assert time.monotonic() - t0 < 2
    # not left marked as running
    os.write(pipe[1], b"x")
    assert p.poll(0) == [(pipe[0], mod.POLLIN)]


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_result_fds_are_plain_ints(mod, pipe):
    r, w = pipe
    os.write(w, b"x")
    p = mod.poll()
    p.register(IntSub(r), mod.POLLIN)
    p.register(FileNo(w), mod.POLLOUT)
    res = p.poll(0)
    assert res == [(r, mod.POLLIN), (w, mod.POLLOUT)]
    assert [type(fd) for fd, _ in res] == [int, int]
    p.unregister(r)
    p.register(r, mod.POLLIN)          # an exact int this time
    assert p.poll(0) == [(w, mod.POLLOUT), (r, mod.POLLIN)]
