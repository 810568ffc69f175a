"""A free-threaded CPython (Py_GIL_DISABLED) gets the stdlib, not the C extension (issue 20).

The extension declares no ``Py_mod_gil`` slot, so importing it on a
free-threaded build would switch the GIL back on for the whole process, and
its C code has not been verified without the GIL.  Until it is, the rule in
fastsel/_impl.py treats such a build like PyPy: setup.py builds no extension
and ``import fastsel`` serves the interpreter's own modules.  No
free-threaded interpreter can be installed where these tests run, so they
drive the rule through its inputs: the ``free_threaded`` parameter, the
build's ``Py_GIL_DISABLED`` configuration variable (sysconfig), and
``_impl.gil_disabled`` itself in a child process that has the C extension.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile

import pytest

import fastsel
from fastsel import _impl
from _helpers import REPO, run_python

FREE_THREADED_WHY = "free-threaded (Py_GIL_DISABLED)"


@pytest.mark.parametrize("impl, platform, free_threaded, want", [
    ("cpython", "linux", False, True), ("cpython", "linux", True, False),
    ("cpython", "darwin", True, False), ("cpython", "freebsd14", True, False),
    ("cpython", "darwin", False, True),
    ("cpython", "win32", True, False), ("pypy", "linux", True, False),
    ("pypy", "linux", False, False),
])
def test_rule(impl: str, platform: str, free_threaded: bool, want: bool) -> None:
    assert _impl.c_extension_supported(impl, platform, free_threaded) is want
    why = _impl.why_not(impl, platform, free_threaded)
    assert bool(why) is not want
    # the first reason that applies: not CPython, then the system, then the GIL
    if free_threaded and impl == "cpython" and platform.startswith(_impl.C_PLATFORMS):
        assert FREE_THREADED_WHY in why and "GIL back on" in why, why
    elif not want:
        assert FREE_THREADED_WHY not in why, why


@pytest.mark.parametrize("value, want", [(1, True), ("1", True), (0, False), (None, False)],
                         ids=["1", "str-1", "0", "unset"])
def test_gil_disabled_reads_the_build_configuration(monkeypatch, value, want) -> None:
    """``Py_GIL_DISABLED`` as sysconfig reports it decides (on a build whose
    ABI flags carry the "t" every free-threaded one has); before 3.13 no
    build has it, and the rule does not look."""
    monkeypatch.setattr(sys, "abiflags", "t", raising=False)
    real = sysconfig.get_config_var
    asked = []

    def config_var(name: str):
        asked.append(name)
        return value if name == "Py_GIL_DISABLED" else real(name)
    monkeypatch.setattr(sysconfig, "get_config_var", config_var)
    if sys.version_info >= (3, 13):
        assert _impl.gil_disabled() is want
        assert asked == ["Py_GIL_DISABLED"]
        assert _impl.c_extension_supported("cpython", "linux") is not want
    else:
        assert _impl.gil_disabled() is False and asked == []


def test_abi_flags_without_t_need_no_sysconfig(monkeypatch) -> None:
    """No "t" in the ABI flags: not free-threaded, answered without loading
    sysconfig (import fastsel stays as cheap as before)."""
    monkeypatch.setattr(sys, "abiflags", "", raising=False)
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: pytest.fail(name))
    assert _impl.gil_disabled() is False
    code = "import sys, fastsel; print('sysconfig' in sys.modules)"
    proc = run_python(["-c", code])
    assert proc.returncode == 0 and proc.stdout == "False\n", proc.stdout + proc.stderr


def test_this_interpreter() -> None:
    assert _impl.gil_disabled() is bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert _impl.gil_disabled() is ("t" in getattr(sys, "abiflags", ""))
    if _impl.gil_disabled():
        assert fastsel.implementation == "stdlib"
        assert "fastsel._fastsel" not in sys.modules


def test_chosen_follows_the_rule(monkeypatch) -> None:
    """chosen(), what ``import fastsel`` asks: the stdlib on a free-threaded
    build, and FASTSEL_IMPLEMENTATION=c there fails with the reason."""
    monkeypatch.setattr(_impl, "gil_disabled", lambda: True)
    monkeypatch.delenv(_impl.ENV, raising=False)
    assert _impl.chosen() == "stdlib"
    monkeypatch.setenv(_impl.ENV, "c")
    # the first reason that applies is given: on PyPy, that it is not CPython
    reason = "free-threaded" if sys.implementation.name == "cpython" else "is not CPython"
    with pytest.raises(ImportError, match=r"FASTSEL_IMPLEMENTATION=c, but fastsel has no C "
                                          r"extension here: .*" + reason):
        _impl.chosen()


# A child whose fastsel._impl says "free-threaded" before fastsel is imported:
# the package is the installed one, with its C extension on disk.
FREE_THREADED_CHILD = textwrap.dedent("""
    import importlib.util, os, sys
    spec = importlib.util.find_spec("fastsel")
    path = os.path.join(os.path.dirname(spec.origin), "_impl.py")
    rule_spec = importlib.util.spec_from_file_location("fastsel._impl", path)
    rule = importlib.util.module_from_spec(rule_spec)
    rule_spec.loader.exec_module(rule)
    rule.gil_disabled = lambda: True
    sys.modules["fastsel._impl"] = rule
