"""The stubs: mypy --strict on docs/examples/*.py, and the examples run.

fastsel ships ``__init__.pyi`` + ``py.typed``; the examples are written
against the public API only, so a stub that is missing a name, or types it
wrongly, fails the mypy run.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import site
import sys

import pytest

import fastsel
from _helpers import REPO, child_env, run_python

EXAMPLES = sorted(glob.glob(os.path.join(REPO, "docs", "examples", "*.py")))
PKG_DIR = os.path.dirname(os.path.abspath(fastsel.__file__))
# the 'test' extra installs mypy on CPython only: its runtime library is not
# built for other implementations (PyPy), where these tests skip
NEEDS_MYPY = pytest.mark.skipif(
    sys.implementation.name != "cpython" and importlib.util.find_spec("mypy") is None,
    reason="mypy does not run on this implementation (the 'test' extra installs it "
           "on CPython only)")


def require_mypy() -> None:
    assert importlib.util.find_spec("mypy") is not None, \
        "mypy is missing: install the 'test' extra (pip install '.[test]')"


def test_stub_and_marker_are_shipped() -> None:
    assert os.path.isfile(os.path.join(PKG_DIR, "__init__.pyi"))
    assert os.path.isfile(os.path.join(PKG_DIR, "py.typed"))
    assert len(EXAMPLES) >= 3


def test_stub_names_exist() -> None:
    """fastsel's public names are all in the stub, and the stub declares the
    core names (test_stubtest checks the stub against the runtime objects)."""
    import ast
    with open(os.path.join(PKG_DIR, "__init__.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    declared = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    public = {n for n in dir(fastsel) if not n.startswith("_")} - {"_install"}
    missing_from_stub = public - declared
    if fastsel.implementation != "c":
        # the platform's own modules may have names CPython's lack (PyPy's
        # select.FD_SETSIZE); those are served as they are, outside the stub
        import select as std_select
        missing_from_stub = {n for n in missing_from_stub
                             if getattr(std_select, n, None) is not getattr(fastsel, n)}
    assert not missing_from_stub, f"not in __init__.pyi: {sorted(missing_from_stub)}"
    for name in ("select", "poll", "error", "PIPE_BUF", "install", "uninstall",
                 "new_event_loop", "EVENT_READ", "SelectorKey", "DefaultSelector"):
        assert name in declared


@NEEDS_MYPY
def test_mypy_strict_on_examples(tmp_path) -> None:
    require_mypy()
    env = child_env()
    parent = os.path.dirname(PKG_DIR)
    site_dirs = set(site.getsitepackages() + [site.getusersitepackages()])
    if parent not in site_dirs:
        # development layout: the source tree's package, not an installed one
        env["MYPYPATH"] = parent
    proc = run_python(["-m", "mypy", "--strict", "--no-incremental",
                       "--cache-dir", str(tmp_path / "cache"),
                       "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
                       *EXAMPLES], cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=os.path.basename)
def test_example_runs(example: str, tmp_path) -> None:
    proc = run_python(["-X", "dev", example], cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and proc.stderr == ""


@pytest.mark.skipif(sys.implementation.name != "cpython",
                    reason="the stubs describe CPython's select/selectors surface, as typeshed's "
                           "do (PyPy's select lacks EPOLL_CLOEXEC, EPOLLRDHUP, ...)")
@pytest.mark.skipif(sys.version_info < (3, 11),
                    reason="stubtest on 3.9/3.10 takes typing.Any for a non-type in the "
                           "private modules and reads 3.9's clipped epoll.register text "
                           "signature: the stubs are checked on 3.11+")
def test_stubtest(tmp_path) -> None:
    """``python -m mypy.stubtest fastsel``: the stub against the runtime
    objects of the implementation in use (tests/stubtest-allowlist.txt says
    why each allowed difference is right)."""
    require_mypy()
    args = ["-m", "mypy.stubtest", "fastsel",
            "--mypy-config-file", os.path.join(REPO, "pyproject.toml"),
            "--allowlist", os.path.join(REPO, "tests", "stubtest-allowlist.txt")]
    if fastsel.implementation != "c":
        # the C-only entries match nothing on the stdlib's objects
        args.append("--ignore-unused-allowlist")
    env = child_env()
    parent = os.path.dirname(PKG_DIR)
    if parent not in set(site.getsitepackages() + [site.getusersitepackages()]):
        env["MYPYPATH"] = parent
    proc = run_python(args, cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout, proc.stdout
