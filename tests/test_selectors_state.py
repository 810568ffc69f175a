"""Stateful differential test: the stdlib's and fastsel's selector of the same
class, driven by hypothesis through the same random steps on real sockets
and pipes (register, modify, unregister, select, get_key, get_map, close,
closing fds behind the selector's back, fd reuse, readiness changes).

Both selectors watch the very same file objects, so keys compare as tuples
and error texts (which show reprs) compare exactly.  After close() fastsel's
deliberate difference applies and is modelled: register, unregister, modify
and select raise RuntimeError('Selector is closed') where the stdlib's
classes each do something else (gh-91433).
"""
from __future__ import annotations

import os
import selectors as std_selectors
import socket

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize,
                                 invariant, precondition, rule)

import fastsel
from conftest import outcome

# its model includes fastsel's deliberate close() behaviour (docs/differences.md)
pytestmark = pytest.mark.c_impl

KINDS = [k for k in ("EpollSelector", "PollSelector", "SelectSelector")
         if hasattr(std_selectors, k)]
POOL = 8                     # live file objects at any time
EVENTS = st.sampled_from([1, 2, 3, 1, 2, 3, 0, 4, True, -1])
DATA = st.sampled_from([None, 0, 1, "a", "b", (1, 2)])
TIMEOUTS = st.sampled_from([0, 0.0, -1, 0.0001, None])
# per class: how many examples x steps (>= 10**4 steps in total)
EXAMPLES, STEPS = 130, 50


def norm(value):
    """Keys as tuples, select() results sorted by fd."""
    if isinstance(value, std_selectors.SelectorKey):
        return ("key",) + tuple(value)
    if isinstance(value, list) and value and isinstance(value[0], tuple) \
            and len(value[0]) == 2 and isinstance(value[0][0],
                                                  std_selectors.SelectorKey):
        return sorted(((norm(k), ev) for k, ev in value),
                      key=lambda kv: (kv[0][2], kv[1]))
    if isinstance(value, (list, tuple)):
        return type(value)(norm(v) for v in value)
    return value


def both(std_fn, fast_fn):
    std = outcome(std_fn)
    fast = outcome(fast_fn)
    if std[0] == "ok":
        std = ("ok", norm(std[1]), std[2])
    if fast[0] == "ok":
        fast = ("ok", norm(fast[1]), fast[2])
    assert fast == std, f"fastsel {fast!r} != stdlib {std!r}"
    return std


