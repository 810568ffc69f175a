"""fastsel imports and works wherever a stdlib module would.

From any working directory, in isolated mode (installed package), as
``select``/``selectors`` aliases, from a thread, after fork, re-imported
(multi-phase init gives a fresh module state), and inside subinterpreters --
isolated ones with their own GIL on 3.12+, which refuse extensions that did
not declare support.  Everything that imports runs in a child process so a
crash cannot take pytest down.
"""
from __future__ import annotations

import os
import select as std_select
import selectors as std_selectors
import site
import sys
import textwrap

import pytest

import fastsel
from _helpers import child_env, run_python

from fastsel import _install

SMOKE = textwrap.dedent("""
    import os
    import fastsel
    import fastsel as select
    import fastsel as selectors
    assert select.error is OSError
    r, w = os.pipe()
    os.write(w, b"x")
    assert select.select([r], [w], [], 0) == ([r], [w], []), "select"
    os.close(r)
    os.close(w)
    import socket
    a, b = socket.socketpair()
    with selectors.DefaultSelector() as sel:
        key = sel.register(a, selectors.EVENT_READ, "d")
        b.send(b"x")
        assert [(k.data, ev) for k, ev in sel.select(1)] == [("d", 1)], "selector"
    a.close()
    b.close()
""")


def test_import_from_any_directory(tmp_path) -> None:
    for cwd in ("/", str(tmp_path)):
        proc = run_python(["-c", SMOKE + "print('ok')"], cwd=cwd)
        assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_import_isolated_mode(tmp_path) -> None:
    """`python -I` ignores PYTHONPATH and the cwd: only an installed fastsel
    is found (make test installs it)."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastsel.__file__)))
    if parent not in site.getsitepackages():
        # a test-run layout, not a fastsel limit: make test installs fastsel
        assert os.environ.get("FASTSEL_REQUIRE_INSTALLED") != "1", parent
        pytest.skip("fastsel is not installed in site-packages (development layout)")
    proc = run_python(["-I", "-c", SMOKE + "print(fastsel.__file__)"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == os.path.abspath(fastsel.__file__)


def test_surface_names() -> None:
    """fastsel has every public name of the stdlib's select and selectors,
    each of the stdlib's kind and value."""
    std_names = [n for n in vars(std_select) if not n.startswith("_")]
    std_names += [n for n in _install.SELECTORS_NAMES if hasattr(std_selectors, n)]
    missing = []
    for name in std_names:
        std = getattr(std_select, name, None)
        if std is None:
            std = getattr(std_selectors, name)
        if not hasattr(fastsel, name):
            missing.append(name)
            continue
        mine = getattr(fastsel, name)
        if isinstance(std, int):
            assert mine == std and type(mine) is type(std), name
        else:
            assert callable(mine) == callable(std), name
    assert fastsel.error is OSError
    assert not missing, f"fastsel lacks {', '.join(sorted(missing))}"


def test_import_from_thread_and_after_fork() -> None:
    code = textwrap.dedent("""
        import os, sys, threading
        result = []
        def worker():
            import fastsel
            result.append(fastsel.error is OSError)
        t = threading.Thread(target=worker)
        t.start(); t.join(30)
        assert result == [True]
        pid = os.fork()
        if pid == 0:
            try:
                exec(SMOKE)
            except BaseException:
                import traceback; traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        print("ok")
    """)
    proc = run_python(["-c", f"SMOKE = {SMOKE!r}\n" + code])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


@pytest.mark.c_impl
def test_reimport_gives_a_fresh_module() -> None:
    code = textwrap.dedent("""
        import sys, importlib
        import fastsel._fastsel
        first = fastsel._fastsel
        for name in [n for n in sys.modules if n == "fastsel" or n.startswith("fastsel.")]:
            del sys.modules[name]
        import fastsel._fastsel as second
        assert second is not first and "_fastsel" not in sys.modules
        exec(SMOKE)
        import gc; del first; gc.collect()
        exec(SMOKE)
        print("ok")
    """)
    proc = run_python(["-c", f"SMOKE = {SMOKE!r}\n" + code])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def _interpreters_module() -> str:
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            __import__(name)
            return name
        except ImportError:
            continue
    return ""


