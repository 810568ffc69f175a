"""CPython's own test_poll.py, run against fastsel with assertions unchanged."""
import fastsel

import cpython_suite

_mod = cpython_suite.load("test_poll", select=fastsel)
globals().update(cpython_suite.testcases(_mod))
