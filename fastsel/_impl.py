"""Which implementation fastsel serves: the one rule, read by setup.py and at import.

The C extension exists to be faster than the stdlib while behaving the same.
It is built and used only where it is that: CPython (on PyPy it would run
through the cpyext emulation layer and be slower than PyPy's own ``select``)
on the systems its C code is written and tested for, Linux, macOS and the
BSDs.  Everywhere else (PyPy, GraalPy, Windows, other POSIX systems) setup.py
builds no extension and ``import fastsel`` serves the platform's own
``select``/``selectors`` objects under the same names.

setup.py loads this file by path (the package cannot be imported before its
extension is built), so it must stay free of imports from the package.
"""
from __future__ import annotations

import os
import sys

# sys.platform prefixes of the systems the C extension supports
C_PLATFORMS = ("linux", "darwin", "freebsd", "openbsd", "netbsd", "dragonfly")

# Read at import time only: FASTSEL_IMPLEMENTATION=stdlib makes fastsel serve
# the stdlib even where the C extension is installed (diagnosis, tests).
ENV = "FASTSEL_IMPLEMENTATION"


def c_extension_supported(implementation: str | None = None,
                          platform: str | None = None) -> bool:
    """True where the C extension is built and used (defaults: this Python)."""
    impl = sys.implementation.name if implementation is None else implementation
    plat = sys.platform if platform is None else platform
    return impl == "cpython" and plat.startswith(C_PLATFORMS)


def why_not(implementation: str | None = None, platform: str | None = None) -> str:
    """One line saying why this Python gets the stdlib implementation."""
    impl = sys.implementation.name if implementation is None else implementation
    plat = sys.platform if platform is None else platform
    if impl != "cpython":
        return (f"{impl} is not CPython: the C extension would run through its "
                "C-API emulation and be slower than its own select module")
    return (f"{plat} is not one of the systems the C extension supports "
            "(Linux, macOS, BSD)")


def chosen() -> str:
    """``"c"`` or ``"stdlib"``: what ``import fastsel`` serves in this process."""
    forced = os.environ.get(ENV, "")
    if forced not in ("", "c", "stdlib"):
        raise ImportError(f"{ENV} must be 'c', 'stdlib' or unset, not {forced!r}")
    if forced == "stdlib":
        return "stdlib"
    if c_extension_supported():
        return "c"
    if forced == "c":
        raise ImportError(f"{ENV}=c, but fastsel has no C extension here: {why_not()}")
    return "stdlib"
