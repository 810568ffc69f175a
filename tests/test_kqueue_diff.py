"""select.kqueue / select.kevent: fastsel against the stdlib.

Where the stdlib has kqueue (BSD, macOS) every check is differential: the
same calls on both, equal results or equal exception type and text.  On Linux
the stdlib has no kqueue, so fastsel (built against libkqueue, see setup.py's
FASTSEL_KQUEUE) is checked against what CPython's Modules/selectmodule.c does
(3.9-3.13), quoted in each expected outcome.  Texts that CPython's generic
argument parser produces (fastsel calls the same parser) are compared exactly
only where the stdlib can be asked.

The kqueue readiness backend (fs_kqueue_backend, the table behind
KqueueSelector) is tested with the others in test_backends.py; at the end,
KqueueSelector's results are compared with the stdlib's KqueueSelector (on
Linux, the running CPython's selectors.py over this kqueue).
"""
from __future__ import annotations

import errno
import faulthandler
import importlib.util
import os
import select as std_select
import signal
import socket
import sys
import threading
import time
import types

import pytest

import fastsel
from _helpers import FileNo, FileNoRaises, timeout_objects
from conftest import FASTSEL, differential, outcome

if not hasattr(fastsel, "kqueue"):
    pytest.skip("fastsel was built without kqueue (on Linux, build with "
                "FASTSEL_KQUEUE=<libkqueue prefix> to test it)",
                allow_module_level=True)

STD_HAS_KQUEUE = hasattr(std_select, "kqueue")
PY39 = sys.version_info < (3, 10)
# 3.15: timeouts as select()'s (gh-154836), close() errors raise
# (gh-146205), bitwise arguments out of range warn
PY315 = sys.version_info >= (3, 15)


def check(fn, expected, warns=()):
    """fn(impl) on fastsel must give `expected` -- or, where the stdlib has
    kqueue, exactly what the stdlib gives.

    `expected` is ("ok", value) or ("raise", type, text); a text of None
    checks the type only (a text produced by CPython's argument parser).
    `warns` are the (category, text) pairs expected on the way."""
    if STD_HAS_KQUEUE:
        return differential(fn)
    got = outcome(lambda: fn(FASTSEL))
    if expected[0] == "raise" and expected[2] is None:
        assert got[:2] == expected[:2], got
    else:
        assert got[:-1] == tuple(expected), got
    assert got[-1] == tuple(warns), f"warnings {got[-1]}, not {warns}"
    return got


def timeout_refused(timeout):
    """What control() raises for a timeout its seconds conversion refuses.
    Up to 3.14 every failure becomes one TypeError; 3.15 raises what
    select.select() raises (the same conversion), which is the oracle."""
    if not PY315:
        return raises(TypeError, "timeout argument must be a number or "
                                 "None, got " + type(timeout).__name__)
    ref = outcome(lambda: std_select.select([], [], [], timeout))
    assert ref[0] == "raise", ref
    return raises(ref[1], ref[2])


OUT_OF_RANGE = (DeprecationWarning, "integer value out of range")
# kevent's bitwise fields on Linux (libkqueue): flags "H", fflags "I",
# udata a pointer-sized "K"/"k"
BITWISE_RANGES = {2: (-(2**15), 2**16 - 1), 3: (-(2**31), 2**32 - 1),
                  5: (-(2**63), 2**64 - 1)}


def bitwise_warns(args):
    """The warnings 3.15's argument parser gives for kevent(*args)."""
    if not PY315:
        return ()
    out = []
    for pos, (lo, hi) in BITWISE_RANGES.items():
        if (pos < len(args) and type(args[pos]) is int
                and not lo <= args[pos] <= hi):
            out.append(OUT_OF_RANGE)
    return tuple(out)


def raises(exc, text=None):
    return ("raise", exc, text)


def ok(value):
    return ("ok", value)


