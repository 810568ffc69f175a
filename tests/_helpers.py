"""Helpers for tests that run Python code in a child process.

The child must import the same ``fastsel`` (and so the same C extension,
``fastsel._fastsel`` inside it) as the test process (the installed package
under ``make test``, a build dir in development), whatever its working
directory: ``child_env()`` puts its directory first on ``PYTHONPATH``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any, Optional

import fastsel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env(**extra: str) -> dict:
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fastsel.__file__)))]
    old = os.environ.get("PYTHONPATH")
    if old:
        paths.append(old)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.pop("PYTHONHOME", None)
    env.update(extra)
    return env


def run_python(args: list, *, timeout: float = 60, cwd: Optional[str] = None,
               env: Optional[dict] = None, **kw: Any) -> subprocess.CompletedProcess:
    """``sys.executable ARGS`` with captured text output, bounded in time."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env or child_env(), **kw)


_MISSING = re.compile(r"(?:module 'fastsel' has no attribute|cannot import name) '(\w+)'")


def unbuilt_fastsel_name(output: str) -> Optional[str]:
    """The fastsel name an error output complains about, if fastsel lacks it.

    Tests of code written against the whole API skip (rather than fail) while
    part of the C module is still being written."""
    for name in _MISSING.findall(output):
        if not hasattr(fastsel, name):
            return name
    return None


def have(*names: str) -> bool:
    return all(hasattr(fastsel, n) for n in names)


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
