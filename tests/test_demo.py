"""`make run`'s demo: the select() echo server on fastsel, real clients."""
from __future__ import annotations

import os
import re

import pytest

import fastsel
from _helpers import REPO, run_python

DEMO = os.path.join(REPO, "demo", "echo_demo.py")


@pytest.mark.parametrize("impl", ["fastsel", "stdlib"])
def test_demo_serves_every_client(impl: str, tmp_path) -> None:
    proc = run_python([DEMO, "--clients", "5", "--impl", impl], cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "result: OK" in out
    assert re.search(r"connections accepted: 5, closed: 5", out), out
    read = int(re.search(r"bytes read: (\d+)", out).group(1))
    echoed = int(re.search(r"bytes echoed: (\d+)", out).group(1))
    sent = sum(int(n) for n in re.findall(r"client \d+: sent (\d+)", out))
    assert read == echoed == sent > 5 * 4096
    assert out.count("intact") == 5
    served_by = re.search(r"served by: (.*)", out).group(1)
    assert served_by.startswith("fastsel " if impl == "fastsel" else "the stdlib")
    if impl == "fastsel" and fastsel.implementation == "c":
        assert "select() is fastsel._fastsel.select" in served_by
    elif impl == "fastsel":
        assert "select() is select.select" in served_by and "no C extension" in served_by

