"""Coverage-guided differential fuzzing with atheris (not collected by pytest).

Each input is decoded into a short program: a target (select(), poll, epoll or
one selector class) and a few calls with hostile arguments.  The program runs
on the stdlib and on fastsel; any difference in outcome (result, or exception
type and message) or a crash stops the fuzzer with the input saved.

    pip install atheris          # into a venv of your own
    PYTHONPATH=<build dir>:. python tests/fuzz_atheris.py -max_total_time=60

Known differences (docs/differences.md, docs/reliability.md) are not
generated: fds >= FD_SETSIZE in select(), use after close(), fds past C int
in SelectSelector.register(), and argument-count errors (see
tests/test_fuzz.py).  fd-valued ints come from this process's own fds only.
"""
from __future__ import annotations

import math
import os
import re
import select as std_select
import selectors as std_selectors
import signal
import socket
import sys

import atheris

with atheris.instrument_imports():
    import fastsel

from _helpers import FileNo, FileNoRaises      # after fastsel: it imports fastsel

A, B = socket.socketpair()
B.send(b"x")
R, W = os.pipe()
CLOSED = socket.socket()
CLOSED.close()
FDS = [A.fileno(), B.fileno(), R, W]


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang("blocked")


signal.signal(signal.SIGALRM, _alarm)


SPECIAL_INTS = [0, 1, -1, 2**15, 2**16, 2**31 - 1, 2**31, -2**31, 2**32, 2**63 - 1,
                2**63, -2**63, 2**64, 10**30]
SPECIAL_FLOATS = [0.0, -0.0, 1e-9, 0.001, -0.5, 1e18, 1e300, math.inf, -math.inf, math.nan]


def value(fdp, depth=0):
    k = fdp.ConsumeIntInRange(0, 11)
    if k == 0:
        return fdp.PickValueInList(SPECIAL_INTS)
    if k == 1:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 16))
    if k == 2:
        return fdp.PickValueInList(SPECIAL_FLOATS)
    if k == 3:
        return fdp.ConsumeBool()
    if k == 4:
        return fdp.ConsumeUnicodeNoSurrogates(3)
    if k == 5:
        return fdp.ConsumeBytes(3)
    if k == 6:
        return None
    if k == 7:
        return fdp.PickValueInList(FDS)
    if k == 8:
        return fdp.PickValueInList([FileNo(v) for v in FDS + [-1, "3", None, 1.5]]
                                   + [FileNoRaises(ValueError, "v"), FileNoRaises(OSError, 9, "e"),
                                      FileNoRaises(TypeError, "t")])
    if k == 9:
        return fdp.PickValueInList([A, B, CLOSED])
    if k == 10 and depth < 2:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return fdp.ConsumeFloat()


def fd_value(fdp):
    v = value(fdp)
    # ints in fd positions: ours, negative, or never open (and below C int's
    # end and FD_SETSIZE, to stay clear of the documented differences)
    if type(v) is int and v not in FDS and not v < 0:
        v = fdp.PickValueInList(FDS)
    if isinstance(v, list):
        v = [x if not (type(x) is int and x >= 0 and x not in FDS) else A for x in v]
    return v


def outcome(fn):
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        r = fn()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:      # noqa: BLE001
        return ("raise", type(e), canon(re.sub(r" at 0x[0-9a-f]+", "", str(e))))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return ("ok", norm(r))


_FLIP = {"<=": ">=", ">=": "<=", "<": ">", ">": "<"}
_CMP = re.compile(r"'(<=|>=|<|>)' not supported between instances of '([^']+)' and '([^']+)'")


def canon(msg):
    """atheris' comparison hooks run instrumented comparisons reflected
    (b >= a for a <= b): fold both spellings of one comparison together."""
    m = _CMP.fullmatch(msg)
    if m and m.group(2) > m.group(3):
        return f"'{_FLIP[m.group(1)]}' not supported between instances of " \
               f"'{m.group(3)}' and '{m.group(2)}'"
    return msg


def norm(r):
    if isinstance(r, list):
        return sorted((norm(x) for x in r), key=repr)
    if isinstance(r, tuple):
        return tuple(norm(x) for x in r)
    if type(r).__module__ in ("select", "selectors", "fastsel._fastsel", "fastsel"):
        return type(r).__name__
    return r


def program(fdp):
    target = fdp.ConsumeIntInRange(0, 5)
    calls = []
    for _ in range(fdp.ConsumeIntInRange(1, 5)):
        op = fdp.ConsumeIntInRange(0, 4)
        calls.append((op, fd_value(fdp), value(fdp), value(fdp)))
    return target, calls


def run(mod_select, mod_selectors, target, calls):
    out = []
    if target == 0:
        for _, a, b, t in calls:
            out.append(outcome(lambda: mod_select.select(
                a if isinstance(a, list) else [a], [], [], t)))
        return out
    if target == 1:
        obj = mod_select.poll()
        names = ["register", "modify", "unregister", "poll", "register"]
    elif target == 2:
        obj = mod_select.epoll()
        names = ["register", "modify", "unregister", "poll", "register"]
    else:
        cls = ["SelectSelector", "PollSelector", "EpollSelector"][target - 3]
        obj = getattr(mod_selectors, cls)()
        names = ["register", "modify", "unregister", "select", "get_key"]
    try:
        for op, a, b, c in calls:
            name = names[op]
            if name in ("poll", "select"):
                out.append(outcome(lambda: getattr(obj, name)(b)))
            elif name in ("unregister", "get_key"):
                out.append(outcome(lambda: getattr(obj, name)(a)))
            elif target >= 3 and isinstance(a, int) and not isinstance(a, bool) \
                    and a > 2**31 - 1:
                continue
            else:
                args = (a, b, c) if target >= 3 else (a, b)
                out.append(outcome(lambda: getattr(obj, name)(*args)))
    finally:
        obj.close() if hasattr(obj, "close") else None
    return out


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    target, calls = program(fdp)
    std = run(std_select, std_selectors, target, calls)
    fast = run(fastsel, fastsel, target, calls)
    if std != fast:
        raise AssertionError(f"target {target} calls {calls!r}\nstdlib:  {std!r}\nfastsel: {fast!r}")


if __name__ == "__main__":
    # coverage of the Python side (this harness, the stdlib's selectors.py,
    # fastsel's package) guides the search; the C code is not instrumented
    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