@pytest.mark.skipif(not _interpreters_module(),
                    reason="this interpreter has no _interpreters/_xxsubinterpreters module "
                           "(PyPy)")
def test_subinterpreters() -> None:
    """Import and use fastsel in two subinterpreters (isolated, own GIL, on
    3.12+), twice each, then destroy them."""
    mod = _interpreters_module()
    code = textwrap.dedent(f"""
        import {mod} as I
        for _ in range(2):
            ids = [I.create() for _ in range(2)]
            for iid in ids:
                err = I.run_string(iid, SMOKE)
                assert err is None, err    # 3.13 returns the error, older ones raise
            for iid in ids:
                I.destroy(iid)
        exec(SMOKE)       # the main interpreter's module is unaffected
        print("ok")
    """)
    proc = run_python(["-c", f"SMOKE = {SMOKE!r}\n" + code])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_alias_imports_in_one_program() -> None:
    """`import fastsel as select` and `as selectors` in the same program, with
    the stdlib modules imported too: four distinct names, no interference."""
    code = textwrap.dedent("""
        import select as std_select, selectors as std_selectors
        import fastsel
        import fastsel as select
        import fastsel as selectors
        assert select is selectors
        # with the C extension fastsel's objects are its own; otherwise the stdlib's
        c = fastsel.implementation == "c"
        assert (std_select.select is not select.select) == c
        assert (std_selectors.DefaultSelector is not selectors.DefaultSelector) == c
        print("ok")
    """)
    proc = run_python(["-c", code])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    assert sys.modules["select"] is std_select


# --- which implementation: fastsel.implementation and the stdlib fallback ---

STDLIB_SURFACE = textwrap.dedent("""
    import asyncio, os, select, selectors, subprocess, sys
    import fastsel
    from fastsel import _install
    assert fastsel.implementation == "stdlib", fastsel.implementation
    assert "fastsel._fastsel" not in sys.modules and "_fastsel" not in sys.modules
    # every public name of both modules is the platform's own object
    for name in [n for n in vars(select) if not n.startswith("_")]:
        assert getattr(fastsel, name) is getattr(select, name), name
    for name in _install.SELECTORS_NAMES:
        if hasattr(selectors, name):
            assert getattr(fastsel, name) is getattr(selectors, name), name
        else:
            assert not hasattr(fastsel, name), name
    assert fastsel.error is OSError
    # install()/uninstall() replace nothing and restore nothing
    before = {n: v for n, v in vars(select).items()}
    before.update({"selectors." + n: v for n, v in vars(selectors).items()})
    fastsel.install()
    assert subprocess._PopenSelector is getattr(selectors, subprocess._PopenSelector.__name__)
    fastsel.uninstall()
    after = {n: v for n, v in vars(select).items()}
    after.update({"selectors." + n: v for n, v in vars(selectors).items()})
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    loop = fastsel.new_event_loop()
    try:
        assert type(loop._selector) is selectors.DefaultSelector
        assert loop.run_until_complete(asyncio.sleep(0, 42)) == 42
    finally:
        loop.close()
""")


def test_implementation_attribute() -> None:
    from fastsel import _impl
    forced = os.environ.get(_impl.ENV) == "stdlib"
    want = "c" if _impl.c_extension_supported() and not forced else "stdlib"
    assert fastsel.implementation == want
    if want == "c":
        from fastsel import _fastsel
        assert fastsel.select is _fastsel.select
        assert _fastsel.__name__ == "fastsel._fastsel"
        assert fastsel.select is not std_select.select
    else:
        assert fastsel.select is std_select.select
        assert fastsel.DefaultSelector is std_selectors.DefaultSelector


