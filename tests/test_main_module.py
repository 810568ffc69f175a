"""python -m fastsel PROG / -m MODULE behaves like plain python, with fastsel installed.

Each case runs the same program under ``python`` and ``python -m fastsel``
and compares what a user sees: stdout, stderr, exit status.
"""
from __future__ import annotations

import os
import signal
import sys
import textwrap

import pytest

import fastsel

from _helpers import run_python

PROG = textwrap.dedent("""
    import os, sys
    import select, selectors
    import fastsel
    print("argv", sys.argv)
    print("name", __name__)
    print("path0", sys.path[0])
    print("main is me", sys.modules["__main__"].__dict__.get("MARK") == 123)
    MARK = 123
    print("main is me", sys.modules["__main__"].__dict__.get("MARK") == 123)
    print("installed", {installed})
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "raise":
        def inner():
            raise ValueError("boom " + sys.argv[2])
        try:
            {{}}["missing"]
        except KeyError:
            inner()
    if mode == "interrupt":
        raise KeyboardInterrupt
""")

# which selectors implementation the program got: printed only under fastsel
INSTALLED = ("all(getattr(select, n) is getattr(fastsel, n) for n in ('select', 'poll', 'epoll') "
             "if hasattr(fastsel, n)) and all(getattr(selectors, n) is getattr(fastsel, n) "
             "for n in ('DefaultSelector', 'PollSelector') if hasattr(fastsel, n))")


def write_prog(tmp_path, installed: str) -> str:
    sub = tmp_path / "prog_dir"
    sub.mkdir(exist_ok=True)
    path = sub / "prog.py"
    path.write_text(PROG.format(installed=installed))
    return str(path)


def both(tmp_path, args: list, timeout: float = 60):
    """(plain, fastsel) CompletedProcess for `python ARGS` and `python -m fastsel ARGS`."""
    plain = run_python(args, cwd=str(tmp_path), timeout=timeout)
    fast = run_python(["-m", "fastsel", *args], cwd=str(tmp_path), timeout=timeout)
    return plain, fast


@pytest.mark.parametrize("extra", [[], ["a", "--flag", "b c"]])
def test_script_argv_name_path_output(tmp_path, extra) -> None:
    prog = write_prog(tmp_path, "'same'")
    plain, fast = both(tmp_path, [prog, *extra])
    assert plain.returncode == fast.returncode == 0, fast.stderr
    assert fast.stdout == plain.stdout
    assert fast.stderr == plain.stderr == ""
    assert f"argv {[prog, *extra]!r}" in fast.stdout


def test_script_runs_with_fastsel_installed(tmp_path) -> None:
    prog = write_prog(tmp_path, INSTALLED)
    fast = run_python(["-m", "fastsel", prog], cwd=str(tmp_path))
    assert fast.returncode == 0, fast.stderr
    assert "installed True" in fast.stdout


def test_relative_script_path(tmp_path) -> None:
    write_prog(tmp_path, "'same'")
    plain, fast = both(tmp_path, [os.path.join("prog_dir", "prog.py"), "x"])
    assert plain.returncode == fast.returncode == 0, fast.stderr
    assert fast.stdout == plain.stdout


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_status(tmp_path, code: int) -> None:
    prog = write_prog(tmp_path, "'same'")
    plain, fast = both(tmp_path, [prog, "exit", str(code)])
    assert plain.returncode == fast.returncode == code
    assert fast.stdout == plain.stdout and fast.stderr == plain.stderr


def test_traceback_is_the_programs_own(tmp_path) -> None:
    prog = write_prog(tmp_path, "'same'")
    plain, fast = both(tmp_path, [prog, "raise", "x"])
    assert plain.returncode == fast.returncode == 1
    assert fast.stdout == plain.stdout
    assert fast.stderr == plain.stderr
    assert "ValueError: boom x" in fast.stderr and "KeyError" in fast.stderr
    assert "runpy" not in fast.stderr and "fastsel" not in fast.stderr


def test_keyboard_interrupt_exit(tmp_path) -> None:
    prog = write_prog(tmp_path, "'same'")
    plain, fast = both(tmp_path, [prog, "interrupt"])
    assert plain.returncode == fast.returncode == -signal.SIGINT
    assert fast.stderr == plain.stderr


