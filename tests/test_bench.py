"""`python -m fastsel bench`: runs end to end, prints its tables, writes its
JSON (and plot); a tiny budget (the hidden --smoke mode) keeps it short."""
from __future__ import annotations

import json
import math
import os
import select
import sys

import pytest

from _helpers import run_python

SMOKE_TIMEOUT = 30


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
                  "summary:"):
        assert title in out
    for line in ("select() timeout 0", "poll.poll() timeout 0"):
        assert line in out
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
    assert {"wait/select/1", "wait/poll/100", "wait/select/1000"} <= names
    if hasattr(select, "epoll"):
        assert "wait/epoll/1000" in names
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
    for r in echo:
        assert r["conns"] == 50 and r["variant"] in ("protocol", "sock")
        assert r["runs"]
        for run in r["runs"]:
            assert run["requests"] > 0 and run["total_requests"] >= run["requests"]
            assert 0 < run["p50_s"] <= run["p99_s"] < 5
            assert run["server_cpu_s"] > 0
        med = r["median"]
        assert med["rps"] > 0 and _sane(med["cpu_per_request_s"])


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
    for opt in ("--quick", "--full", "--impl", "--json", "--plot", "--cases"):
        assert opt in proc.stdout
    assert "--smoke" not in proc.stdout
    assert os.listdir(tmp_path) == []


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
    assert [r["name"] for r in data["echo"]] == ["echo/protocol/1KiB"] * 2
    for r in data["echo"]:
        for run in r["runs"]:
            assert run["client"].startswith("python") and run["requests"] > 0
