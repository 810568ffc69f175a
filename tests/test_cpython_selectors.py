"""CPython's own test_selectors.py, run against fastsel's selector classes.

The test file is the running interpreter's, loaded with ``selectors`` swapped
for fastsel, so every class it tests (DefaultSelector, SelectSelector,
PollSelector, EpollSelector, KqueueSelector when built) is fastsel's and its
assertions are unchanged.  ``selectors`` stays fastsel in ``sys.modules``
while the tests run: ``test_modify_unregister`` patches
``'selectors.EpollSelector._selector_cls'`` (and PollSelector's) by name.
"""
import sys
import unittest

import pytest

import fastsel

import cpython_suite

_mod = cpython_suite.load("test_selectors", selectors=fastsel)
_cases = cpython_suite.testcases(_mod)


@pytest.fixture(autouse=True, scope="module")
def _selectors_is_fastsel():
    with cpython_suite.swapped(selectors=fastsel):
        yield


if sys.platform.startswith("linux") and "KqueueSelectorTestCase" in _cases:
    # A Linux build with the libkqueue emulation (test builds only): the
    # emulation reports EINVAL, not EBADF, for a closed fd.
    _cases["KqueueSelectorTestCase"].test_register_bad_fd = unittest.skip(
        "libkqueue (Linux emulation) reports EINVAL for a closed fd")(
        _cases["KqueueSelectorTestCase"].test_register_bad_fd)

globals().update(_cases)
tearDownModule = getattr(_mod, "tearDownModule", None)


@pytest.mark.c_impl
def test_classes_under_test_are_fastsel():
    # guard against the swap silently testing the stdlib
    assert _mod.selectors is fastsel
    assert sys.modules["selectors"] is fastsel    # the swap is in force
    assert _mod.DefaultSelectorTestCase.SELECTOR.__module__ == "fastsel"
    assert issubclass(_mod.EpollSelectorTestCase, unittest.TestCase)
