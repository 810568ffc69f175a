"""select.select(): fastsel against the stdlib, call for call.

Each differential test builds its file descriptors once, then runs the same
call on the stdlib and on fastsel and compares results (or exception type,
message and warnings).  Only fds below FD_SETSIZE are used here; the larger
ones are in test_select_bigfd.py.
"""
from __future__ import annotations

import decimal
import fractions
import os
import select as std_select
import signal
import socket
import sys
import threading
import time

import pytest

import fastsel

from _helpers import FileNo, FileNoRaises, FloatOnly, closed_fd, timeout_objects
from conftest import differential

BOTH = [std_select, fastsel]


@pytest.fixture
def ready_pipe(pipe):
    """A pipe whose read end has data: select() on it returns at once."""
    os.write(pipe[1], b"x")
    return pipe


@pytest.fixture
def regular_file(tmp_path):
    with open(tmp_path / "f", "wb+") as f:
        yield f


class FileNoEq(FileNo):
    """Equal by value, so results built from fresh objects compare equal."""

    def __eq__(self, other):
        return type(other) is FileNoEq and other.value == self.value

    def __hash__(self):
        return hash(self.value)


class Index:
    def __init__(self, v):
        self.v = v

    def __index__(self):
        return self.v


class Float:
    def __init__(self, v):
        self.v = v

    def __float__(self):
        return self.v


class Int:
    def __init__(self, v):
        self.v = v

    def __int__(self):
        return self.v


# --- arguments -----------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda s: s.select(),
    lambda s: s.select([]),
    lambda s: s.select([], []),
    lambda s: s.select([], [], [], 0, 0),
    lambda s: s.select([], [], [], 0, 0, 0),
    lambda s: s.select([], [], [], timeout=0),
    lambda s: s.select(rlist=[], wlist=[], xlist=[]),
    lambda s: s.select([], [], [], 0, timeout=0),
    lambda s: s.select([], [], **{}),
    lambda s: s.select([], [], [], 0, **{}),
    lambda s: s.select(*([[]] * 3 + [0])),
], ids=["0args", "1arg", "2args", "5args", "6args", "kw-timeout", "kw-all",
        "pos+kw", "2args-emptykw", "4args-emptykw", "star"])
def test_argument_count_and_keywords(call):
    differential(lambda impl: call(impl.select))


