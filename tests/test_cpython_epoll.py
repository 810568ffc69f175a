"""CPython's own test_epoll.py, assertions unchanged, run against fastsel.

The running interpreter's ``test.test_epoll`` is imported with
``sys.modules["select"]`` swapped for fastsel, so every ``select.epoll`` and
``select.EPOLL*`` it touches is fastsel's.
"""
import sys

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("epoll is Linux-only", allow_module_level=True)

import fastsel  # noqa: E402

import cpython_suite  # noqa: E402

_mod = cpython_suite.load("test_epoll", select=fastsel)
assert _mod.select is fastsel  # the swap took: the suite tests fastsel

globals().update(cpython_suite.testcases(_mod))
