"""The three seed examples run unchanged on fastsel, against real clients.

/work/shared/seed-examples (``../shared/seed-examples`` from the repo root, as
in CI; or $FASTSEL_SEED_EXAMPLES) holds three servers that users copy as they
are.  Each runs here twice: under ``python -m fastsel`` and with
``fastsel.install()`` (tests/seed_runner.py supplies only what the document
leaves to the reader).  tests/seed_driver.py connects several clients at
once, sends messages larger than the examples' recv(4096), checks that the
data is read (``process`` log), echoed (echo server) and that a half-close
gets the server to close its side, and that an abrupt close does not hurt.

Port 8080: every run gets a private network namespace (``unshare -rn``, then
``ip link set lo up``) holding the driver, the server and its clients, so the
example binds the real 0.0.0.0:8080 unchanged, and parallel or repeated runs
-- or anything else on the machine using 8080 -- cannot collide.  Where user
namespaces are not available, the runner instead redirects the example's bind
to port 8080 to an ephemeral 127.0.0.1 port (the example file is untouched)
and tells the driver the number through a file.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

import pytest

from _helpers import REPO, child_env

HERE = os.path.dirname(os.path.abspath(__file__))
SEED_DIR = os.environ.get("FASTSEL_SEED_EXAMPLES") or os.path.join(
    os.path.dirname(REPO), "shared", "seed-examples")
BIG = 10000
N_CLIENTS = 4

NEEDS = {
    "select_server.py": "select",
    "poll_server.py": "poll",
    "selectors_echo_server.py": "DefaultSelector",
}


@functools.lru_cache(maxsize=None)
def netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    try:
        proc = subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"],
                              capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def drive(example: str, mode: str) -> dict:
    driver = os.path.join(HERE, "seed_driver.py")
    if netns_available():
        cmd = ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
               sys.executable, driver, example, mode, "netns"]
    else:
        cmd = [sys.executable, driver, example, mode, "intercept"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_client(record: dict, echo: bool) -> None:
    assert "error" not in record, record
    assert record["sent"] == 100 + BIG
    assert record["end"] == "eof", record       # the server closed after reading everything
    assert record["after_close_bytes"] == 0
    if echo:
        assert record["echoed_ok"] is True, record


@pytest.mark.parametrize("mode", ["m", "install"])
@pytest.mark.parametrize("example", sorted(NEEDS))
def test_seed_example(example: str, mode: str) -> None:
    path = os.path.join(SEED_DIR, example)
    if not os.path.isfile(path):
        pytest.skip(f"seed example {path} is not present (shared/ not beside the checkout)")
    report = drive(path, mode)
    assert "error" not in report, report
    first_line = report["server_stdout"].splitlines()[0]
    used = json.loads(first_line)["fastsel"]
    assert used.get(NEEDS[example]) is True, used       # really served by fastsel
    assert all(used.values()), used
    echo = example == "selectors_echo_server.py"
    assert len(report["clients"]) == N_CLIENTS
    for record in report["clients"].values():
        check_client(record, echo)
    check_client(report["late_client"], echo)
    assert report["alive"], report["server_stderr"]
    assert report["server_stderr"] == ""
    if example == "select_server.py":
        # process() saw every byte of every client (markers 65, 66, ...)
        want = {str(65 + cid): 100 + BIG for cid in range(N_CLIENTS + 1)}
        assert report["processed"] == want


def test_seed_examples_present_or_skipped_clearly() -> None:
    if not os.path.isdir(SEED_DIR):
        pytest.skip(f"{SEED_DIR} is absent")
    assert set(NEEDS) <= set(os.listdir(SEED_DIR))