def test_no_extension_installed_where_the_rule_says_stdlib() -> None:
    """setup.py builds no extension where fastsel serves the stdlib (PyPy,
    Windows, ...), and builds one where it serves C: ``fastsel._fastsel``,
    inside the package; no top-level ``_fastsel`` is importable."""
    import importlib.util

    from fastsel import _impl
    found = importlib.util.find_spec("fastsel._fastsel") is not None
    assert found == _impl.c_extension_supported()
    assert importlib.util.find_spec("_fastsel") is None


def test_installed_files_have_no_top_level_extension() -> None:
    """The installed distribution's file list (its RECORD): the extension is
    fastsel/_fastsel*.so where the rule builds one, and nothing named
    _fastsel sits at the root of site-packages."""
    import importlib.metadata

    from fastsel import _impl
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastsel.__file__)))
    if parent not in site.getsitepackages():
        pytest.skip("fastsel is not installed in site-packages (development layout)")
    files = [str(f) for f in importlib.metadata.files("fastsel") or ()]
    assert files, "the installed fastsel has no RECORD"
    assert not [f for f in files if f.startswith("_fastsel")], files
    ext = [f for f in files if f.startswith("fastsel/_fastsel") and not f.endswith(".pyi")]
    assert len(ext) == (1 if _impl.c_extension_supported() else 0), ext


@pytest.mark.parametrize("impl, platform, want", [
    ("cpython", "linux", True), ("cpython", "darwin", True), ("cpython", "freebsd14", True),
    ("cpython", "openbsd7", True), ("cpython", "netbsd10", True), ("cpython", "dragonfly6", True),
    ("cpython", "win32", False), ("cpython", "cygwin", False), ("cpython", "sunos5", False),
    ("cpython", "aix", False), ("cpython", "emscripten", False), ("cpython", "wasi", False),
    ("pypy", "linux", False), ("pypy", "darwin", False), ("graalpy", "linux", False),
])
def test_rule(impl: str, platform: str, want: bool) -> None:
    from fastsel import _impl
    assert _impl.c_extension_supported(impl, platform) is want
    if not want:
        assert _impl.why_not(impl, platform)


def test_stdlib_implementation_surface() -> None:
    """FASTSEL_IMPLEMENTATION=stdlib (and so every platform without the C
    extension): the stdlib's objects under fastsel's names, and fastsel's own
    functions harmless."""
    proc = run_python(["-c", SMOKE + STDLIB_SURFACE + "print('ok')"],
                      env=child_env(FASTSEL_IMPLEMENTATION="stdlib"))
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


def test_stdlib_implementation_python_m_fastsel(tmp_path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import select, selectors, sys
        import fastsel
        assert fastsel.implementation == "stdlib"
        with selectors.DefaultSelector() as sel:
            assert sel.select(0) == []
        print("ran", sys.argv[1:], __name__)
    """), encoding="utf-8")
    proc = run_python(["-m", "fastsel", str(script), "a", "b"], cwd=str(tmp_path),
                      env=child_env(FASTSEL_IMPLEMENTATION="stdlib"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ran ['a', 'b'] __main__\n"


@pytest.mark.parametrize("value, message", [
    ("bogus", "FASTSEL_IMPLEMENTATION must be 'c', 'stdlib' or unset, not 'bogus'"),
    ("c", "FASTSEL_IMPLEMENTATION=c, but fastsel has no C extension here"),
])
def test_bad_implementation_request_fails_the_import(value: str, message: str) -> None:
    from fastsel import _impl
    if value == "c" and _impl.c_extension_supported():
        proc = run_python(["-c", "import fastsel; print(fastsel.implementation)"],
                          env=child_env(FASTSEL_IMPLEMENTATION="c"))
        assert proc.returncode == 0 and proc.stdout == "c\n", proc.stderr
        return
    proc = run_python(["-c", "import fastsel"], env=child_env(FASTSEL_IMPLEMENTATION=value))
    assert proc.returncode == 1
    assert "ImportError: " + message in proc.stderr, proc.stderr
