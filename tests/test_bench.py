"""`python -m fastsel bench`: runs end to end, prints its tables, writes its
JSON (and plot); a tiny budget (the hidden --smoke mode) keeps it short."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import select
import shutil
import sys

import pytest

from _helpers import run_python

SMOKE_TIMEOUT = 30
# the memory case measures with tracemalloc, which PyPy lacks
HAVE_TRACEMALLOC = importlib.util.find_spec("_tracemalloc") is not None
MEMORY_NOTE = "memory: tracemalloc is absent or already tracing; not measured"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    js, png = d / "out.json", d / "out.png"
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--json", str(js),
                       "--plot", str(png)], timeout=SMOKE_TIMEOUT, cwd=str(d))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(js) as f:
        data = json.load(f)
    return proc, data, png


def _sane(seconds) -> bool:
    return isinstance(seconds, float) and math.isfinite(seconds) and 0 < seconds < 1


def test_tables_printed(smoke):
    proc, data, _ = smoke
    out = proc.stdout
    for title in ("Micro-benchmarks", "stdlib/fastsel", "Scaling:", "asyncio echo server",
                  "Where the server's CPU goes", "summary:"):
        assert title in out
    assert ("Memory per registration" in out) == HAVE_TRACEMALLOC
    assert (MEMORY_NOTE in out) != HAVE_TRACEMALLOC
    for line in ("select() timeout 0", "poll.poll() timeout 0", ".get_key(socket)"):
        assert line in out
    if hasattr(select, "epoll"):
        assert "epoll.register()" in out and "1000 fds, all writable" in out
    assert "RLIMIT_NOFILE" in out
    # progress goes to stderr, not into the table
    assert "[bench] (1/" in proc.stderr and "[bench] (1/" not in out


def test_json_machine_and_settings(smoke):
    _, data, _ = smoke
    assert data["schema"] == "fastsel-bench/1"
    m = data["machine"]
    for key in ("cpu_model", "cores", "kernel", "python", "fastsel_version"):
        assert m[key], key
    import fastsel
    import platform
    assert m["python"] == platform.python_version()
    assert m["fastsel_version"] == fastsel.__version__
    assert m["cores"] == os.cpu_count()
    assert data["settings"]["mode"] == "smoke"
    assert data["elapsed_s"] < SMOKE_TIMEOUT


def test_json_micro_results(smoke):
    _, data, _ = smoke
    micro = data["micro"]
    names = {r["name"] for r in micro}
    assert {"wait/select/1", "wait/poll/100", "wait/select/1000", "selector/get_key",
            "selector/modify-data", "selector/construct-close"} <= names
    if hasattr(select, "epoll"):
        assert {"wait/epoll/1000", "wait/epoll/100-1", "wait/epoll/1000-1000",
                "ctl/epoll/register", "ctl/epoll/modify", "ctl/epoll/unregister"} <= names
    repeat = data["settings"]["repeat"]
    for r in micro:
        assert set(r["samples"]) == {"stdlib", "fastsel"}
        for impl, samples in r["samples"].items():
            assert len(samples) == repeat
            assert all(_sane(x) for x in samples), (r["name"], samples)
            assert min(samples) <= r["median"][impl] <= max(samples)
        assert r["ratio"] == pytest.approx(r["median"]["stdlib"] / r["median"]["fastsel"])
        if r["nready"]:
            for impl in r["samples"]:
                assert r["per_event"][impl] == pytest.approx(r["median"][impl] / r["nready"])
        if r.get("floor") is not None:
            assert _sane(r["floor"])
            assert r["vs_floor"]["fastsel"] == pytest.approx(r["median"]["fastsel"] / r["floor"])
    if hasattr(select, "epoll"):
        by_name = {r["name"]: r for r in micro}
        assert by_name["wait/epoll/1000-1000"]["nready"] == 1000
        assert by_name["ctl/epoll/modify"]["ops_per_stmt"] == 1000
    # a wait on 1000 fds costs more than one on 1 fd, for select and poll
    by = {r["name"]: r for r in micro}
    for mech in ("select", "poll"):
        for impl in ("stdlib", "fastsel"):
            assert (by[f"wait/{mech}/1000"]["median"][impl]
                    > by[f"wait/{mech}/1"]["median"][impl])


@pytest.mark.c_impl
def test_json_scaling(smoke):
    _, data, _ = smoke
    sc = data["scaling"]
    assert sc["nready"] == 5 and sc["sizes"] == sorted(sc["sizes"])
    series = {(s["mechanism"], s["impl"]): s for s in sc["series"]}
    # the selector's select(0) is a series of its own, every size measured
    sel_fast = series[("selector", "fastsel")]
    assert [p["nfds"] for p in sel_fast["points"]] == sc["sizes"]
    assert sc["selector_class"] == __import__("selectors").DefaultSelector.__name__
    fast_select = series[("select", "fastsel")]
    # fastsel's select() has no FD_SETSIZE limit: every size measured
    assert [p["nfds"] for p in fast_select["points"]] == sc["sizes"]
    assert fast_select["stopped"] is None
    std_select = series[("select", "stdlib")]
    largest = max(sc["sizes"])
    if largest > 1024:
        # the smoke sizes go past FD_SETSIZE: the stdlib refuses there
        assert std_select["stopped"] is not None
        assert std_select["stopped"]["error"].startswith("ValueError")
        assert std_select["stopped"]["max_fd"] >= 1024
    for s in sc["series"]:
        for p in s["points"]:
            assert _sane(p["median"])


GLIBC = platform.libc_ver()[0] == "glibc"


def test_json_echo(smoke):
    _, data, _ = smoke
    echo = data["echo"]
    assert echo, "no echo results"
    impls = {r["impl"] for r in echo}
    assert {"stdlib", "fastsel"} <= impls
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert "uvloop" not in impls
    else:
        assert "uvloop" in impls
    # with and without glibc's mmap and trim thresholds raised (smoke: both)
    assert {r["malloc"] for r in echo} == ({"default", "mmap+trim"} if GLIBC else {"default"})
    for r in echo:
        assert r["conns"] == 50 and r["variant"] in ("protocol", "sock")
        assert r["name"] == f"echo/{r['variant']}/1KiB/{r['malloc']}"
        assert r["runs"]
        for run in r["runs"]:
            assert run["requests"] > 0 and run["total_requests"] >= run["requests"]
            assert 0 < run["p50_s"] <= run["p99_s"] < 5
            assert run["server_cpu_s"] > 0 and run["malloc"] == r["malloc"]
        med = r["median"]
        assert med["rps"] > 0 and _sane(med["cpu_per_request_s"])


def test_json_echo_cpu_split(smoke):
    """kernel + Python + selector add up to the server's CPU; each is a part."""
    _, data, _ = smoke
    for r in data["echo"]:
        for run in r["runs"]:
            cpu = run["server_cpu_s"]
            assert run["server_user_s"] + run["server_sys_s"] == pytest.approx(cpu)
            if r["impl"] == "uvloop":
                assert run.get("selector_cpu_s") is None
                continue
            assert run["select_calls"] > 0 and run["select_timed"] == run["select_calls"]
            assert 0 <= run["selector_cpu_s"] <= cpu
            assert run["python_cpu_s"] == pytest.approx(
                max(0.0, run["server_user_s"] - run["selector_cpu_s"]))
            parts = run["kernel_share"] + run["python_share"] + run["selector_share"]
            assert parts == pytest.approx(1.0, abs=0.02) or run["python_cpu_s"] == 0
            assert run["events_per_select"] > 0
            assert 0 < run["clock_read_s"] < 1e-3
            assert 0 <= run["instrumentation_s"] < cpu
        med = r["median"]
        if r["impl"] != "uvloop":
            for key in ("sys_cpu_per_request_s", "selector_cpu_per_request_s"):
                assert med[key] is not None and 0 <= med[key] <= med["cpu_per_request_s"]


