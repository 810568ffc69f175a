"""Helpers for tests that run Python code in a child process.

The child must import the same ``fastsel``/``_fastsel`` as the test process
(the installed package under ``make test``, a build dir plus the source tree
in development), whatever its working directory: ``child_env()`` puts their
directories first on ``PYTHONPATH``.
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
    ext = sys.modules.get("_fastsel")       # absent where fastsel serves the stdlib
    if ext is not None:
        paths.append(os.path.dirname(os.path.abspath(ext.__file__)))
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
