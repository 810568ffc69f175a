"""Load CPython's own test modules with the module under test swapped.

``load("test_select", select=fastsel)`` imports a fresh copy of the running
interpreter's ``test.test_select`` while ``sys.modules["select"]`` is fastsel,
so every ``select.x`` the test file uses is fastsel's; the test file's
assertions are not touched.  ``testcases(mod)`` returns its TestCase classes so
a pytest module can expose them for collection.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from typing import Any


def load(name: str, **swap: Any) -> types.ModuleType:
    spec = importlib.util.find_spec(f"test.{name}")
    if spec is None or spec.loader is None:
        raise ImportError(f"CPython's test.{name} is not installed")
    module = importlib.util.module_from_spec(spec)
    module.__name__ = f"cpython_{name}"
    saved = {key: sys.modules.get(key) for key in swap}
    try:
        sys.modules.update(swap)
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module


def testcases(module: types.ModuleType) -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
        and obj.__module__ == module.__name__
    }