def test_memory_and_syscalls(smoke):
    _, data, _ = smoke
    mem = data["memory"]
    if HAVE_TRACEMALLOC:
        assert mem["registrations"] == 4000
        assert set(mem["bytes_per_registration"]) == {"stdlib", "fastsel"}
        for b in mem["bytes_per_registration"].values():
            assert 0 < b < 10000
    else:
        assert mem is None and MEMORY_NOTE in data["notes"]
    sc = data["syscalls"]
    if not sc:
        # strace missing or not allowed to trace here: the output says which
        assert any(n.startswith("syscalls:") for n in data["notes"]), data["notes"]
        return
    assert shutil.which("strace")
    by = {(r["name"], r["impl"]): r for r in sc}
    assert set(by) == {(f"syscalls/modify-{w}", i) for w in ("data", "events")
                       for i in ("stdlib", "fastsel")}
    if mem is not None and mem["class"] == "EpollSelector":
        # a data-only modify needs no system call; an events change one epoll_ctl
        for impl in ("stdlib", "fastsel"):
            assert by[("syscalls/modify-data", impl)]["total_per_modify"] < 0.1
            ev = by[("syscalls/modify-events", impl)]
            assert ev["per_modify"].get("epoll_ctl") == pytest.approx(1.0, abs=0.05)