""")


def test_import_serves_the_stdlib_on_a_free_threaded_build() -> None:
    """Where the rule says free-threaded, ``import fastsel`` never loads the C
    extension (even one that is installed) and install() changes nothing: no
    object replaced, no finder, no children covered."""
    code = FREE_THREADED_CHILD + textwrap.dedent("""
        import select, selectors
        import fastsel
        from fastsel import _install
        assert fastsel.implementation == "stdlib", fastsel.implementation
        assert "fastsel._fastsel" not in sys.modules
        assert fastsel.select is select.select and fastsel.DefaultSelector is selectors.DefaultSelector
        meta_path = list(sys.meta_path)
        before = dict(vars(select)), dict(vars(selectors))
        fastsel.install(children=True)
        assert sys.meta_path == meta_path
        assert (dict(vars(select)), dict(vars(selectors))) == before
        assert "FASTSEL_AUTOINSTALL" not in os.environ
        fastsel.uninstall()
        with selectors.DefaultSelector() as sel:
            assert sel.select(0) == []
        print("ok")
    """)
    proc = run_python(["-c", code])
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    assert "RuntimeWarning" not in proc.stderr


@pytest.mark.skipif(sys.implementation.name != "cpython",
                    reason="setup.py's free-threaded rule is about CPython builds")
@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="no free-threaded CPython before 3.13: the rule reads Py_GIL_DISABLED "
                           "from 3.13 on only")
@pytest.mark.skipif(not sys.platform.startswith(_impl.C_PLATFORMS),
                    reason="this system gets no C extension whatever the GIL")
def test_setup_builds_a_pure_wheel_for_a_free_threaded_build(tmp_path) -> None:
    """setup.py run with Py_GIL_DISABLED=1 in its configuration (the real
    build, sysconfig's answer and the ABI flags replaced) compiles nothing, says why, and tags
    the wheel for free-threaded CPython only: cpXY-cpXYt-<platform>."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy(os.path.join(REPO, name), src / name)
    for name in ("src", "fastsel"):
        shutil.copytree(os.path.join(REPO, name), src / name,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.o"))
    code = textwrap.dedent("""
        import runpy, sys, sysconfig
        real = sysconfig.get_config_var
        sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
        sysconfig.get_config_vars()     # loaded under the real ABI flags' name first
        sys.abiflags += "t"             # as a free-threaded build's are
        sys.argv = ["setup.py", "-q", "bdist_wheel", "-d", "dist"]
        runpy.run_path("setup.py", run_name="__main__")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(src), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "building no C extension" in proc.stderr and FREE_THREADED_WHY in proc.stderr
    wheels = glob.glob(str(src / "dist" / "*.whl"))
    assert len(wheels) == 1, wheels
    xy = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert os.path.basename(wheels[0]).endswith(f"-{xy}-{xy}t-{plat}.whl"), wheels[0]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = whl.namelist()
    assert "fastsel/__init__.py" in names and "fastsel-autoinstall.pth" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    assert not glob.glob(str(src / "build" / "**" / "*.o"), recursive=True)
