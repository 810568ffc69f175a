"""Child Python processes of a fastsel program run on fastsel too.

``python -m fastsel`` and ``fastsel.install(children=True)`` set
FASTSEL_AUTOINSTALL=1; every interpreter started with that environment runs
the ``fastsel-autoinstall.pth`` start-up hook from site-packages and installs
fastsel before its program's code.  Each test runs a real program in a real
process tree and asks every process which implementation served it: the probe
creates a ``selectors.DefaultSelector()`` and looks at the module of its type
and of ``select.select`` (fastsel's: ``fastsel`` / ``fastsel._fastsel``, the stdlib's:
``selectors`` / ``select``), so a half-installed process is caught as well.

The hook lives in site-packages, so these tests need fastsel pip-installed for
the interpreter under test (as ``make test`` does); from a source tree they
skip, unless FASTSEL_REQUIRE_INSTALLED=1, where they fail.
"""
from __future__ import annotations

import glob
import importlib.util
import multiprocessing
import os
import re
import site
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from typing import Dict, List

import pytest

from _helpers import REPO, child_env, run_python
from fastsel._hook import ENV_VAR, PTH_NAME

# -- the probe program -------------------------------------------------------

PROG = textwrap.dedent('''
    import os, subprocess, sys

    def probe():
        import select, selectors
        with selectors.DefaultSelector() as sel:
            return type(sel).__module__ + "/" + select.select.__module__

    def report(role, result):
        print(role, result, flush=True)

    def run_child(*args):
        """Another interpreter running this file, its output relayed."""
        proc = subprocess.run([sys.executable, __file__, *args], capture_output=True,
                              text=True, timeout=50)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        if proc.returncode:
            raise SystemExit(f"child {args} exited {proc.returncode}")

    def mp_probe(conn):
        conn.send(probe())
        conn.close()

    def main(mode):
        import multiprocessing as mp
        report("main", probe())
        if mode in ("fork", "spawn", "forkserver"):
            ctx = mp.get_context(mode)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=mp_probe, args=(child,))
            proc.start()
            if not parent.poll(50):
                raise SystemExit("no answer from the Process")
            report(mode + "-process", parent.recv())
            proc.join(50)
            with ctx.Pool(1) as pool:
                report(mode + "-pool", pool.apply_async(probe).get(50))
        elif mode.startswith("executor"):
            from concurrent.futures import ProcessPoolExecutor
            ctx = mp.get_context(mode.partition("-")[2]) if "-" in mode else None
            with ProcessPoolExecutor(1, mp_context=ctx) as ex:
                report(mode, ex.submit(probe).result(50))
        elif mode == "subprocess":
            run_child("child", "1", "1")
        elif mode == "grandchild":
            run_child("child", "1", "2")
        elif mode.startswith("python:"):
            # another interpreter (argv: python:PATH [FLAG]) running a probe
            exe, *flags = mode[len("python:"):].split(",")
            env = dict(os.environ)
            if "nopath" in flags:
                flags.remove("nopath")
                env.pop("PYTHONPATH", None)
            code = "import select, selectors; print(type(selectors.DefaultSelector()).__module__" \\
                   " + '/' + select.select.__module__)"
            proc = subprocess.run([exe, *flags, "-c", code], capture_output=True,
                                  text=True, timeout=50, env=env)
            report("other", proc.stdout.strip() or "-")
            sys.stderr.write(proc.stderr)
            if proc.returncode:
                raise SystemExit(f"other interpreter exited {proc.returncode}")

    def child(depth, last):
        role = "grand" * (depth - 1) + "child"
        report(role, probe())
        report(role + "-env", os.environ.get("FASTSEL_AUTOINSTALL", "-"))
        if depth < last:
            run_child("child", str(depth + 1), str(last))

    if __name__ == "__main__":
        if sys.argv[1] == "child":
            child(int(sys.argv[2]), int(sys.argv[3]))
        else:
            main(sys.argv[1])
''')

# Covering children is about the C implementation; where fastsel serves the
# stdlib's own modules (PyPy, ...) it is a no-op (test_main_module.py).
pytestmark = pytest.mark.c_impl