@pytest.mark.parametrize("bad", [1, None, 1.5, object(), socket.AF_INET],
                         ids=["int", "None", "float", "object", "enum"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_non_iterable_lists(bad, position):
    args = [[], [], []]
    args[position] = bad
    differential(lambda impl: impl.select.select(*args, 0))


def test_timeout_parsed_before_lists():
    # both a bad list and a bad timeout: the timeout's error wins
    differential(lambda impl: impl.select.select(1, 2, 3, "x"))
    differential(lambda impl: impl.select.select([FileNoEq("x")], [], [], -1))
    # a bad first list is reported before a bad second one
    differential(lambda impl: impl.select.select([FileNoEq("x")], 1, [], 0))
    differential(lambda impl: impl.select.select([], [FileNoEq(-1)], [object()], 0))


# --- timeouts ------------------------------------------------------------

TIMEOUTS = [
    None, 0, 0.0, -0.0, 1e-9, 1e-7, 4e-7, 5e-7, 1e-6, 0.000_001_5, 0.001, True,
    False, -1, -1.0, -1e-9, -1e-300, -0.000_000_5, float("nan"), float("-nan"),
    float("inf"), float("-inf"), 2**31, 2**63, 2**63 - 1, 2**64, 10**30,
    -(10**30), 1e18, 1e300, -1e300, 9.3e9, 9.3e9 * 1e9, "1", b"0", "", [],
    decimal.Decimal("0"), decimal.Decimal("0.001"), decimal.Decimal("nan"),
    fractions.Fraction(1, 1000), Index(0), Index(-1), Index(2**70), Float(0.0),
    Int(0), complex(0), object(),
]


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=repr)
def test_timeout_forms(timeout, ready_pipe):
    # a ready fd keeps valid timeouts (None included) from blocking
    r = ready_pipe[0]
    differential(lambda impl: impl.select.select([r], [], [], timeout))


@pytest.mark.parametrize("timeout", [0, 0.0, 1e-9, 0.001, 0.01, Index(0),
                                     decimal.Decimal("0.001")
                                     if sys.version_info < (3, 10) else 0.002],
                         ids=repr)
def test_timeout_expires_with_nothing_ready(timeout, pipe):
    r = pipe[0]
    differential(lambda impl: impl.select.select([r], [], [r], timeout))


@pytest.mark.parametrize("timeout", timeout_objects(), ids=repr)
def test_timeout_objects(timeout, ready_pipe):
    """__float__-only and other number-like objects: 3.15 takes what has
    __float__ and words the refusal differently."""
    r = ready_pipe[0]
    differential(lambda impl: impl.select.select([r], [], [], timeout))


@pytest.mark.parametrize("timeout", timeout_objects(), ids=repr)
def test_timeout_objects_before_lists(timeout):
    # the timeout's error still comes before the lists' (here: not lists)
    differential(lambda impl: impl.select.select(1, 2, 3, timeout))


def test_float_only_timeout_waits(pipe):
    """Where __float__ is accepted, it is the wait's length."""
    r = pipe[0]

    def fn(impl):
        t0 = time.monotonic()
        res = impl.select.select([r], [], [], FloatOnly(0.02))
        return res, time.monotonic() - t0 >= 0.015
    differential(fn)


def test_empty_lists_sleep_for_the_timeout():
    for mod in BOTH:
        t0 = time.monotonic()
        assert mod.select([], [], [], 0.05) == ([], [], [])
        assert time.monotonic() - t0 >= 0.045


# --- file descriptor conversion ------------------------------------------

def fd_cases(r):
    return [
        r, FileNoEq(r), True, False, FileNoEq(False),
        -1, -5, -(2**31), -(2**31) - 1, 2**31, 2**40,
        2**100, -(2**100),
        FileNoEq(-1), FileNoEq(-7), FileNoEq(2**31), FileNoEq(2**100), FileNoEq("3"),
        FileNoEq(3.0), FileNoEq(None), FileNoEq(Index(r)), FileNoEq(-(2**100)),
        FileNoRaises(ValueError("boom")), FileNoRaises(OSError(9, "bad")),
        FileNoRaises(RuntimeError()), FileNoRaises(TypeError("t")),
        object(), 1.0, "0", b"\x00", Index(r), None, type, FileNo,
    ]


@pytest.mark.parametrize("i", range(len(fd_cases(0))))
@pytest.mark.parametrize("position", [0, 1, 2])
def test_fd_conversion(i, position, ready_pipe):
    obj = fd_cases(ready_pipe[0])[i]
    args = [[], [], [], 0]
    args[position] = [obj]
    differential(lambda impl: impl.select.select(*args))


def test_fileno_returning_bool_warns(pair):
    # bools are fds 0/1 (stdout is writable); 3.13 warns about it
    differential(lambda impl: impl.select.select([], [True, FileNoEq(True)], [], 0))


def test_closed_fd_is_ebadf():
    fd = closed_fd()
    for lists in ([[fd], [], []], [[], [fd], []], [[], [], [fd]]):
        differential(lambda impl: impl.select.select(*lists, 0))
    with pytest.raises(OSError) as info:
        fastsel.select([fd], [], [], 0)
    assert info.value.errno == 9


def test_fileno_exception_propagates_unchanged():
    exc = ValueError("mine")
    for mod in BOTH:
        with pytest.raises(ValueError) as info:
            mod.select([FileNoRaises(exc)], [], [], 0)
        assert info.value is exc


# --- iterables -----------------------------------------------------------

class ListSub(list):
    pass


class TupleSub(tuple):
    pass


class OnlyGetitem:
    def __init__(self, items):
        self.items = items

    def __getitem__(self, i):
        return self.items[i]


class BadIter:
    def __iter__(self):
        raise ValueError("no iteration today")


class BadIterType:
    def __iter__(self):
        raise TypeError("custom type error")


class BadNext:
    def __iter__(self):
        return self

    def __next__(self):
        raise RuntimeError("next failed")


@pytest.mark.parametrize("make", [
    list, tuple, set, frozenset, dict.fromkeys, iter, ListSub, TupleSub,
    OnlyGetitem, lambda fds: (fd for fd in fds), lambda fds: map(int, fds),
    lambda fds: {fd: "v" for fd in fds}.keys(),
    lambda fds: {fd: fd for fd in fds}.values(),
    lambda fds: {fd: fd for fd in fds}.items(),
    lambda fds: range(fds[0], fds[0] + 1), lambda fds: bytes(fds),
    lambda fds: bytearray(fds), lambda fds: str(fds[0]),
    lambda fds: memoryview(bytes(fds)),
    lambda fds: BadIter(), lambda fds: BadIterType(), lambda fds: BadNext(),
], ids=["list", "tuple", "set", "frozenset", "dict", "iter", "listsub",
        "tuplesub", "getitem", "generator", "map", "keys", "values", "items",
        "range", "bytes", "bytearray", "str", "memoryview", "baditer",
        "baditertype", "badnext"])
def test_iterable_kinds(make, ready_pipe, pair):
    fds = [ready_pipe[0], pair[0].fileno(), ready_pipe[0]]
    differential(lambda impl: impl.select.select(make(fds), make(fds), [], 0))


def test_duplicates_order_and_identity(ready_pipe, pair):
    r, w = ready_pipe
    a, b = pair
    fr = FileNoEq(r)
    rlist = [a, fr, r, fr, a, b, r, r]
    wlist = [w, a, FileNoEq(w), a, r]
    for mod in BOTH:
        rr, ww, xx = mod.select(rlist, wlist, [a, r], 0)
        assert [id(o) for o in rr] == [id(o) for o in rlist if o is fr or o == r]
        assert [id(o) for o in ww] == [id(o) for o in wlist if o is not r]
        assert xx == []
    differential(lambda impl: impl.select.select(rlist, wlist, [a, r], 0))


def test_returns_three_new_lists(ready_pipe):
    r = ready_pipe[0]
    for mod in BOTH:
        rlist, wlist, xlist = [r], [], []
        result = mod.select(rlist, wlist, xlist, 0)
        assert type(result) is tuple and len(result) == 3
        assert all(type(x) is list for x in result)
        assert result[0] is not rlist and result[1] is not wlist
        assert len({id(x) for x in result}) == 3
        again = mod.select(rlist, wlist, xlist, 0)
        assert all(x is not y for x, y in zip(result, again))


def test_fileno_shrinking_the_list():
    # CPython's test_select_mutated, both ways
    def run(impl):
        a = []

        class F:
            def fileno(self):
                del a[-1]
                return sys.__stdout__.fileno()
        a[:] = [F()] * 10
        r, w, x = impl.select.select([], a, [], 0)
        return r, len(w), x, w == a[:5], len(a)
    differential(run)


def test_fileno_growing_the_list(ready_pipe):
    r = ready_pipe[0]

    def run(impl):
        a = []

        class Grow:
            calls = 0

            def fileno(self):
                Grow.calls += 1
                if Grow.calls < 5:
                    a.append(r)
                return r
        a[:] = [Grow()]
        rr, _, _ = impl.select.select(a, [], [], 0)
        return len(rr), len(a), Grow.calls
    differential(run)


def test_fileno_clearing_the_list_keeps_objects_alive(ready_pipe):
    r = ready_pipe[0]

    def run(impl):
        a = []

        class Clear:
            def fileno(self):
                a.clear()
                return r
        a[:] = [Clear(), Clear(), Clear()]
        rr, _, _ = impl.select.select(a, [], [], 0)
        return [type(o).__name__ for o in rr], len(a)
    differential(run)


def test_many_entries_below_fd_setsize(ready_pipe, pair):
    # more entries in all than fastsel's stack buffer, each list within the
    # stdlib's FD_SETSIZE entries (more is in test_select_bigfd.py)
    r, w = ready_pipe
    a, b = pair
    rlist = [r, a, b] * 341
    wlist = [w, a] * 512
    differential(lambda impl: impl.select.select(rlist, wlist, rlist, 0))


# --- readiness -----------------------------------------------------------

def test_pipe_readiness(pipe):
    r, w = pipe
    differential(lambda impl: impl.select.select([r, w], [r, w], [r, w], 0))
    os.write(w, b"data")
    differential(lambda impl: impl.select.select([r, w], [r, w], [r, w], 0))
    os.read(r, 4)
    differential(lambda impl: impl.select.select([r], [w], [], 0))
    os.close(w)
    # EOF: readable
    differential(lambda impl: impl.select.select([r], [], [r], 0))


def test_socket_readiness(pair):
    a, b = pair
    differential(lambda impl: impl.select.select([a, b], [a, b], [a, b], 0))
    b.send(b"hello")
    differential(lambda impl: impl.select.select([a, b], [a, b], [a, b], 0))
    a.recv(5)
    b.shutdown(socket.SHUT_WR)
    differential(lambda impl: impl.select.select([a, b], [a, b], [a, b], 0))


def test_exceptional_condition_oob():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=5)
    s, _ = srv.accept()
    try:
        c.send(b"!", socket.MSG_OOB)
        deadline = time.monotonic() + 5
        while not std_select.select([], [], [s], 0.01)[2]:
            assert time.monotonic() < deadline
        for mod in BOTH:
            assert mod.select([], [], [s, c], 0) == ([], [], [s])
        differential(lambda impl: impl.select.select([s], [s], [s, c], 0))
    finally:
        for x in (c, s, srv):
            x.close()