def test_module_mode(tmp_path) -> None:
    (tmp_path / "pkg_under_test").mkdir()
    (tmp_path / "pkg_under_test" / "__init__.py").write_text("")
    (tmp_path / "pkg_under_test" / "tool.py").write_text(
        PROG.format(installed="'same'"))
    plain, fast = both(tmp_path, ["-m", "pkg_under_test.tool", "exit", "4"])
    # `python -m fastsel -m X` is `python -m X` with fastsel installed
    plain_m = run_python(["-m", "pkg_under_test.tool", "exit", "4"], cwd=str(tmp_path))
    fast_m = run_python(["-m", "fastsel", "-m", "pkg_under_test.tool", "exit", "4"],
                        cwd=str(tmp_path))
    assert plain_m.returncode == fast_m.returncode == 4, fast_m.stderr
    assert fast_m.stdout == plain_m.stdout
    assert "name __main__" in fast_m.stdout
    assert str(tmp_path / "pkg_under_test" / "tool.py") in fast_m.stdout


def test_module_mode_installed(tmp_path) -> None:
    (tmp_path / "modprog.py").write_text(PROG.format(installed=INSTALLED))
    fast = run_python(["-m", "fastsel", "-m", "modprog"], cwd=str(tmp_path))
    assert fast.returncode == 0, fast.stderr
    assert "installed True" in fast.stdout


def test_missing_script(tmp_path) -> None:
    plain, fast = both(tmp_path, ["no_such_prog.py"])
    assert plain.returncode == fast.returncode == 2
    assert fast.stderr.replace("-m fastsel ", "") == plain.stderr


def test_missing_module(tmp_path) -> None:
    plain = run_python(["-m", "no_such_module_xyz"], cwd=str(tmp_path))
    fast = run_python(["-m", "fastsel", "-m", "no_such_module_xyz"], cwd=str(tmp_path))
    assert plain.returncode == fast.returncode == 1
    assert fast.stderr == plain.stderr


def test_usage(tmp_path) -> None:
    proc = run_python(["-m", "fastsel"], cwd=str(tmp_path))
    assert proc.returncode == 2 and "usage: python -m fastsel" in proc.stderr
    proc = run_python(["-m", "fastsel", "--help"], cwd=str(tmp_path))
    assert proc.returncode == 0 and "usage: python -m fastsel" in proc.stdout


def test_stdlib_module_cli(tmp_path) -> None:
    """A real stdlib tool run as `-m`: json.tool reading stdin."""
    proc = run_python(["-m", "fastsel", "-m", "json.tool"], cwd=str(tmp_path),
                      input='{"b": [1, 2]}')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["{", '"b":', "[", "1,", "2", "]", "}"]
    assert sys.executable


def test_no_children_runs_the_program_the_same(tmp_path) -> None:
    """--no-children changes only what the children get (tests/test_children.py)."""
    prog = write_prog(tmp_path, INSTALLED)
    plain = run_python([prog, "exit", "3"], cwd=str(tmp_path))
    fast = run_python(["-m", "fastsel", "--no-children", prog, "exit", "3"],
                      cwd=str(tmp_path))
    assert fast.returncode == 3 and plain.returncode == 3, fast.stderr
    assert fast.stderr == plain.stderr == ""
    # (where fastsel serves the stdlib's own objects, plain python reads as installed too)
    unmark = lambda out: out.replace("installed True", "installed False")  # noqa: E731
    assert unmark(fast.stdout) == unmark(plain.stdout)
    assert "installed True" in fast.stdout
    fast_m = run_python(["-m", "fastsel", "--no-children", "-m", "json.tool"],
                        cwd=str(tmp_path), input="[1]")
    assert fast_m.returncode == 0 and fast_m.stdout.split() == ["[", "1", "]"], fast_m.stderr


def test_no_children_needs_a_program(tmp_path) -> None:
    proc = run_python(["-m", "fastsel", "--no-children"], cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "Argument expected after --no-children" in proc.stderr
    assert "usage: python -m fastsel" in proc.stderr


def test_usage_names_the_children_switch(tmp_path) -> None:
    proc = run_python(["-m", "fastsel", "--help"], cwd=str(tmp_path))
    assert proc.returncode == 0
    assert "--no-children" in proc.stdout and "FASTSEL_AUTOINSTALL" in proc.stdout


@pytest.mark.skipif(getattr(fastsel, "implementation", "c") == "c",
                    reason="the C implementation's children: tests/test_children.py")
def test_children_where_fastsel_serves_the_stdlib(tmp_path) -> None:
    """Where fastsel serves the platform's own modules (PyPy, ...), `python -m
    fastsel` runs the program and its children on them, quietly, and leaves
    the children's environment alone."""
    prog = tmp_path / "prog.py"
    prog.write_text(textwrap.dedent("""
        import os, selectors, subprocess, sys
        print(type(selectors.DefaultSelector()).__module__)
        code = ("import os, selectors; print(type(selectors.DefaultSelector()).__module__,"
                " os.environ.get('FASTSEL_AUTOINSTALL', '-'))")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=50)
    """))
    proc = run_python(["-m", "fastsel", str(prog)], cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.split() == ["selectors", "selectors", "-"]
