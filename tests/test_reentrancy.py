"""Re-entrancy: Python code run in the middle of a call -- a fileno(),
__index__ or __and__ of an argument, a timeout's comparisons, a finaliser
that a collection inside an allocation runs, a warnings hook -- that clears,
mutates or closes the object the call is working on.  Nothing may crash or
use freed memory; where the stdlib gives a result or an exception, fastsel
gives the same one.

The C selector cases that crashed the interpreter before their fix (a review
of the C code found them) run their body in a child process (the same
fastsel, see _helpers.child_env) and check its exit status and output.
"""
from __future__ import annotations

import selectors as std_selectors
import sys
import textwrap
from typing import Any, Callable

import pytest

import fastsel
from _helpers import child_env, run_python
from conftest import FASTSEL as FAST
from conftest import STDLIB as STD
from conftest import SocketPair, outcome

# the stdlib's selector classes on this platform (the differential cases), and
# fastsel's (a libkqueue build adds a KqueueSelector the stdlib lacks there)
STD_KINDS = [n for n in ("SelectSelector", "PollSelector", "EpollSelector", "KqueueSelector")
             if hasattr(std_selectors, n)]
FAST_KINDS = STD_KINDS + [n for n in ("KqueueSelector",)
                          if n not in STD_KINDS and hasattr(fastsel, n)]


def run_child(code: str, *, debug_malloc: bool = True) -> str:
    """Run code in a child interpreter; its stdout, which must end in OK."""
    env = child_env(PYTHONMALLOC="debug") if debug_malloc else child_env()
    proc = run_python(["-X", "faulthandler", "-c", textwrap.dedent(code)],
                      timeout=60, env=env)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout.rstrip().endswith("OK"), (proc.stdout, proc.stderr)
    return proc.stdout


# ---- callbacks from the arguments: select module and selectors ---------------

class _CallsBack:
    """fileno() / __index__ / __and__ that run ``action`` first."""
    def __init__(self, action: Callable[[], Any], fd: int) -> None:
        self.action, self.fd = action, fd

    def fileno(self) -> int:
        self.action()
        return self.fd

    def __index__(self) -> int:
        self.action()
        return 1

    def __and__(self, other: Any) -> int:
        self.action()
        return 0
    __rand__ = __and__

    def __invert__(self) -> int:
        return 0


