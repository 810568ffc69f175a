"""Which implementation fastsel serves: the one rule, read by setup.py and at import.

The C extension exists to be faster than the stdlib while behaving the same.
It is built and used only where it is that: CPython (on PyPy it would run
through the cpyext emulation layer and be slower than PyPy's own ``select``)
on the systems its C code is written and tested for, Linux, macOS and the
BSDs, and only on a CPython built with the GIL: a free-threaded build
(``Py_GIL_DISABLED``, 3.13t and later) would switch its GIL back on for the
whole process on importing an extension that does not declare that it runs
without one, and fastsel's C code has not been verified without the GIL.
Everywhere else (PyPy, GraalPy, free-threaded CPython, Windows, other POSIX
systems) setup.py builds no extension and ``import fastsel`` serves the
platform's own ``select``/``selectors`` objects under the same names.

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


def gil_disabled() -> bool:
    """True on a free-threaded CPython build: its own configuration says
    ``Py_GIL_DISABLED`` (no such build before 3.13, nor that variable)."""
    if sys.version_info < (3, 13):
        return False
    # A free-threaded build has "t" in its ABI flags wherever it has ABI
    # flags (POSIX, and Windows from 3.14): without it the answer is no, and
    # sysconfig, which `import fastsel` would otherwise pay ~2 ms to load in
    # every process (the start-up hook's children too), is not needed.
    if "t" not in getattr(sys, "abiflags", "t"):
        return False
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def c_extension_supported(implementation: str | None = None,
                          platform: str | None = None,
                          free_threaded: bool | None = None) -> bool:
    """True where the C extension is built and used (defaults: this Python)."""
    impl = sys.implementation.name if implementation is None else implementation
    plat = sys.platform if platform is None else platform
    if impl != "cpython" or not plat.startswith(C_PLATFORMS):
        return False
    return not (gil_disabled() if free_threaded is None else free_threaded)


def why_not(implementation: str | None = None, platform: str | None = None,
            free_threaded: bool | None = None) -> str:
    """One line saying why this Python gets the stdlib implementation."""
    impl = sys.implementation.name if implementation is None else implementation
    plat = sys.platform if platform is None else platform
    if impl != "cpython":
        return (f"{impl} is not CPython: the C extension would run through its "
                "C-API emulation and be slower than its own select module")
    if not plat.startswith(C_PLATFORMS):
        return (f"{plat} is not one of the systems the C extension supports "
                "(Linux, macOS, BSD)")
    if gil_disabled() if free_threaded is None else free_threaded:
        return ("this CPython is free-threaded (Py_GIL_DISABLED): the C extension is not "
                "yet verified without the GIL, and importing it would switch the GIL back "
                "on for the whole process")
    return ""


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