class SelectorMachine(RuleBasedStateMachine):
    KIND = "EpollSelector"

    def __init__(self):
        super().__init__()
        self.objs = []          # live file objects: sockets and pipe fds
        self.peers = {}         # id(obj) -> what makes it readable
        self.dead = []          # closed socket objects (lookup fallback)
        self.owned = []         # everything to close at teardown
        self.std = getattr(std_selectors, self.KIND)()
        self.fast = getattr(fastsel, self.KIND)()
        self.closed = False

    @initialize()
    def fill(self):
        while len(self.objs) < POOL:
            self._new_obj()

    # Pipe fds are plain ints: each is closed at most once (its number may
    # belong to a new object afterwards), tracked in an entry [obj, open].

    def _new_obj(self):
        if len(self.objs) % 3 == 2:
            r, w = os.pipe()
            mine, peer = [r, True], [w, True]
        else:
            a, b = socket.socketpair()
            mine, peer = [a, True], [b, True]
        self.owned += [mine, peer]
        self.objs.append(mine[0])
        self.peers[id(mine[0]) if not isinstance(mine[0], int) else mine[0]] = \
            (mine, peer)

    def _entries(self, obj):
        return self.peers[id(obj) if not isinstance(obj, int) else obj]

    @staticmethod
    def _close(entry):
        if entry[1]:
            entry[1] = False
            obj = entry[0]
            os.close(obj) if isinstance(obj, int) else obj.close()

    def teardown(self):
        self.std.close()
        self.fast.close()
        for entry in self.owned:
            self._close(entry)

    def _target(self, i, as_int):
        obj = self.objs[i % len(self.objs)]
        if as_int and not isinstance(obj, int):
            return obj.fileno()
        return obj

    # -- operations, compared while open and modelled once closed --------------

    def _mutating(self, name, *args):
        if self.closed:
            out = outcome(lambda: getattr(self.fast, name)(*args))
            assert out[:3] == ("raise", RuntimeError, "Selector is closed"), out
            return
        both(lambda: getattr(self.std, name)(*args),
             lambda: getattr(self.fast, name)(*args))

    @rule(i=st.integers(0, POOL - 1), as_int=st.booleans(), events=EVENTS,
          data=DATA)
    def register(self, i, as_int, events, data):
        self._mutating("register", self._target(i, as_int), events, data)

    @rule(i=st.integers(0, POOL - 1), as_int=st.booleans())
    def unregister(self, i, as_int):
        self._mutating("unregister", self._target(i, as_int))

    @rule(i=st.integers(0, POOL - 1), as_int=st.booleans(), events=EVENTS,
          data=DATA)
    def modify(self, i, as_int, events, data):
        self._mutating("modify", self._target(i, as_int), events, data)

    @precondition(lambda self: self.dead)
    @rule(j=st.integers(0, 100), op=st.sampled_from(["unregister", "get_key",
                                                     "modify"]))
    def use_closed_socket(self, j, op):
        obj = self.dead[j % len(self.dead)]
        args = (obj, 1) if op == "modify" else (obj,)
        if op == "get_key":
            both(lambda: self.std.get_key(obj), lambda: self.fast.get_key(obj))
        else:
            self._mutating(op, *args)

    @rule(timeout=TIMEOUTS)
    def select(self, timeout):
        if timeout is None and not self.closed and not self._ready_now():
            # block only when something is ready (level-triggered: still
            # ready for the calls below)
            timeout = 0
        self._mutating("select", timeout)

    def _ready_now(self):
        try:
            return bool(self.std.select(0))
        except OSError:
            return False

    @rule(i=st.integers(0, POOL - 1), as_int=st.booleans())
    def get_key(self, i, as_int):
        obj = self._target(i, as_int)
        both(lambda: self.std.get_key(obj), lambda: self.fast.get_key(obj))

    @rule(i=st.integers(0, POOL - 1), dflt=st.sampled_from([None, 0]))
    def get_map(self, i, dflt):
        obj = self._target(i, False)

        def view(sel):
            m = sel.get_map()
            if m is None:
                return None
            return (len(m), list(m), obj in m, m.get(obj, dflt),
                    [norm(k) for k in m.values()])
        both(lambda: view(self.std), lambda: view(self.fast))

    @rule(i=st.integers(0, POOL - 1))
    def make_readable(self, i):
        mine, (p, live) = self._entries(self.objs[i % len(self.objs)])
        if live:
            try:
                os.write(p, b"x") if isinstance(p, int) else p.send(b"x")
            except OSError:
                pass

    @rule(i=st.integers(0, POOL - 1))
    def drain(self, i):
        obj = self.objs[i % len(self.objs)]
        try:
            os.set_blocking(obj if isinstance(obj, int) else obj.fileno(), False)
            os.read(obj if isinstance(obj, int) else obj.fileno(), 4096)
        except OSError:
            pass

    @rule(i=st.integers(0, POOL - 1), peer=st.booleans())
    def close_fd(self, i, peer):
        """Close a file object (or its peer: a hang-up) behind the
        selectors' backs; a new one usually reuses the fd number."""
        idx = i % len(self.objs)
        obj = self.objs[idx]
        mine, other = self._entries(obj)
        if peer:
            self._close(other)
            return
        self._close(mine)
        if not isinstance(obj, int):
            self.dead.append(obj)
        del self.objs[idx]
        self._new_obj()

    @rule()
    def close(self):
        both(self.std.close, self.fast.close)
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule()
    def reopen(self):
        self.std = getattr(std_selectors, self.KIND)()
        self.fast = getattr(fastsel, self.KIND)()
        self.closed = False

    @invariant()
    def maps_agree(self):
        sm, fm = self.std.get_map(), self.fast.get_map()
        if self.closed:
            assert sm is None and fm is None
        else:
            assert list(fm) == list(sm)
            assert [tuple(k) for k in fm.values()] == \
                [tuple(k) for k in sm.values()]


_settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                     deadline=None,
                     suppress_health_check=list(HealthCheck))

for _kind in KINDS:
    _cls = type(f"{_kind}Machine", (SelectorMachine,), {"KIND": _kind})
    _case = _cls.TestCase
    _case.settings = _settings
    globals()[f"Test{_kind}State"] = _case


def test_step_budget():
    # CI runs at least 10**4 steps in total across the classes
    assert len(KINDS) * EXAMPLES * STEPS >= 10 ** 4
    pytest.importorskip("hypothesis")