def test_plot_written(smoke):
    _, _, png = smoke
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # the child runs the same interpreter: no matplotlib, no plot
        assert not png.exists()
        pytest.skip("matplotlib is not installed")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cases_and_impl_filters(tmp_path):
    js = tmp_path / "one.json"
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--cases", "wait/poll/1,",
                       "--impl", "fastsel", "--json", str(js), "--plot", ""],
                      timeout=SMOKE_TIMEOUT, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(js.read_text())
    # "wait/poll/1" is a substring of wait/poll/1, /100 and /1000
    assert {r["name"] for r in data["micro"]} == {"wait/poll/1", "wait/poll/100",
                                                  "wait/poll/1000"}
    assert all(set(r["samples"]) == {"fastsel"} and "ratio" not in r for r in data["micro"])
    assert data["scaling"] is None and data["echo"] == []
    assert sorted(os.listdir(tmp_path)) == ["one.json"]    # no plot asked


def test_glob_pattern_selects_one_case(tmp_path):
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--cases", "wait/epoll/1",
                       "--json", "", "--plot", "", "--impl", "stdlib,fastsel"],
                      timeout=SMOKE_TIMEOUT, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    if hasattr(select, "epoll"):
        assert "epoll.poll() timeout 0" in proc.stdout
    assert "select() timeout 0" not in proc.stdout
    assert os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path):
    proc = run_python(["-m", "fastsel", "bench", "--impl", "nosuch"], timeout=20,
                      cwd=str(tmp_path))
    assert proc.returncode == 2 and "unknown implementation 'nosuch'" in proc.stderr
    proc = run_python(["-m", "fastsel", "bench", "--quick", "--full"], timeout=20,
                      cwd=str(tmp_path))
    assert proc.returncode == 2 and "not allowed with" in proc.stderr
    proc = run_python(["-m", "fastsel", "bench", "--help"], timeout=20, cwd=str(tmp_path))
    assert proc.returncode == 0
    for opt in ("--quick", "--full", "--impl", "--json", "--plot", "--cases", "--echo",
                "--malloc", "--selector", "MALLOC_MMAP_THRESHOLD_"):
        assert opt in proc.stdout
    assert "--smoke" not in proc.stdout
    proc = run_python(["-m", "fastsel", "bench", "--malloc", "default,nosuch"], timeout=20,
                      cwd=str(tmp_path))
    assert proc.returncode == 2 and "unknown malloc setting 'nosuch'" in proc.stderr
    proc = run_python(["-m", "fastsel", "bench", "--selector", "NoSuchSelector"], timeout=20,
                      cwd=str(tmp_path))
    assert proc.returncode == 2 and "--selector" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_echo_only_one_malloc_setting(tmp_path):
    # --echo: the echo cases alone; --malloc picks the server's settings
    js = tmp_path / "echo.json"
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--echo", "--malloc", "default",
                       "--impl", "stdlib,fastsel", "--json", str(js), "--plot", ""],
                      timeout=SMOKE_TIMEOUT, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(js.read_text())
    assert data["micro"] == [] and data["scaling"] is None and data["memory"] is None
    assert sorted(r["name"] for r in data["echo"]) == sorted(
        f"echo/{v}/1KiB/default" for v in ("protocol", "sock") for _ in range(2))
    assert "Where the server's CPU goes" in proc.stdout


def test_other_selector_class(tmp_path):
    js = tmp_path / "poll.json"
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--selector", "PollSelector",
                       "--cases", "selector/get_key,selector/construct,memory",
                       "--json", str(js), "--plot", ""], timeout=SMOKE_TIMEOUT,
                      cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(js.read_text())
    assert {r["name"] for r in data["micro"]} == {"selector/get_key",
                                                  "selector/construct-close"}
    assert "PollSelector.get_key(socket)" in proc.stdout
    assert "PollSelector() + close()" in proc.stdout
    assert data["syscalls"] == []
    if HAVE_TRACEMALLOC:
        assert data["memory"]["class"] == "PollSelector"


def test_without_a_compiler(tmp_path):
    # the hidden --no-cc: no C floor, and the echo load from Python processes
    js = tmp_path / "nocc.json"
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--no-cc", "--cases",
                       "echo/protocol/1KiB,wait/select/1", "--impl", "stdlib,fastsel",
                       "--json", str(js), "--plot", ""],
                      timeout=SMOKE_TIMEOUT, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(js.read_text())
    assert any(n.startswith("C floor skipped") for n in data["notes"])
    assert all(r.get("floor") is None for r in data["micro"])
    assert data["echo_client"].startswith("Python client")
    assert sorted(r["name"] for r in data["echo"]) == sorted(
        ["echo/protocol/1KiB/default"] * 2 + (["echo/protocol/1KiB/mmap+trim"] * 2 if GLIBC
                                              else []))
    for r in data["echo"]:
        for run in r["runs"]:
            assert run["client"].startswith("python") and run["requests"] > 0