FASTSEL, STDLIB = "fastsel/fastsel._fastsel", "selectors/select"
START_METHODS = multiprocessing.get_all_start_methods()


def pth_file() -> str:
    """The installed hook file for this interpreter, or skip/fail without one."""
    dirs = list(site.getsitepackages()) + [site.getusersitepackages(),
                                           sysconfig.get_paths()["purelib"],
                                           sysconfig.get_paths()["platlib"]]
    for d in dirs:
        path = os.path.join(d, PTH_NAME)
        if os.path.isfile(path):
            return path
    why = f"fastsel is not pip-installed for this interpreter (no {PTH_NAME} in site-packages)"
    if os.environ.get("FASTSEL_REQUIRE_INSTALLED") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="module", autouse=True)
def hook_installed() -> str:
    return pth_file()


def clean_env(**extra: str) -> dict:
    """child_env() without an inherited FASTSEL_AUTOINSTALL (the run under test sets it)."""
    env = child_env()
    env.pop(ENV_VAR, None)
    env.update(extra)
    return env


def run_prog(tmp_path, *args: str, launcher: List[str], env=None) -> Dict[str, str]:
    """Run PROG with ARGS under LAUNCHER; {role: probe result} of every process."""
    prog = tmp_path / "prog.py"
    prog.write_text(PROG)
    proc = run_python([*launcher, str(prog), *args], cwd=str(tmp_path), timeout=60,
                      env=env or clean_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == "", proc.stderr
    seen: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        role, _, result = line.partition(" ")
        assert role not in seen, proc.stdout
        seen[role] = result
    return seen


FASTSEL_M = ["-m", "fastsel"]


# -- python -m fastsel: every kind of child ---------------------------------

@pytest.mark.parametrize("method", START_METHODS)
def test_multiprocessing_start_methods(tmp_path, method: str) -> None:
    seen = run_prog(tmp_path, method, launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, f"{method}-process": FASTSEL, f"{method}-pool": FASTSEL}


@pytest.mark.parametrize("mode", ["executor"] + [f"executor-{m}" for m in START_METHODS])
def test_process_pool_executor(tmp_path, mode: str) -> None:
    """The default context too: forkserver on Linux from 3.14, fork before."""
    seen = run_prog(tmp_path, mode, launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, mode: FASTSEL}


def test_subprocess_sys_executable(tmp_path) -> None:
    seen = run_prog(tmp_path, "subprocess", launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, "child": FASTSEL, "child-env": "1"}


def test_grandchild(tmp_path) -> None:
    """main -> child -> grandchild, each a new interpreter."""
    seen = run_prog(tmp_path, "grandchild", launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, "child": FASTSEL, "child-env": "1",
                    "grandchild": FASTSEL, "grandchild-env": "1"}


def test_module_mode_children(tmp_path) -> None:
    """`python -m fastsel -m MODULE` covers children as the script form does."""
    (tmp_path / "probemod.py").write_text(PROG)
    proc = run_python(["-m", "fastsel", "-m", "probemod", "spawn"], cwd=str(tmp_path),
                      timeout=60, env=clean_env())
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.split() == ["main", FASTSEL, "spawn-process", FASTSEL,
                                   "spawn-pool", FASTSEL]


# -- opting out, and install() from inside a program -------------------------

@pytest.mark.parametrize("inherited", [False, True], ids=["clean-env", "var-inherited"])
def test_no_children(tmp_path, inherited: bool) -> None:
    """--no-children: new interpreters get the stdlib (even with the variable
    inherited from outside); forked children still share the parent's memory."""
    env = clean_env(**({ENV_VAR: "1"} if inherited else {}))
    launcher = ["-m", "fastsel", "--no-children"]
    seen = run_prog(tmp_path, "subprocess", launcher=launcher, env=env)
    assert seen == {"main": FASTSEL, "child": STDLIB, "child-env": "-"}
    seen = run_prog(tmp_path, "spawn", launcher=launcher, env=env)
    assert seen == {"main": FASTSEL, "spawn-process": STDLIB, "spawn-pool": STDLIB}
    if "fork" in START_METHODS:
        seen = run_prog(tmp_path, "fork", launcher=launcher, env=env)
        assert seen == {"main": FASTSEL, "fork-process": FASTSEL, "fork-pool": FASTSEL}


INSIDE = textwrap.dedent('''
    import os, subprocess, sys
    import fastsel
    CODE = "import selectors; print(type(selectors.DefaultSelector()).__module__)"

    def child():
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                             timeout=50)
        return out.stdout.strip() + out.stderr

    fastsel.install()
    print("install()", child(), os.environ.get("FASTSEL_AUTOINSTALL", "-"))
    fastsel.install(children=True)
    print("install(children=True)", child(), os.environ.get("FASTSEL_AUTOINSTALL", "-"))
    fastsel.install()
    print("install() again", child(), os.environ.get("FASTSEL_AUTOINSTALL", "-"))
    fastsel.uninstall()
    print("uninstall()", child(), os.environ.get("FASTSEL_AUTOINSTALL", "-"))
''')


def test_install_from_inside_a_program(tmp_path) -> None:
    """install() keeps to its own process; children=True adds the children,
    and uninstall() stops covering children started afterwards."""
    proc = run_python(["-c", INSIDE], cwd=str(tmp_path), timeout=60, env=clean_env())
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [
        "install() selectors -",
        "install(children=True) fastsel 1",
        "install() again fastsel 1",
        "uninstall() selectors -",
    ]


def test_uninstall_in_a_covered_child(tmp_path) -> None:
    """A child installed by the hook can uninstall(), and then its children
    run on the stdlib."""
    code = ("import os, subprocess, sys, selectors, fastsel\n"
            "print(selectors.DefaultSelector.__module__)\n"
            "fastsel.uninstall()\n"
            "print(selectors.DefaultSelector.__module__, os.environ.get('FASTSEL_AUTOINSTALL'))\n"
            "print(subprocess.run([sys.executable, '-c', 'import selectors;"
            " print(selectors.DefaultSelector.__module__)'], timeout=50, capture_output=True,"
            " text=True).stdout.strip())\n")
    proc = run_python(["-c", code], cwd=str(tmp_path), timeout=60, env=clean_env(**{ENV_VAR: "1"}))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.split() == ["fastsel", "selectors", "None", "selectors"]


# -- the hook itself -----------------------------------------------------------

HOOK_STATE = ("import sys; m = sys.modules; print('fastsel' in m, 'fastsel._fastsel' in m, "
              "'selectors' in m and m['selectors'].DefaultSelector.__module__)")


@pytest.mark.parametrize("value, loaded", [
    (None, "False False False"),
    ("", "False False False"),
    ("0", "False False False"),
    ("1", "True True fastsel"),
    ("yes", "True True fastsel"),
])
def test_hook_only_acts_when_asked(tmp_path, value, loaded: str) -> None:
    """Unset (or "" / "0"): fastsel is not even imported.  Set: fastsel is
    installed before the program's first line runs."""
    env = clean_env() if value is None else clean_env(**{ENV_VAR: value})
    proc = run_python(["-c", HOOK_STATE], cwd=str(tmp_path), timeout=60, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == loaded


def test_hook_is_a_no_op_without_the_c_extension(tmp_path) -> None:
    """Where fastsel serves the platform's own modules (implementation
    "stdlib"), the hook installs nothing and install() leaves children alone."""
    code = textwrap.dedent("""
        import os, sys
        import fastsel
        from fastsel import _hook
        fastsel.implementation = "stdlib"
        os.environ["FASTSEL_AUTOINSTALL"] = "1"
        _hook.start()
        import selectors
        print(selectors.DefaultSelector.__module__)
        del os.environ["FASTSEL_AUTOINSTALL"]
        fastsel.install(children=True)
        print(os.environ.get("FASTSEL_AUTOINSTALL", "-"))
    """)
    proc = run_python(["-c", code], cwd=str(tmp_path), timeout=60, env=clean_env())
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.split() == ["selectors", "-"]


def test_child_interpreter_without_site_hook(tmp_path) -> None:
    """`python -S` runs no site-packages .pth: that child gets the stdlib,
    quietly, while the variable is set."""
    seen = run_prog(tmp_path, f"python:{sys.executable},-S", launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, "other": STDLIB}


@pytest.mark.parametrize("keep_path", [False, True], ids=["not-importable", "on-PYTHONPATH"])
def test_child_interpreter_without_fastsel(tmp_path, keep_path: bool) -> None:
    """A fresh venv where fastsel is not installed: its children run on the
    stdlib with no error or warning, whether or not fastsel happens to be
    importable from PYTHONPATH (the hook is what installs it, not importability)."""
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=60, capture_output=True)
    exe = str(venv / "bin" / "python")
    assert not glob.glob(str(venv / "lib" / "*" / "site-packages" / PTH_NAME))
    mode = f"python:{exe}" + ("" if keep_path else ",nopath")
    seen = run_prog(tmp_path, mode, launcher=FASTSEL_M)
    assert seen == {"main": FASTSEL, "other": STDLIB}


# -- packaging: the .pth is in the install's RECORD ---------------------------

def test_pth_is_recorded_and_current(hook_installed: str) -> None:
    """pip removes exactly the files in RECORD on uninstall; the .pth is one."""
    files = metadata.files("fastsel") or []
    recorded = [f for f in files if str(f) == PTH_NAME]
    assert recorded, f"{PTH_NAME} not in fastsel's RECORD"
    assert os.path.samefile(str(recorded[0].locate()), hook_installed)
    source = os.path.join(REPO, "src", PTH_NAME)
    if os.path.isfile(source):
        with open(source) as a, open(hook_installed) as b:
            assert a.read() == b.read()
    with open(hook_installed) as f:
        lines = f.read().splitlines()
    # one line, run by site because it starts with "import", naming the variable
    assert len(lines) == 1 and lines[0].startswith("import ") and ENV_VAR in lines[0]


# -- test runners: regrtest workers -------------------------------------------

def regrtest(tmp_path, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("test.test_selectors") is None:
        pytest.skip("this interpreter has no CPython test suite (test.test_selectors)")
    return run_python(["-m", "fastsel", *args], cwd=str(tmp_path), timeout=120,
                      env=clean_env())


REGRTEST_PROBE = textwrap.dedent('''
    import os, select, selectors, unittest

    class Probe(unittest.TestCase):
        def test_which_implementation(self):
            with selectors.DefaultSelector() as sel:
                served = type(sel).__module__ + "/" + select.select.__module__
            print(f"\\nPROBE pid={os.getpid()} served={served}", flush=True)
''')


def regrtest_dir(tmp_path) -> str:
    """A --testdir holding the running CPython's own test_selectors.py, copied
    as it is, and a probe test that reports which implementation served the
    worker process it ran in."""
    spec = importlib.util.find_spec("test.test_selectors")
    testdir = tmp_path / "regrtests"
    testdir.mkdir()
    with open(spec.origin, "rb") as f:
        (testdir / "test_selectors.py").write_bytes(f.read())
    (testdir / "test_fastsel_probe.py").write_text(REGRTEST_PROBE)
    return str(testdir)


def probes_of(out: str) -> set:
    """{(pid, served)} of every probe that ran; never this process's pid."""
    probes = set(re.findall(r"PROBE pid=(\d+) served=(\S+)", out))
    assert str(os.getpid()) not in {pid for pid, _ in probes}
    return probes


def test_regrtest_workers_run_fastsel(tmp_path) -> None:
    """`python -m fastsel -m test -j2 ...`: the tests run in worker processes,
    and those run on fastsel: the probe says so from its worker, and CPython's
    own test_selectors passes there, unchanged."""
    testdir = regrtest_dir(tmp_path)
    proc = regrtest(tmp_path, "-m", "test", "-j2", "--testdir", testdir, "-v",
                    "test_selectors", "test_fastsel_probe")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    probes = probes_of(out)
    assert probes and {served for _, served in probes} == {FASTSEL}, out
    assert not re.search(r"^(FAIL|ERROR): ", out, re.M), out


def test_regrtest_workers_opted_out(tmp_path) -> None:
    """With --no-children the workers run on the stdlib."""
    testdir = regrtest_dir(tmp_path)
    proc = regrtest(tmp_path, "--no-children", "-m", "test", "-j2", "--testdir", testdir,
                    "-v", "test_fastsel_probe")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    probes = probes_of(out)
    assert probes and {served for _, served in probes} == {STDLIB}, out