def test_regular_file_always_ready(regular_file):
    differential(lambda impl: impl.select.select([regular_file], [regular_file],
                                                 [regular_file], None))


def test_blocking_until_data_arrives(pipe):
    r, w = pipe
    for mod in BOTH:
        t = threading.Timer(0.05, os.write, (w, b"x"))
        t.start()
        try:
            t0 = time.monotonic()
            assert mod.select([r], [], [], 5) == ([r], [], [])
            assert time.monotonic() - t0 < 4
        finally:
            t.join()
        os.read(r, 1)


# --- signals, EINTR and the GIL ------------------------------------------

needs_setitimer = pytest.mark.skipif(not hasattr(signal, "setitimer"),
                                     reason="needs signal.setitimer")


@needs_setitimer
@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_eintr_retried_with_remaining_time(mod, pipe, alarm_handler):
    calls = []
    signal.signal(signal.SIGALRM, lambda *a: calls.append(time.monotonic()))
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
    t0 = time.monotonic()
    result = mod.select([pipe[0]], [], [], 0.3)
    elapsed = time.monotonic() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert result == ([], [], [])
    assert len(calls) >= 2          # really interrupted, more than once
    assert 0.29 <= elapsed < 3 * 0.3 + 2    # the whole timeout; then it ended


@needs_setitimer
@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_eintr_without_timeout_keeps_blocking(mod, pipe, alarm_handler):
    r, w = pipe
    calls = []

    def handler(*a):
        calls.append(1)
        if len(calls) == 3:
            os.write(w, b"x")
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
    assert mod.select([r], [], [], None) == ([r], [], [])
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(calls) >= 3


