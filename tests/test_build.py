"""setup.py: build switches always take effect, also over an old build/ tree.

pip builds in the source tree, so a ``build/`` left by an earlier build is
reused; setup.py must not hand back objects or a module compiled with other
settings.  Builds a copy of the sources twice with different switches and
checks the compiler really ran again with the new flags, then that a third
build with unchanged settings is reported up to date.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from _helpers import REPO

pytestmark = pytest.mark.c_impl

BUILD_FILES = ("setup.py", "pyproject.toml", "README.md", "LICENSE", "src", "fastsel")
SWITCHES = ("FASTSEL_DEBUG", "FASTSEL_SANITIZE", "FASTSEL_KQUEUE", "FASTSEL_WERROR")


@pytest.fixture
def source_copy(tmp_path):
    if not all(os.path.exists(os.path.join(REPO, f)) for f in BUILD_FILES):
        pytest.skip(f"the build files are not beside the tests ({REPO}): "
                    "tests run outside a checkout or sdist")
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed (it is in the 'test' extra)")
    dest = tmp_path / "src-copy"
    dest.mkdir()
    for name in BUILD_FILES:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.so", "*.o"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def build(where, **switches: str) -> tuple:
    """``setup.py build_ext`` in ``where``: (compiler lines, built module bytes)."""
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update(switches)
    proc = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-lib", "out"],
                          cwd=str(where), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    compiles = [line for line in output.splitlines() if " -c src/_fastsel/" in line]
    built = glob.glob(os.path.join(str(where), "out", "fastsel", "_fastsel*"))
    assert len(built) == 1, built
    with open(built[0], "rb") as f:
        return compiles, f.read(), output


def test_switch_change_rebuilds_and_same_switches_do_not(source_copy) -> None:
    plain, plain_so, _ = build(source_copy)
    assert plain and all("-O2" in line and "-g3" not in line for line in plain), plain
    # FASTSEL_DEBUG=1 over the same build/ tree: every object is compiled
    # again with the debug flags, and a different module comes out
    debug, debug_so, _ = build(source_copy, FASTSEL_DEBUG="1")
    nsources = len(glob.glob(os.path.join(str(source_copy), "src", "_fastsel", "*.c")))
    assert len(debug) == nsources, debug
    assert all("-O0" in line and "-g3" in line and "-UNDEBUG" in line for line in debug), debug
    assert debug_so != plain_so
    # -g3 puts the macro table in the module
    assert b".debug_macro" in debug_so and b".debug_macro" not in plain_so
    # the same settings again: nothing to do
    again, again_so, output = build(source_copy, FASTSEL_DEBUG="1")
    assert again == [] and again_so == debug_so, output
    # and back: the plain module again, not the debug one left in out/
    back, back_so, _ = build(source_copy)
    assert len(back) == nsources and b".debug_macro" not in back_so
