"""CPython's own test_select.py, run against fastsel with assertions unchanged."""
import fastsel

import cpython_suite

_mod = cpython_suite.load("test_select", select=fastsel)
globals().update(cpython_suite.testcases(_mod))
tearDownModule = getattr(_mod, "tearDownModule", None)