def _quiet(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except (KeyError, ValueError, OSError, RuntimeError):
            pass
    return run


REENTRY = {
    # select module: the call re-enters the object it is working on
    "select-fileno-clears-list": lambda impl, s: (lambda lst: (
        lst.append(_CallsBack(lst.clear, s[0].fileno())), lst.append(s[1]),
        [len(x) for x in impl.select.select(lst, [], [], 0)])[-1])([s[0]]),
    "poll-fileno-unregisters": lambda impl, s: (lambda p: (
        p.register(s[0]),
        p.register(_CallsBack(_quiet(lambda: p.unregister(s[0])), s[2].fileno())),
        sorted(p.poll(0)))[-1])(impl.select.poll()),
    "poll-timeout-mutates": lambda impl, s: (lambda p: (
        p.register(s[0]),
        sorted(p.poll(_CallsBack(_quiet(lambda: (p.unregister(s[0]), p.register(s[1]))),
                                 0))))[-1])(impl.select.poll()),
    "poll-mask-unregisters": lambda impl, s: (lambda p: (
        p.register(s[0]),
        p.modify(s[0], _CallsBack(_quiet(lambda: p.unregister(s[0])), 0))))(impl.select.poll()),
    "epoll-fileno-closes": lambda impl, s: (lambda ep: ep.register(
        _CallsBack(ep.close, s[2].fileno())))(impl.select.epoll()),
    "epoll-maxevents-closes": lambda impl, s: (lambda ep: (
        ep.register(s[0]), ep.poll(0, _CallsBack(ep.close, 0)))[-1])(impl.select.epoll()),
    "epoll-mask-closes": lambda impl, s: (lambda ep: ep.register(
        s[0], _CallsBack(ep.close, 0)))(impl.select.epoll()),
}
SEL_REENTRY = {
    "register-fileno-unregisters-other": lambda sel, s: (
        sel.register(s[0], 1, "a"),
        sel.register(_CallsBack(_quiet(lambda: sel.unregister(s[0])), s[2].fileno()), 1, "x"),
        sorted(k.data for k in sel.get_map().values()))[-1],
    "modify-data-is-anything": lambda sel, s: (
        sel.register(s[0], 1, "a"), sel.modify(s[0], 3, _CallsBack(sel.close, 0)).events)[-1],
    "map-iter-mutated": lambda sel, s: (
        sel.register(s[0], 1, "a"), sel.register(s[2], 1, "c"),
        (lambda it: (next(it), sel.unregister(s[2]), list(it)))(iter(sel.get_map())))[-1],
    "map-iter-after-close": lambda sel, s: (
        sel.register(s[0], 1, "a"),
        (lambda it: (sel.close(), list(it)))(iter(sel.get_map())))[-1],
}
# The callback closes the selector in the middle of the call: fastsel raises
# RuntimeError('Selector is closed') (or KeyError: the key went with close()),
# where the stdlib's classes disagree with each other (docs/differences.md).
SEL_CLOSING = {
    "register-fileno-closes": lambda sel, s: sel.register(
        _CallsBack(sel.close, s[0].fileno()), 1, "x"),
    "register-events-and-closes": lambda sel, s: (
        sel.register(s[0], 1, "a"), sel.register(s[2], _CallsBack(sel.close, 0), "c"))[-1],
    "modify-events-and-closes": lambda sel, s: (
        sel.register(s[0], 1, "a"), sel.modify(s[0], _CallsBack(sel.close, 0), "c"))[-1],
}


@pytest.fixture
def socks(pairs: Callable[[], SocketPair]) -> list:
    """[a, b, c, d]: two connected pairs, a readable (b has sent a byte)."""
    a, b = pairs()
    c, d = pairs()
    b.send(b"x")
    return [a, b, c, d]


@pytest.mark.parametrize("case", sorted(REENTRY))
def test_reentrant_select_module(case: str, socks: list) -> None:
    std = outcome(lambda: REENTRY[case](STD, socks))
    fast = outcome(lambda: REENTRY[case](FAST, socks))
    assert fast == std


@pytest.mark.parametrize("name", STD_KINDS)
@pytest.mark.parametrize("case", sorted(SEL_REENTRY))
def test_reentrant_selectors(name: str, case: str, socks: list) -> None:
    res = []
    for impl in (STD, FAST):
        sel = getattr(impl.selectors, name)()
        try:
            res.append(outcome(lambda: SEL_REENTRY[case](sel, socks)))
        finally:
            sel.close()
    assert res[1] == res[0]


# ---- modify(): code run inside it changes the fd's registration --------------
# The stdlib's modify() compares events (their __ne__), converts them (their
# __and__), tells the poller, compares data (its __ne__) and then stores the
# new key whatever that code did: the key and the kernel may then disagree, a
# key may come back after an unregister, and a refused poller call may find
# its key gone.  fastsel gives the same keys, results and errors.

NE_ACTIONS = {
    "modify-data": lambda sel, a: sel.modify(a, 1, "inner"),
    "modify-write": lambda sel, a: sel.modify(a, 2, "inner"),
    "modify-both": lambda sel, a: sel.modify(a, 3, "inner"),
    "unregister": lambda sel, a: sel.unregister(a),
    "unregister-register": lambda sel, a: (sel.unregister(a), sel.register(a, 3, "x")),
}


def _describe(sel, a) -> tuple:
    """What the stdlib's user can see: the key, a select(0), then whether
    unregister() and register() again work."""
    key = outcome(lambda: (sel.get_key(a).events, type(sel.get_key(a).data).__name__))
    ready = sorted((k.fd, ev, k.events) for k, ev in sel.select(0))
    gone = outcome(lambda: sel.unregister(a).events)
    again = outcome(lambda: sel.register(a, 1).events)
    return key, ready, gone, again


def _modify_reentering(impl, name: str, where: str, case: str, events: int, a) -> tuple:
    sel = getattr(impl.selectors, name)()
    fired = []

    def hook() -> None:
        if not fired:
            fired.append(1)
            NE_ACTIONS[case](sel, a)

    class Events(int):
        def __ne__(self, other: object) -> bool:
            if where == "events-ne":
                hook()
            return int(self) != other

        def __and__(self, other: int) -> int:
            if where == "events-and":
                hook()
            return int(self) & other

    class Data:
        def __ne__(self, other: object) -> bool:
            if where == "data-ne":
                hook()
            return True
    try:
        sel.register(a, 1, "d0")
        got = outcome(lambda: (lambda k: (k.events, type(k.data).__name__))(
            sel.modify(a, Events(events), Data())))
        return got, len(fired), _describe(sel, a)
    finally:
        sel.close()


@pytest.mark.parametrize("name", STD_KINDS)
@pytest.mark.parametrize("events", [1, 2], ids=["same-events", "new-events"])
@pytest.mark.parametrize("case", sorted(NE_ACTIONS))
@pytest.mark.parametrize("where", ["data-ne", "events-ne", "events-and"])
def test_modify_code_changes_the_registration(name: str, where: str, case: str,
                                              events: int, socks: list) -> None:
    a = socks[0]                    # readable and writable
    std = _modify_reentering(STD, name, where, case, events, a)
    assert _modify_reentering(FAST, name, where, case, events, a) == std


@pytest.mark.c_impl
@pytest.mark.parametrize("name", FAST_KINDS)
@pytest.mark.parametrize("case", sorted(SEL_CLOSING))
def test_reentrant_close_mid_call(name: str, case: str, socks: list) -> None:
    sel = getattr(fastsel, name)()
    got = outcome(lambda: SEL_CLOSING[case](sel, socks))
    assert got[0] == "raise" and got[1] in (RuntimeError, KeyError), got
    assert sel.get_map() is None
    with pytest.raises(RuntimeError, match="Selector is closed"):
        sel.select(0)
    sel.close()


# ---- the C selectors' regressions: timeouts, finalisers, warning hooks -------

@pytest.mark.c_impl
@pytest.mark.parametrize("clsname", FAST_KINDS)
def test_select_timeout_that_closes_the_selector(clsname):
    # select() converted the timeout (Python code: __le__/__lt__, math.ceil)
    # after its closed check, then waited on the freed backend (NULL deref).
    run_child(f"""
        import fastsel
        s = fastsel.{clsname}()

        class T:
            def _close(self, other):
                s.close()
                return True
            __le__ = __lt__ = __ge__ = __gt__ = _close

        try:
            s.select(T())
        except RuntimeError as e:
            assert str(e) == "Selector is closed", e
        else:
            raise AssertionError("no error")
        print("OK")
    """)


@pytest.mark.c_impl
@pytest.mark.parametrize("clsname", FAST_KINDS)
def test_select_gc_unregisters_while_results_are_built(clsname):
    # select() took a borrowed key from the slot and then allocated the
    # (key, events) tuple: a collection there may run a finaliser that
    # unregisters the fd and frees the key, which then went into the
    # result.  GC runs inside allocations on 3.9-3.11.
    out = run_child(f"""
        import gc, socket
        import fastsel

        sel = fastsel.{clsname}()
        socks = [socket.socketpair() for _ in range(20)]
        fds = set()
        for a, b in socks:
            b.send(b"x")
            sel.register(a.fileno(), fastsel.EVENT_READ, object())
            fds.add(a.fileno())
        state = {{"phase": 0}}

        class Bomb:
            def __init__(self):
                self.cycle = self

            def __del__(self):
                if state["phase"] == 0:
                    # the collection in PyList_New: arm the next one
                    state["phase"] = 1
                    Bomb()
                elif state["phase"] == 1:
                    state["phase"] = 2
                    for a, _ in socks:
                        try:
                            sel.unregister(a.fileno())
                        except (KeyError, RuntimeError):
                            pass

        hold = [(i, -i) for i in range(5000)]   # empty the 2-tuple free list
        gc.collect()
        Bomb()
        old = gc.get_threshold()
        gc.set_threshold(1)
        try:
            res = sel.select(0)
        finally:
            gc.set_threshold(*old)
            reached = state["phase"]
            state["phase"] = 3
        for key, mask in res:
            assert type(key) is fastsel.SelectorKey, type(key)
            assert key.fd in fds and key.fileobj == key.fd, key
            assert type(key.data) is object, key
            assert mask == fastsel.EVENT_READ, mask
        print("phase", reached, "results", len(res))
        del hold
        sel.close()
        for a, b in socks:
            a.close()
            b.close()
        print("OK")
    """)
    if sys.version_info < (3, 12):
        # collections run inside allocations: the finaliser did run there
        assert "phase 2" in out, out


@pytest.mark.c_impl
def test_modify_bool_fd_warning_hook_that_grows_the_table():
    # 3.13 warns when a bool is used as an fd.  modify() kept a pointer into
    # the slot table across that warning; a showwarning hook that registers
    # a high fd reallocates the table, and a hook that raises made modify()
    # drop the key through the stale pointer.  Compared with the stdlib.
    out = run_child("""
        import selectors, warnings
        import fastsel

        results = []
        for mod in (selectors, fastsel):
            sel = mod.PollSelector()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sel.register(True, mod.EVENT_READ, "t")

                def hook(*args, **kwargs):
                    sel.register(100000, mod.EVENT_READ, "far")
                    raise OSError("hook")

                warnings.simplefilter("always")
                warnings.showwarning = hook
                try:
                    sel.modify(True, mod.EVENT_WRITE, "t2")
                except Exception as e:
                    err = (type(e).__name__, str(e))
                else:
                    err = None
            keys = sorted((fd, k.data, k.events)
                          for fd, k in sel.get_map().items())
            results.append((err, keys))
            sel.close()
        assert results[0] == results[1], results
        print(results[1])
        print("OK")
    """)
    if sys.version_info >= (3, 13):
        assert "hook" in out


@pytest.mark.c_impl
@pytest.mark.parametrize("clsname", FAST_KINDS)
def test_register_when_a_finaliser_registers_the_same_fd(impl, clsname):
    # register() checked for a duplicate before allocating the key; a
    # collection in that allocation (3.9-3.11) can run a finaliser that
    # registers the same fd.  The kernel add then failed (FileExistsError
    # where the stdlib says KeyError) or, under kqueue, succeeded over the
    # first registration and overwrote its slot.
    import gc
    import socket

    if impl is STD and clsname not in STD_KINDS:
        pytest.skip(f"the stdlib has no {clsname} on this platform")
    cls = getattr(impl.selectors, clsname)
    sel = cls()
    r, w = socket.socketpair()
    fd = r.fileno()
    state = {"armed": True}

    class Bomb:
        def __init__(self):
            self.cycle = self

        def __del__(self):
            if state["armed"]:
                state["armed"] = False
                try:
                    sel.register(fd, impl.selectors.EVENT_READ, "inner")
                except KeyError:
                    pass

    try:
        gc.collect()
        Bomb()
        old = gc.get_threshold()
        gc.set_threshold(1)
        try:
            sel.register(fd, impl.selectors.EVENT_READ, "outer")
        except KeyError as e:
            outer = e
        else:
            outer = None
        finally:
            gc.set_threshold(*old)
            state["armed"] = False
        gc.collect()
        keys = list(sel.get_map().values())
        assert len(keys) == 1, keys
        if outer is not None:
            # the finaliser's registration came first and stays
            assert str(outer) == f"'{fd!r} (FD {fd!r}) is already registered'"
            assert keys[0].data == "inner"
        else:
            assert keys[0].data == "outer"
        assert sel.unregister(fd) is keys[0]
        assert len(sel.get_map()) == 0
    finally:
        sel.close()
        r.close()
        w.close()