@needs_setitimer
@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_eintr_handler_exception_propagates(mod, pipe, alarm_handler):
    class Stop(Exception):
        pass

    def handler(*a):
        raise Stop
    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    t0 = time.monotonic()
    with pytest.raises(Stop):
        mod.select([pipe[0]], [], [], 5)
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("mod", BOTH, ids=["stdlib", "fastsel"])
def test_gil_released_while_waiting(mod, pipe):
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
        mod.select([pipe[0]], [], [], 0.2)
        progressed = counter[0] - before
    finally:
        stop.set()
        t.join()
    assert progressed > 1000


# --- module surface ------------------------------------------------------

def test_error_is_oserror():
    assert fastsel.error is OSError is std_select.error


def test_select_doc_and_signature():
    assert fastsel.select.__name__ == "select"
    # (PyPy's builtins have no __text_signature__)
    assert getattr(fastsel.select, "__text_signature__", None) == \
        getattr(std_select.select, "__text_signature__", None)


# --- the timeouts handed to the kernel, seen with strace -------------------

STRACE_CHILD = r"""
import os, sys
import select as std
import fastsel
mod = std if sys.argv[1] == "stdlib" else fastsel
r, w = os.pipe()
os.write(w, b"x")                       # ready: no call below blocks
for t in [0, 1e-9, 1e-7, 4.9e-7, 5e-7, 1e-6, 1.0000005e-6, 1.5e-6, 0.1 + 1e-9,
          1.0000005, 2.5, 10**6, 86400 * 365 + 0.25, 2**33 + 1e-3, True]:
    mod.select([r], [], [], t)
p = mod.poll()
p.register(r, mod.POLLIN)
for t in [None, 0, 1e-9, 0.1, 0.5, 1.5, 999.9999, 2**31 - 1, -1, -1e-9, -1.5,
          -(2**31), True]:
    p.poll(t)
"""


def test_kernel_sees_the_same_timeouts(tmp_path):
    import re
    import shutil
    import subprocess

    from _helpers import child_env

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    script = tmp_path / "child.py"
    script.write_text(STRACE_CHILD)
    calls = {}
    for name in ("stdlib", "fastsel"):
        out = tmp_path / f"{name}.trace"
        proc = subprocess.run(
            [strace, "-qq", "-e", "trace=select,pselect6,poll,ppoll", "-o",
             str(out), sys.executable, str(script), name],
            env=child_env(), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 and "ptrace" in proc.stderr:
            pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr
        lines = [ln for ln in out.read_text().splitlines()
                 if re.match(r"(p?select6?|p?poll)\(", ln)]
        # keep the syscall name and its timeout argument only: fastsel passes
        # NULL where the stdlib passes an empty fd set
        calls[name] = [
            (ln.split("(")[0], re.search(r"(\{tv_sec=[^}]*\}|NULL|-?\d+)\)\s+=",
                                         ln.replace(", NULL)", ")")).group(1))
            for ln in lines]
    assert len(calls["stdlib"]) == 15 + 13
    assert calls["fastsel"] == calls["stdlib"]


def test_unopened_fd_past_the_fd_table_is_reported_as_the_kernel_leaves_it():
    """select(2) only rewrites the bits of fds inside the process's fd table:
    an fd number beyond it comes back as given, and the stdlib reports it.
    fastsel must read the sets back even when select(2) returns 0."""
    fd = 1000                     # below FD_SETSIZE, so the stdlib accepts it
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        pytest.skip("fd 1000 is open in this process")
    for lists in (([fd], [], []), ([], [fd], []), ([], [], [fd])):
        differential(lambda impl: impl.select.select(*lists, 0))
