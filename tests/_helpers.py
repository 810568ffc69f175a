"""Shared test helpers; first, for tests that run Python code in a child process.

The child must import the same ``fastsel`` (and so the same C extension,
``fastsel._fastsel`` inside it) as the test process (the installed package
under ``make test``, a build dir in development), whatever its working
directory: ``child_env()`` puts its directory first on ``PYTHONPATH``, unless
it is this interpreter's site-packages, which the child finds in its usual
place (after the stdlib: first, PyPI's uncompiled ``greenlet`` package there
would shadow PyPy's own ``greenlet`` module).
"""
from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable, Optional

import fastsel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(**extra: str) -> dict:
    here = os.path.dirname(os.path.dirname(os.path.abspath(fastsel.__file__)))
    site_dirs = {os.path.realpath(d) for d in site.getsitepackages()}
    paths = [] if os.path.realpath(here) in site_dirs else [here]
    old = os.environ.get("PYTHONPATH")
    if old:
        paths.append(old)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    if not env["PYTHONPATH"]:
        del env["PYTHONPATH"]
    env.pop("PYTHONHOME", None)
    env.update(extra)
    return env


def run_python(args: list, *, timeout: float = 60, cwd: Optional[str] = None,
               env: Optional[dict] = None, **kw: Any) -> subprocess.CompletedProcess:
    """``sys.executable ARGS`` with captured text output, bounded in time."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env or child_env(), **kw)


def open_fds() -> int:
    """How many fds this process has open (Linux's /proc)."""
    return len(os.listdir("/proc/self/fd"))


def wait_until_blocked(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Return once ``thread`` sleeps in a select/poll/epoll wait, so that what
    a test does next happens during that wait however loaded the machine is
    (Linux's /proc wchan: poll_schedule_timeout, ep_poll; the GIL's futex
    is not one).  Without that /proc entry: a fixed 0.1 s, as tests did."""
    path = f"/proc/self/task/{thread.native_id}/wchan"
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            with open(path) as f:
                if "poll" in f.read():
                    return
        except OSError:
            break
        time.sleep(0.002)
    time.sleep(0.1)


def closed_fd() -> int:
    """A descriptor number that is not open (EBADF), at the time of the call."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


# --- fileno() stand-ins -----------------------------------------------------
# Objects with a fileno() method, as select/poll/epoll/kqueue and the
# selectors accept in place of an fd.

class FileNo:
    """fileno() returns ``value`` as it is: an fd, or what an implementation
    must refuse or warn about (a bool, a negative or huge int, a str, a
    float, None, an int subclass, ...)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def fileno(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class FileNoRaises:
    """fileno() raises.  Given an exception instance, that very instance
    (a test may check that it propagates unchanged); given a class, a fresh
    ``exc(*args)`` per call (for tests that call it many times: a re-raised
    instance keeps growing its traceback, which a leak test would see)."""

    def __init__(self, exc: Any, *args: Any) -> None:
        self.exc, self.args = exc, args

    def fileno(self) -> int:
        if isinstance(self.exc, BaseException):
            raise self.exc
        raise self.exc(*self.args)

    def __repr__(self) -> str:
        if isinstance(self.exc, BaseException):
            return f"FileNoRaises({self.exc!r})"
        return f"FileNoRaises({', '.join([self.exc.__name__, *map(repr, self.args)])})"


# --- timeout objects -------------------------------------------------------
# Shared by the select/poll/epoll/kqueue differential tests.  3.15 accepts
# anything with __float__ as a timeout and names the type (module-qualified,
# which is why these live in a module of their own) when it refuses one.

class FloatOnly:
    def __init__(self, v: Any) -> None:
        self.v = v

    def __float__(self) -> Any:
        return self.v

    def __repr__(self) -> str:
        return f"FloatOnly({self.v!r})"


class FloatAndIndex:
    """__index__ wins over __float__ (the int path is tried first)."""

    def __init__(self, f: float, i: int) -> None:
        self.f, self.i = f, i

    def __float__(self) -> float:
        return self.f

    def __index__(self) -> int:
        return self.i

    def __repr__(self) -> str:
        return f"FloatAndIndex({self.f!r}, {self.i!r})"


class FloatRaises:
    """A fresh exception per call: a re-raised instance would keep growing
    its traceback."""

    def __init__(self, exc_type: type, text: str) -> None:
        self.exc_type, self.text = exc_type, text

    def __float__(self) -> float:
        raise self.exc_type(self.text)

    def __repr__(self) -> str:
        return f"FloatRaises({self.exc_type.__name__}, {self.text!r})"


class _FloatSub(float):
    pass


class FloatReturnsSub:
    """__float__ returning a float subclass: a DeprecationWarning."""

    def __float__(self) -> float:
        return _FloatSub(0.0)

    def __repr__(self) -> str:
        return "FloatReturnsSub()"


class IntOnly:
    def __int__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "IntOnly()"


class Outer:
    class Inner:
        """Its qualified name is Outer.Inner."""

        def __repr__(self) -> str:
            return "Outer.Inner()"


def timeout_objects() -> list:
    """Objects that are not plain ints or floats, valid or not as timeouts
    depending on the version; the valid ones never block (<= 0 or tiny)."""
    import decimal
    import fractions
    return [
        FloatOnly(0.0), FloatOnly(-1.0), FloatOnly(1e-9), FloatOnly(1),
        FloatOnly(float("nan")), FloatOnly(float("inf")), FloatOnly(1e300),
        FloatOnly(-1e300), FloatOnly("0"),
        FloatAndIndex(0.0, 2**70), FloatAndIndex(1e300, 0),
        FloatRaises(TypeError, "te"), FloatRaises(ZeroDivisionError, "zd"),
        FloatRaises(OverflowError, "of"), FloatReturnsSub(), IntOnly(),
        Outer.Inner(), Outer(),
        decimal.Decimal("0"), decimal.Decimal("-0.5"), decimal.Decimal("nan"),
        decimal.Decimal("1e400"), fractions.Fraction(-1, 2),
        fractions.Fraction(10**400), "0", b"0", [], object(), 0j,
    ]


def fork_child(body: Callable[[], int]) -> int:
    """Run body() in a forked child; return its exit status (0 = passed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # 3.12: fork + threads
        pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        except BaseException:                 # noqa: BLE001
            import traceback
            traceback.print_exc()
            code = 98
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -999
        time.sleep(0.01)
