"""The cases of ``python -m fastsel bench`` that are not timings.

* ``memory``: bytes allocated per registration in a selector, as
  :mod:`tracemalloc` sees them (the stdlib's ``SelectorKey`` objects and
  dicts; fastsel's table, allocated with ``PyMem_*``), over 4000 sockets;
* ``syscalls/modify-data``, ``syscalls/modify-events``: system calls per
  ``selector.modify()`` that changes only the data, or the events, counted
  with ``strace -c -f`` (when strace is installed and allowed to trace): a
  child doing N modifies against the same child doing none.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional

from . import cases, runner
from .runner import progress

MEMORY_SOCKETS = 4000


def run_memory(impls: List[str], n: int = MEMORY_SOCKETS) -> Optional[Dict[str, Any]]:
    """None where tracemalloc cannot measure: already tracing, or absent (PyPy)."""
    try:
        import tracemalloc
    except ImportError:
        return None
    if tracemalloc.is_tracing():
        return None
    per: Dict[str, float] = {}
    for impl in impls:
        progress(f"memory: {n} registrations, {impl}")
        pairs = [socket.socketpair() for _ in range(n // 2)]
        socks = [x for p in pairs for x in p]
        sel = cases.selector_class(impl)()
        try:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for sk in socks:
                sel.register(sk, cases.std_selectors.EVENT_READ)
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
            sel.close()
            for sk in socks:
                sk.close()
        per[impl] = (after - before) / len(socks)
    return {"name": "memory", "class": cases.selector_class(impls[0]).__name__,
            "registrations": n, "bytes_per_registration": per}


# The child: register one end of a socketpair, then N modifies of one kind.
_CHILD = """
import socket, sys
impl, what, n, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if impl == "fastsel":
    import fastsel as mod
else:
    import selectors as mod
a, b = socket.socketpair()
s = getattr(mod, kind)()
s.register(a, 1, 0)
for i in range(n):
    if what == "data":
        s.modify(a, 1, i + 1)
    else:
        s.modify(a, 2 if i % 2 == 0 else 1, 0)
s.close()
"""


def _strace_counts(strace: str, impl: str, what: str, n: int) -> Dict[str, int]:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "strace.txt")
        res = subprocess.run([strace, "-f", "-c", "-o", out, sys.executable, "-c", _CHILD,
                              impl, what, str(n), cases.SELECTOR_CLASS],
                             capture_output=True, text=True, env=runner.child_env(),
                             timeout=120)
        if res.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"strace failed ({res.returncode}): "
                               f"{res.stderr.strip()[-300:]}")
        with open(out) as f:
            lines = f.read().splitlines()
    counts: Dict[str, int] = {}
    for line in lines:
        parts = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def run_syscalls(impls: List[str], n: int, notes: List[str]) -> List[Dict[str, Any]]:
    strace = shutil.which("strace")
    if strace is None:
        notes.append("syscalls: strace is not installed: system calls per modify not counted")
        return []
    out = []
    try:
        base = {impl: _strace_counts(strace, impl, "data", 0) for impl in impls}
        for what in ("data", "events"):
            for impl in impls:
                progress(f"syscalls: {n} modify ({what}), {impl}, under strace")
                counts = _strace_counts(strace, impl, what, n)
                per = {name: (c - base[impl].get(name, 0)) / n for name, c in counts.items()}
                per = {k: v for k, v in sorted(per.items()) if v >= 0.01}
                out.append({"name": f"syscalls/modify-{what}", "impl": impl, "modifies": n,
                            "class": cases.selector_class(impl).__name__,
                            "per_modify": per, "total_per_modify": sum(per.values())})
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        notes.append(f"syscalls: not counted: {exc}")
        return []
    return out