@pytest.fixture(autouse=True)
def _watchdog():
    # no test may hang: dump the stacks and die rather than block forever
    faulthandler.dump_traceback_later(30, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def fields(ev):
    return (ev.ident, ev.filter, ev.flags, ev.fflags, ev.data, ev.udata)


# ---- constants ------------------------------------------------------------

def test_constants_match_stdlib_or_bsd_values():
    names = [n for n in dir(fastsel) if n.startswith("KQ_")]
    if STD_HAS_KQUEUE:
        std = {n: getattr(std_select, n) for n in dir(std_select)
               if n.startswith("KQ_")}
        assert {n: getattr(fastsel, n) for n in names} == std
        return
    # the values every BSD, macOS and libkqueue share
    common = dict(KQ_FILTER_READ=-1, KQ_FILTER_WRITE=-2, KQ_FILTER_TIMER=-7,
                  KQ_EV_ADD=1, KQ_EV_DELETE=2, KQ_EV_ENABLE=4, KQ_EV_DISABLE=8,
                  KQ_EV_ONESHOT=0x10, KQ_EV_CLEAR=0x20, KQ_EV_EOF=0x8000,
                  KQ_EV_ERROR=0x4000)
    assert {n: getattr(fastsel, n) for n in common} == common
    # CPython exports a filter's KQ_NOTE_* only with the filter (libkqueue
    # defines NOTE_LINKUP & co. but not EVFILT_NETDEV)
    netdev_notes = {"KQ_NOTE_LINKUP", "KQ_NOTE_LINKDOWN", "KQ_NOTE_LINKINV"}
    if not hasattr(fastsel, "KQ_FILTER_NETDEV"):
        assert not netdev_notes & set(names)
    if hasattr(fastsel, "KQ_FILTER_PROC"):
        assert {"KQ_NOTE_EXIT", "KQ_NOTE_FORK", "KQ_NOTE_EXEC"} <= set(names)
    for n in names:
        assert type(getattr(fastsel, n)) is int


# ---- kevent ---------------------------------------------------------------

def test_kevent_defaults(pair):
    a, _ = pair
    check(lambda i: fields(i.select.kevent(a.fileno())),
          ok((a.fileno(), -1, 1, 0, 0, 0)))
    # an object with fileno() gives its fd
    check(lambda i: fields(i.select.kevent(a)),
          ok((a.fileno(), -1, 1, 0, 0, 0)))


def test_kevent_all_arguments():
    check(lambda i: fields(i.select.kevent(1, 2, 3, 4, 5, 6)),
          ok((1, 2, 3, 4, 5, 6)))
    check(lambda i: fields(i.select.kevent(ident=1, filter=2, flags=3,
                                           fflags=4, data=5, udata=6)),
          ok((1, 2, 3, 4, 5, 6)))
    check(lambda i: fields(i.select.kevent(7, udata=9, filter=-3)),
          ok((7, -3, 1, 0, 0, 9)))


@pytest.mark.parametrize("ident, expected", [
    # ints are identifiers of any filter (pids, signals, timers): size_t
    (2 ** 40, ok(2 ** 40)),
    (2 ** 64 - 1, ok(2 ** 64 - 1)),
    (True, ok(1)),
    (-1, raises(OverflowError, "can't convert negative value to size_t")),
    (2 ** 64, raises(OverflowError,
                     "Python int too large to convert to C size_t")),
    # everything else goes through the fd conversion
    (1.5, raises(TypeError,
                 "argument must be an int, or have a fileno() method.")),
    ("3", raises(TypeError,
                 "argument must be an int, or have a fileno() method.")),
])
def test_kevent_ident(ident, expected):
    check(lambda i: i.select.kevent(ident).ident, expected)


def test_kevent_ident_fileno_errors():
    check(lambda i: i.select.kevent(FileNo(-3)),
          raises(ValueError,
                 "file descriptor cannot be a negative integer (-3)"))
    # the running CPython's own text for this fileno() (3.15 changed it),
    # from its fd conversion in the stdlib's select.poll().register()
    with pytest.raises(TypeError) as std:
        std_select.poll().register(FileNo("x"))
    check(lambda i: i.select.kevent(FileNo("x")),
          raises(TypeError, str(std.value)))
    check(lambda i: i.select.kevent(FileNoRaises(ZeroDivisionError, "boom")),
          raises(ZeroDivisionError, "boom"))


@pytest.mark.parametrize("args, expected", [
    # filter: "h" (range checked); flags "H", fflags "I": masked
    ((0, -(2 ** 15)), ok((0, -(2 ** 15), 1, 0, 0, 0))),
    ((0, 2 ** 15), raises(OverflowError,
                          "signed short integer is greater than maximum")),
    ((0, -(2 ** 15) - 1), raises(OverflowError,
                                 "signed short integer is less than minimum")),
    ((0, -1, 0x1ffff), ok((0, -1, 0xffff, 0, 0, 0))),
    ((0, -1, -1), ok((0, -1, 0xffff, 0, 0, 0))),
    ((0, -1, 1, 2 ** 32 + 5), ok((0, -1, 1, 5, 0, 0))),
    ((0, -1, 1, -1), ok((0, -1, 1, 2 ** 32 - 1, 0, 0))),
    # data: intptr_t, range checked; udata: uintptr_t, masked
    ((0, -1, 1, 0, -(2 ** 63)), ok((0, -1, 1, 0, -(2 ** 63), 0))),
    ((0, -1, 1, 0, 2 ** 63), raises(OverflowError)),
    ((0, -1, 1, 0, 0, 2 ** 64 - 1), ok((0, -1, 1, 0, 0, 2 ** 64 - 1))),
    ((0, -1, 1, 0, 0, -1), ok((0, -1, 1, 0, 0, 2 ** 64 - 1))),
    ((0, -1, 1, 0, 0, 2 ** 64 + 3), ok((0, -1, 1, 0, 0, 3))),
    ((0, 1.0), raises(TypeError)),
    ((0, -1, 1, 0, 0, 1.0), raises(TypeError)),
    ((0, -1, 1, 0, 0, 0, 7), raises(TypeError)),
    ((), raises(TypeError)),
])
def test_kevent_argument_conversion(args, expected):
    check(lambda i: fields(i.select.kevent(*args)), expected,
          bitwise_warns(args))


def test_kevent_keyword_errors():
    check(lambda i: i.select.kevent(0, bogus=1), raises(TypeError))
    check(lambda i: i.select.kevent(0, 1, filter=1), raises(TypeError))


def test_kevent_fast_and_generic_parsing_agree():
    """Exact ints take a fast path; int subclasses the generic parser."""
    class I(int):
        pass

    values = [0, 1, -1, 5, 2 ** 15 - 1, -(2 ** 15), 2 ** 16 + 1, 2 ** 31,
              2 ** 32 - 1, 2 ** 40, -(2 ** 40), 2 ** 62, -(2 ** 63),
              2 ** 64 - 1, 2 ** 70 + 9]
    for pos in range(1, 6):
        for v in values:
            args = [3, -1, 1, 0, 0, 0]
            args[pos] = v
            fast = outcome(lambda: fields(fastsel.kevent(*args)))
            args[pos] = I(v)
            slow = outcome(lambda: fields(fastsel.kevent(*args)))
            assert fast == slow, (pos, v)


def test_kevent_members_writable():
    def fn(i):
        ev = i.select.kevent(1)
        ev.ident = 2 ** 40
        ev.filter = -5
        ev.flags = 0xffff
        ev.fflags = 2 ** 32 - 1
        ev.data = -7
        ev.udata = 2 ** 64 - 1
        return fields(ev)
    check(fn, ok((2 ** 40, -5, 0xffff, 2 ** 32 - 1, -7, 2 ** 64 - 1)))
    check(lambda i: setattr(i.select.kevent(1), "data", "x"),
          raises(TypeError))


def test_kevent_init_again_resets():
    def fn(i):
        ev = i.select.kevent(1, 2, 3, 4, 5, 6)
        ev.__init__(9)
        return fields(ev)
    check(fn, ok((9, -1, 1, 0, 0, 0)))


def test_kevent_equality_and_order():
    def order(i):
        k = i.select.kevent
        evs = [k(0, 5, 5, 5, 5, 5), k(0, 5, 5, 5, 5, 2 ** 63),
               k(1, -1, 1, 0, 0, 0), k(0, -2, 9, 9, 9, 9),
               k(0, 5, 5, 5, -5, 5), k(0, 5, 5, 4, 5, 5),
               k(0, 5, 4, 5, 5, 5), k(2 ** 63, 0), k(0, 5, 5, 5, 5, 5)]
        return [fields(e) for e in sorted(evs)]
    # ident unsigned, then filter, flags, fflags, data (signed),
    # then udata compared as a signed intptr_t
    check(order, ok([(0, -2, 9, 9, 9, 9), (0, 5, 4, 5, 5, 5),
                     (0, 5, 5, 4, 5, 5), (0, 5, 5, 5, -5, 5),
                     (0, 5, 5, 5, 5, 2 ** 63), (0, 5, 5, 5, 5, 5),
                     (0, 5, 5, 5, 5, 5), (1, -1, 1, 0, 0, 0),
                     (2 ** 63, 0, 1, 0, 0, 0)]))

    def ops(i):
        a, b = i.select.kevent(1), i.select.kevent(2)
        c = i.select.kevent(1)
        return (a == c, a != c, a < b, a <= c, b > a, b >= a, a == b,
                a != b, a is c)
    check(ops, ok((True, False, True, True, True, True, False, True, False)))


def test_kevent_against_other_types():
    check(lambda i: (i.select.kevent(1) == 1, i.select.kevent(1) != None,
                     i.select.kevent(1) == "ev"),  # noqa: E711
          ok((False, True, False)))
    check(lambda i: i.select.kevent(1) < 1,
          raises(TypeError,
                 "'<' not supported between instances of 'select.kevent' "
                 "and 'int'"))
    check(lambda i: i.select.kevent(1) >= None,
          raises(TypeError,
                 "'>=' not supported between instances of 'select.kevent' "
                 "and 'NoneType'"))


def test_kevent_unhashable():
    check(lambda i: hash(i.select.kevent(1)),
          raises(TypeError, "unhashable type: 'select.kevent'"))


@pytest.mark.parametrize("args", [
    (1,), (1, 2, 3, 4, 5, 6),
    (2 ** 40, -2, 0xffff, 2 ** 32 - 1, -1, 2 ** 64 - 1),
    (0, -1, 1, 0, 0, 0),
])
def test_kevent_repr(args):
    # CPython: "<select.kevent ident=%zu filter=%d flags=0x%x fflags=0x%x
    # data=0x%llx udata=%p>", %p as the BSD/macOS libcs print it
    ident, filt, flags, fflags, data, udata = args + (-1, 1, 0, 0, 0)[
        len(args) - 1:]
    text = (f"<select.kevent ident={ident} filter={filt} flags={flags:#x} "
            f"fflags={fflags:#x} data=0x{data & (2 ** 64 - 1):x} "
            f"udata={udata:#x}>")
    check(lambda i: repr(i.select.kevent(*args)), ok(text))


def test_types_not_subclassable():
    check(lambda i: type("K", (i.select.kevent,), {}),
          raises(TypeError, "type 'select.kevent' is not an acceptable base "
                            "type"))
    check(lambda i: type("K", (i.select.kqueue,), {}),
          raises(TypeError, "type 'select.kqueue' is not an acceptable base "
                            "type"))
    check(lambda i: (i.select.kqueue.__name__, i.select.kqueue.__module__,
                     i.select.kevent.__name__, i.select.kevent.__module__),
          ok(("kqueue", "select", "kevent", "select")))


# ---- kqueue object --------------------------------------------------------

def test_kqueue_no_arguments():
    check(lambda i: i.select.kqueue(1),
          raises(TypeError, "kqueue() takes no positional arguments"))
    check(lambda i: i.select.kqueue(x=1),
          raises(TypeError, "kqueue() takes no keyword arguments"))


def test_kqueue_basics():
    def fn(i):
        kq = i.select.kqueue()
        fd = kq.fileno()
        try:
            return (fd > 0, kq.closed, os.get_inheritable(fd),
                    hasattr(kq, "__enter__"), hasattr(kq, "__exit__"))
        finally:
            kq.close()
    # non-inheritable; like CPython's, no context manager
    check(fn, ok((True, False, False, False, False)))


def test_kqueue_close():
    def fn(i):
        kq = i.select.kqueue()
        fd = kq.fileno()
        r = [kq.close(), kq.closed, kq.close()]
        try:
            os.fstat(fd)
        except OSError as e:
            r.append(e.errno)
        return r
    check(fn, ok([None, True, None, errno.EBADF]))
    for call in (lambda kq: kq.fileno(), lambda kq: kq.control(None, 4),
                 lambda kq: kq.control([], 0, 0),
                 # the closed check comes before these value checks
                 lambda kq: kq.control(None, -1),
                 lambda kq: kq.control(5, 1, "x")):
        def fn(i, call=call):
            kq = i.select.kqueue()
            kq.close()
            return call(kq)
        check(fn, raises(ValueError, "I/O operation on closed kqueue object"))


def test_close_error():
    """A failed close(2): OSError from 3.15 on; closed either way."""
    def fn(i):
        kq = i.select.kqueue()
        os.close(kq.fileno())
        out = []
        for call in (kq.close, lambda: kq.closed, kq.close):
            try:
                out.append(("ok", call()))
            except OSError as exc:
                out.append((type(exc).__name__, exc.errno))
        return out
    first = ("OSError", errno.EBADF) if PY315 else ("ok", None)
    check(fn, ok([first, ("ok", True), ("ok", None)]))


def test_closed_after_argument_parsing():
    def fn(i):
        kq = i.select.kqueue()
        kq.close()
        return kq.control(None)
    check(fn, raises(TypeError, "control expected at least 2 arguments, "
                                "got 1"))

    def fn2(i):
        kq = i.select.kqueue()
        kq.close()
        return kq.control(None, 2 ** 31)
    check(fn2, raises(OverflowError,
                      "Python int too large to convert to C int"))


def test_dealloc_closes():
    def fn(i):
        kq = i.select.kqueue()
        fd = kq.fileno()
        del kq
        try:
            os.fstat(fd)
        except OSError as e:
            return e.errno
    check(fn, ok(errno.EBADF))


@pytest.fixture
def kq():
    q = fastsel.kqueue()
    yield q
    q.close()


def control_args_cases():
    float_text = ("integer argument expected, got float" if PY39 else
                  "'float' object cannot be interpreted as an integer")
    str_text = ("an integer is required (got type str)" if PY39 else
                "'str' object cannot be interpreted as an integer")
    return [
        ((), raises(TypeError, "control expected at least 2 arguments, "
                               "got 0")),
        ((None, 1, None, 4), raises(TypeError, "control expected at most 3 "
                                               "arguments, got 4")),
        ((None, 1.5), raises(TypeError, float_text)),
        ((None, "1"), raises(TypeError, str_text)),
        ((None, -2 ** 31 - 1), raises(OverflowError, "Python int too large "
                                      "to convert to C int")),
        ((None, -1), raises(ValueError, "Length of eventlist must be 0 or "
                                        "positive, got -1")),
        ((None, 1, "x"), timeout_refused("x")),
        ((None, 1, []), timeout_refused([])),
        # up to 3.14 every failure of the seconds conversion is a TypeError
        ((None, 1, float("nan")), timeout_refused(float("nan"))),
        ((None, 1, 1e300), timeout_refused(1e300)),
        ((None, 1, 2 ** 80), timeout_refused(2 ** 80)),
        ((None, 1, -1), raises(ValueError, "timeout must be positive or "
                                           "None")),
        # rounded away from zero to -1 ns, then floored to -1 s
        ((None, 1, -1e-10), raises(ValueError, "timeout must be positive or "
                                               "None")),
        ((None, 1, -0.0), ok([])),
        ((None, 0, 0), ok([])),
        ((None, 1, 0), ok([])),
        ((5, 1), raises(TypeError, "changelist is not iterable")),
        (([5], 1), raises(TypeError, "changelist must be an iterable of "
                                     "select.kevent objects")),
        # the order of the checks: maxevents, timeout, then changelist
        ((5, -1), raises(ValueError, "Length of eventlist must be 0 or "
                                     "positive, got -1")),
        ((5, 1, "x"), timeout_refused("x")),
        (([5], 1, -1), raises(ValueError, "timeout must be positive or "
                                          "None")),
        (([], 0, 0), ok([])),
        (((), 1, 0), ok([])),
        ((iter(()), 1, 0), ok([])),
    ]


@pytest.mark.parametrize("args, expected", control_args_cases())
def test_control_arguments(args, expected):
    def fn(i):
        q = i.select.kqueue()
        try:
            return q.control(*args)
        finally:
            q.close()
    check(fn, expected)


@pytest.mark.parametrize("timeout", timeout_objects(), ids=repr)
def test_control_timeout_objects(timeout):
    def fn(i):
        q = i.select.kqueue()
        try:
            return q.control(None, 0, timeout)
        finally:
            q.close()
    if STD_HAS_KQUEUE:
        differential(fn)
        return
    # select.select() converts with the same function: its outcome says
    # whether the timeout is accepted (and warns the same way)
    ref = outcome(lambda: std_select.select([], [], [], timeout))
    if ref[0] == "ok":
        check(fn, ok([]), ref[-1])
    elif ref[1:3] == (ValueError, "timeout must be non-negative"):
        check(fn, raises(ValueError, "timeout must be positive or None"),
              ref[-1])
    else:
        check(fn, timeout_refused(timeout), ref[-1])


def test_control_no_keywords():
    def fn(i):
        q = i.select.kqueue()
        try:
            return q.control(None, 1, timeout=0)
        finally:
            q.close()
    check(fn, raises(TypeError, "kqueue.control() takes no keyword "
                                "arguments"))


def test_changelist_iteration_error_propagates():
    def gen():
        yield from ()
        raise ZeroDivisionError("in iteration")

    def fn(i):
        q = i.select.kqueue()
        try:
            return q.control(gen(), 1, 0)
        finally:
            q.close()
    check(fn, raises(ZeroDivisionError, "in iteration"))


def test_changelist_any_iterable(pair):
    a, b = pair
    b.send(b"xyz")

    class BadLen:                   # __len__ disagrees with __iter__
        def __init__(self, evs):
            self.evs = evs

        def __len__(self):
            return 0

        def __iter__(self):
            return iter(self.evs)

    def fn(i):
        q = i.select.kqueue()
        try:
            ev = i.select.kevent(a, i.select.KQ_FILTER_READ,
                                 i.select.KQ_EV_ADD)
            got = q.control(BadLen([ev]), 4, 5)
            return [(e.ident, e.filter) for e in got]
        finally:
            q.close()
    check(fn, ok([(a.fileno(), -1)]))


def test_events_reported(pair, kq):
    a, b = pair
    k = fastsel
    kq.control([k.kevent(a, k.KQ_FILTER_READ, k.KQ_EV_ADD),
                k.kevent(b, k.KQ_FILTER_READ, k.KQ_EV_ADD)], 0)
    assert kq.control(None, 4, 0) == []
    b.send(b"hello")
    got = kq.control(None, 4, 5)
    assert [(e.ident, e.filter) for e in got] == [(a.fileno(),
                                                   k.KQ_FILTER_READ)]
    assert type(got[0]) is k.kevent
    # a kevent from control() is a full kevent: comparable, mutable
    got[0].udata = 3
    assert got[0].udata == 3
    kq.control([k.kevent(a, k.KQ_FILTER_READ, k.KQ_EV_DELETE)], 0)
    assert kq.control(None, 4, 0) == []


def test_error_of_a_change(kq):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    ev = fastsel.kevent(r, fastsel.KQ_FILTER_READ, fastsel.KQ_EV_ADD)
    # no room in the event list: the error is raised
    with pytest.raises(OSError) as info:
        kq.control([ev], 0, 0)
    assert info.value.errno == errno.EBADF
    # room: the error is reported as an EV_ERROR event
    got = kq.control([ev], 1, 0)
    assert len(got) == 1 and got[0].flags & fastsel.KQ_EV_ERROR
    assert got[0].data == errno.EBADF


def test_maxevents_zero_returns_at_once(kq):
    t0 = time.monotonic()
    assert kq.control(None, 0) == []        # timeout None: still no wait
    assert kq.control(None, 0, 10) == []
    assert time.monotonic() - t0 < 2


def test_timeout_waits(kq):
    t0 = time.monotonic()
    assert kq.control(None, 1, 0.2) == []
    assert 0.18 <= time.monotonic() - t0 < 3


def test_fromfd_shares_the_queue(pair):
    a, b = pair
    kq = fastsel.kqueue()
    kq2 = fastsel.kqueue.fromfd(kq.fileno())
    assert kq2.fileno() == kq.fileno() and not kq2.closed
    kq2.control([fastsel.kevent(a)], 0)
    b.send(b"x")
    assert [e.ident for e in kq.control(None, 1, 5)] == [a.fileno()]
    # closing one closes the shared fd: the other's close() then fails in
    # the kernel, which 3.15 reports (gh-146205) and earlier versions ignore
    kq2.close()
    assert kq2.closed
    if PY315:
        with pytest.raises(OSError) as failed:
            kq.close()
        assert failed.value.errno == errno.EBADF
    else:
        kq.close()
    assert kq.closed


def test_fromfd_arguments():
    float_text = ("integer argument expected, got float" if PY39 else
                  "'float' object cannot be interpreted as an integer")
    check(lambda i: i.select.kqueue.fromfd(1.5), raises(TypeError, float_text))
    check(lambda i: i.select.kqueue.fromfd(2 ** 40),
          raises(OverflowError, "Python int too large to convert to C int"))
    check(lambda i: i.select.kqueue.fromfd(),
          raises(TypeError, "kqueue.fromfd() takes exactly one argument "
                            "(0 given)"))
    check(lambda i: i.select.kqueue.fromfd(fd=3),
          raises(TypeError, "kqueue.fromfd() takes no keyword arguments"))

    # CPython quirk: fromfd(-1) opens a new kqueue
    def fn(i):
        q = i.select.kqueue.fromfd(-1)
        try:
            return q.fileno() >= 0, os.get_inheritable(q.fileno())
        finally:
            q.close()
    check(fn, ok((True, False)))


def test_gil_released_while_waiting(kq):
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    t = threading.Thread(target=spin)
    t.start()
    try:
        n0 = len(ticks)
        kq.control(None, 1, 0.3)
        assert len(ticks) - n0 >= 5
    finally:
        stop.set()
        t.join(5)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")
def test_eintr_retried_with_remaining_time(kq):
    calls = []
    old = signal.signal(signal.SIGALRM, lambda *a: calls.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        t0 = time.monotonic()
        assert kq.control(None, 1, 0.4) == []
        dt = time.monotonic() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls                     # handlers ran during the wait
    assert 0.38 <= dt < 3            # not cut short, not restarted in full


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no setitimer")
def test_eintr_handler_exception_propagates(kq):
    def handler(*a):
        raise ZeroDivisionError("from handler")

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(ZeroDivisionError, match="from handler"):
            kq.control(None, 1, 10)
        assert time.monotonic() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# libkqueue (and the watchdog) run threads of their own; the child only
# reads flags and exits
_fork_in_threads = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning")


@_fork_in_threads
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_sees_closed(pair, kq):
    a, b = pair
    kq2 = fastsel.kqueue.fromfd(os.dup(kq.fileno()))
    kq.control([fastsel.kevent(a)], 0)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ok_ = kq.closed and kq2.closed
            try:
                kq.fileno()
            except ValueError as e:
                ok_ = ok_ and "closed kqueue" in str(e)
            else:
                ok_ = False
            kq.close()                  # must not touch the parent's fd
            fresh = fastsel.kqueue()    # a new one works in the child
            ok_ = ok_ and not fresh.closed
            fresh.close()
            code = 0 if ok_ else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 10
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            break
        assert time.monotonic() < deadline, "child hung"
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not kq.closed and not kq2.closed
    b.send(b"x")
    assert [e.ident for e in kq.control(None, 1, 5)] == [a.fileno()]
    kq2.close()


# ---- KqueueSelector over this kqueue: the stdlib's results ---------------------

def stdlib_kqueue_selector():
    """The stdlib's KqueueSelector class.  Where select has no kqueue (Linux)
    it is the running CPython's own selectors.py run over fastsel's
    select.kqueue and select.kevent (checked against CPython above), so its
    select() makes the stdlib's control() calls on the same mechanism."""
    if STD_HAS_KQUEUE:
        import selectors
        return selectors.KqueueSelector
    spec = importlib.util.find_spec("selectors")
    fake = types.ModuleType("select")
    fake.__dict__.update(vars(std_select))
    fake.__dict__.update({n: getattr(fastsel, n) for n in dir(fastsel)
                          if n.startswith("KQ_") or n in ("kqueue", "kevent")})
    ns = {"__name__": "stdlib_selectors_over_fastsel"}
    saved = sys.modules["select"]
    sys.modules["select"] = fake
    try:
        exec(compile(spec.loader.get_source("selectors"), spec.origin, "exec"), ns)
    finally:
        sys.modules["select"] = saved
    return ns["KqueueSelector"]


def selector_results(cls, body):
    """body(sel, sockets) on a new sel of cls: its select(0) results as
    (socket index, data, events), in the order reported."""
    socks = [socket.socketpair() for _ in range(3)]
    sel = cls()
    try:
        index = {id(a): i for i, (a, _) in enumerate(socks)}
        body(sel, socks)
        return [(index[id(k.fileobj)], k.data, ev) for k, ev in sel.select(0)]
    finally:
        sel.close()
        for a, b in socks:
            a.close()
            b.close()


R, W = 1, 2


def both_ways(sel, socks):
    # socket 0 readable and writable, registered for both; socket 1 idle
    # (so that 3.9/3.10's one event per registration has room for two)
    (a, b), (c, _), _ = socks
    sel.register(a, R | W, "a")
    sel.register(c, R, "c")
    b.send(b"x")


def modified(sel, socks):
    (a, b), (c, d), (e, _) = socks
    sel.register(a, R, "a")
    sel.register(c, W, "c")
    sel.register(e, R, "e")                   # not ready: room on 3.9/3.10
    sel.modify(a, R | W, "a2")
    b.send(b"x")
    d.send(b"x")


def one_way_each(sel, socks):
    (a, b), (c, _), (e, _) = socks
    sel.register(a, R, "a")
    sel.register(c, W, "c")
    sel.register(e, R, "e")                   # not ready
    b.send(b"x")


@pytest.mark.parametrize("body", [both_ways, modified, one_way_each])
def test_selector_reports_one_entry_per_kevent(body):
    """As the stdlib's KqueueSelector: one (key, events) entry per kevent,
    an fd ready both ways as (key, EVENT_READ) and (key, EVENT_WRITE)."""
    std = selector_results(stdlib_kqueue_selector(), body)
    fast = selector_results(fastsel.KqueueSelector, body)
    assert sorted(fast) == sorted(std)
    assert len(fast) == len(std)
    if body is both_ways:
        assert sorted(std) == [(0, "a", R), (0, "a", W)]


def every_filter_ready(sel, socks):
    # more kevents ready than registrations: every socket both ways
    for i, (a, b) in enumerate(socks):
        sel.register(a, R | W, i)
        b.send(b"x")


def test_selector_room_for_every_filter():
    """select() asks for an event per registered filter (gh-110038: the
    stdlib's _max_events); before that fix (3.9, 3.10, 3.12.0, early 3.11)
    the stdlib asks for one per registration and reports fewer entries,
    fastsel reports them all (docs/differences.md)."""
    cls = stdlib_kqueue_selector()
    probe = cls()
    counts_filters = hasattr(probe, "_max_events")
    probe.close()
    std = selector_results(cls, every_filter_ready)
    fast = selector_results(fastsel.KqueueSelector, every_filter_ready)
    assert sorted(fast) == sorted((i, i, ev) for i in range(3) for ev in (R, W))
    if counts_filters:
        assert sorted(std) == sorted(fast)
    else:
        assert len(std) == 3 and set(std) <= set(fast)
