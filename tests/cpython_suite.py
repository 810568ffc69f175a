"""Load CPython's own test modules with the module under test swapped.

``load("test_select", select=fastsel)`` imports a fresh copy of the running
interpreter's ``test.test_select`` while ``sys.modules["select"]`` is fastsel,
so every ``select.x`` the test file uses is fastsel's; the test file's
assertions are not touched.  ``testcases(mod)`` returns its TestCase classes so
a pytest module can expose them for collection.  Tests that name their target
by string (``mock.patch("selectors.EpollSelector._selector_cls")``) resolve it
through ``sys.modules`` while they run: ``swapped(...)`` keeps the swap in
force around them, as ``python -m fastsel -m test`` would.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import unittest
from typing import Any, Iterator


@contextlib.contextmanager
def swapped(**swap: Any) -> Iterator[None]:
    """``sys.modules[name] = module`` for each item, restored on exit."""
    missing = object()
    saved = {key: sys.modules.get(key, missing) for key in swap}
    sys.modules.update(swap)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is missing:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def load(name: str, **swap: Any) -> types.ModuleType:
    spec = importlib.util.find_spec(f"test.{name}")
    if spec is None or spec.loader is None:
        raise ImportError(f"CPython's test.{name} is not installed")
    module = importlib.util.module_from_spec(spec)
    module.__name__ = f"cpython_{name}"
    with swapped(**swap):
        spec.loader.exec_module(module)
    return module


def testcases(module: types.ModuleType) -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
        and obj.__module__ == module.__name__
    }
