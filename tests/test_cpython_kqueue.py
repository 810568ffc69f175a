"""CPython's own test_kqueue.py, assertions unchanged, run against fastsel.

The running interpreter's ``test.test_kqueue`` is imported with
``sys.modules["select"]`` swapped for fastsel.  Its module-level guard
(``if not hasattr(select, "kqueue"): raise unittest.SkipTest``) therefore looks
at fastsel, not at the real select module: on Linux the suite runs when fastsel
was built against libkqueue (``FASTSEL_KQUEUE=<prefix>``, see setup.py).
"""
import sys

import pytest

import fastsel

import cpython_suite

if not hasattr(fastsel, "kqueue"):
    pytest.skip("fastsel was built without kqueue (on Linux, build with "
                "FASTSEL_KQUEUE=<libkqueue prefix> to test it)",
                allow_module_level=True)

_mod = cpython_suite.load("test_kqueue", select=fastsel)
assert _mod.select is fastsel  # the swap took: the suite tests fastsel

if sys.platform.startswith("linux"):
    # On Linux kqueue is libkqueue's emulation, which refuses to re-add a
    # registered socket EVFILT_READ filter without EV_CLEAR: kevent() returns
    # -1 with errno 0 (BSD updates the filter).  fastsel reports that as the
    # stdlib would, [Errno 0]; strict, to notice when libkqueue fixes it.
    _t = _mod.TestKQueue
    _t.test_issue30058 = pytest.mark.xfail(
        strict=True, raises=OSError,
        reason="libkqueue: EV_ADD on a registered socket filter fails")(
            _t.test_issue30058)
    del _t          # a TestCase class in globals() would be collected twice

globals().update(cpython_suite.testcases(_mod))
