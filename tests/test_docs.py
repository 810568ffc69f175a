"""Every ```python block of README.md and docs/*.md runs, each on its own.

Each block is self-contained and runs in a fresh interpreter (so blocks
cannot leak state into each other or into the test process), with a time
bound.  Blocks that are deliberately not runnable use another fence label
(```text).  A block fails the test if it raises, prints to stderr, or
exceeds its time: a block that needs a name fastsel lacks is a failure.
"""
from __future__ import annotations

import glob
import os
import re
import shlex

import pytest

from _helpers import REPO, run_python

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def python_blocks() -> list:
    blocks = []
    for path in DOCS:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in FENCE.finditer(text):
            if m.group(1) == "python":
                line = text.count("\n", 0, m.start()) + 1
                rel = os.path.relpath(path, REPO)
                blocks.append(pytest.param(m.group(2), id=f"{rel}:{line}"))
    return blocks


BLOCKS = python_blocks()


def test_docs_exist() -> None:
    for name in ["index", "getting-started", "mechanisms", "api", "differences",
                 "performance", "asyncio", "internals"]:
        assert os.path.isfile(os.path.join(REPO, "docs", name + ".md")), name
    # the README's quick start is exactly the two documented commands
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    quick = readme.split("## Quick start", 1)[1]
    first = FENCE.search(quick)
    assert first is not None and first.group(2).split() == ["make", "run", "make", "test"]
    assert len(BLOCKS) >= 8


def test_readme_example_is_short() -> None:
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    example = readme.split("## Example", 1)[1]
    block = FENCE.search(example)
    assert block is not None and block.group(1) == "python"
    assert len(block.group(2).strip().splitlines()) <= 10


@pytest.mark.parametrize("code", BLOCKS)
def test_block_runs(code: str, tmp_path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    proc = run_python(["-X", "dev", "-W", "error::ResourceWarning", str(script)],
                      cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def test_benchmark_smoke(tmp_path) -> None:
    """Every `python -m fastsel bench` command line of docs/performance.md is
    accepted by the command, and a tiny run of it prints ratios."""
    from fastsel._bench import parse_args
    with open(os.path.join(REPO, "docs", "performance.md"), encoding="utf-8") as f:
        text = f.read()
    assert "benchmarks/" not in text
    commands = re.findall(r"^python -m fastsel bench\b([^#\n]*)", text, re.M)
    assert len(commands) >= 4 and any("--quick" in c for c in commands)
    for c in commands:
        if "--help" not in c:
            parse_args(shlex.split(c))      # argparse exits on an unknown option
    proc = run_python(["-m", "fastsel", "bench", "--smoke", "--cases",
                       "wait/select/1,wait/poll/100", "--json", "", "--plot", ""],
                      cwd=str(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "stdlib/fastsel" in proc.stdout
    for row in (r"select\(\) timeout 0\s+1 fd, 1 ready\s+\S",
                r"poll\.poll\(\) timeout 0\s+100 fds, 10 ready\s+\S"):
        assert re.search(row, proc.stdout), row


def test_internals_lists_every_c_source() -> None:
    """docs/internals.md's file table names exactly the files of src/_fastsel."""
    with open(os.path.join(REPO, "docs", "internals.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("## Files", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            named.update(re.findall(r"`([\w.]+\.[ch])`", line.split("|")[1]))
    on_disk = {n for n in os.listdir(os.path.join(REPO, "src", "_fastsel"))
               if n.endswith((".c", ".h"))}
    assert named == on_disk, (sorted(named - on_disk), sorted(on_disk - named))

