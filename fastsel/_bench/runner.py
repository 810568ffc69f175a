"""Timing, machine description and C helpers for ``python -m fastsel bench``.

Method: every case gives the same operation as a statement per
implementation (run through :mod:`timeit`, so the statement is inlined in the
timing loop and the garbage collector is off), or, where each run needs
fresh state (``epoll.register()`` of the same fds), as a function that times
``loops`` runs itself.  The loop count is calibrated
on the slowest implementation so one timed run lasts ``min_time``; each
implementation is warmed up; then the implementations run interleaved
(A B, B A, A B ...) ``repeat`` times, so drifting clock speed and other load
hit them alike.  Medians of the per-call times are compared.
"""
from __future__ import annotations

import hashlib
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Settings:
    mode: str              # smoke | quick | default | full
    repeat: int            # timed runs per implementation
    min_time: float        # seconds one timed run lasts at least
    warmup: int            # warm-up runs per implementation
    scaling_sizes: Tuple[int, ...]
    echo_warmup: float
    echo_duration: float
    echo_repeat: int
    echo_sizes: Tuple[int, ...]
    echo_conns: int = 50
    echo_sample_every: int = 1   # time every n-th select() of the echo server


def settings_for(mode: str) -> Settings:
    if mode == "smoke":
        return Settings(mode, 3, 0.0005, 1, (100, 1000, 3000), 0.05, 0.2, 1, (1024,))
    if mode == "quick":
        return Settings(mode, 5, 0.004, 1, (100, 1000, 10000, 10 ** 5), 0.2, 0.6, 1,
                        (1024, 65536))
    if mode == "full":
        return Settings(mode, 15, 0.025, 2,
                        (100, 300, 1000, 3000, 10000, 30000, 10 ** 5), 0.5, 2.0, 5,
                        (1024, 65536))
    return Settings("default", 9, 0.01, 1, (100, 300, 1000, 3000, 10000, 10 ** 5),
                    0.3, 1.2, 3, (1024, 65536))


def progress(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- timing ------------------------------------------------------------------

# (statement, its namespace), timed through timeit; or a function that runs
# the operation ``loops`` times and returns the seconds that took
Stmt = Union[Tuple[str, Dict[str, Any]], Callable[[int], float]]


def _runner(stmt: Stmt) -> Callable[[int], float]:
    if callable(stmt):
        return stmt
    return timeit.Timer(stmt[0], globals=stmt[1]).timeit


def calibrate(run: Callable[[int], float], min_time: float, max_loops: int = 10 ** 7) -> int:
    """The loop count (grown tenfold, then by the measured rate) for which
    ``run(loops)`` lasts at least ``min_time`` seconds."""
    loops = 1
    while loops < max_loops:
        elapsed = run(loops)
        if elapsed >= min_time:
            return loops
        if elapsed > min_time / 100:
            loops = max(loops * 2, int(loops * min_time * 1.2 / elapsed))
        else:
            loops *= 10
    return max_loops


def measure(stmts: Dict[str, Stmt], s: Settings, ops: int = 1) -> Dict[str, Any]:
    """Interleaved timing of one operation in several implementations.

    Returns ``{"loops", "samples": {impl: [seconds per op ...]},
    "median": {impl: seconds}}``; ``ops`` is how many operations one
    statement performs (the samples are per operation).
    """
    runs = {impl: _runner(st) for impl, st in stmts.items()}
    loops = max(calibrate(r, s.min_time) for r in runs.values())
    for r in runs.values():
        for _ in range(s.warmup):
            r(max(1, loops // 2))
    names = list(runs)
    samples: Dict[str, List[float]] = {n: [] for n in names}
    for i in range(s.repeat):
        k = i % len(names)
        order = names[k:] + names[:k]
        if i % 2:
            order.reverse()
        for n in order:
            samples[n].append(runs[n](loops) / loops / ops)
    return {"loops": loops, "samples": samples,
            "median": {n: statistics.median(v) for n, v in samples.items()}}


# -- file descriptors ---------------------------------------------------------

def raise_nofile() -> Dict[str, Any]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; say what we got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard == resource.RLIM_INFINITY:
        target = 10 ** 6
    else:
        target = hard
    if soft == resource.RLIM_INFINITY or soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info = {"soft_before": _lim(before), "soft": _lim(soft), "hard": _lim(hard)}
    # can the hard limit go up?  Only with CAP_SYS_RESOURCE, up to nr_open.
    if hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard + 1))
        except (ValueError, OSError):
            info["hard_raisable"] = False
        else:
            info["hard_raisable"] = True
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return info


def _lim(v: int) -> Any:
    return "unlimited" if v == resource.RLIM_INFINITY else v


def pipes_layout(nfds: int, nready: int) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Both ends of ceil(nfds/2) pipes; the first ``nfds`` fds are watched
    for reading; ``nready`` read ends spread evenly hold one byte (write
    ends are never readable).  Same layout as floor.c.
    Returns (pipes, fds watched, fds ready)."""
    npipes = (nfds + 1) // 2
    ps: List[Tuple[int, int]] = []
    try:
        for _ in range(npipes):
            ps.append(os.pipe())
    except OSError:
        close_pipes(ps)
        raise
    nready = min(nready, npipes)
    ready = []
    for k in range(nready):
        r, w = ps[k * npipes // nready]
        os.write(w, b"x")
        ready.append(r)
    fds = [fd for p in ps for fd in p][:nfds]
    return ps, fds, ready


def pipes_writable(nfds: int) -> Tuple[List[Tuple[int, int]], List[int]]:
    """``nfds`` pipes whose write ends are watched for writing: all ready.
    Same layout as ``floor.c ... writable``.  Returns (pipes, fds watched)."""
    ps: List[Tuple[int, int]] = []
    try:
        for _ in range(nfds):
            ps.append(os.pipe())
    except OSError:
        close_pipes(ps)
        raise
    return ps, [w for _, w in ps]


def close_pipes(ps: List[Tuple[int, int]]) -> None:
    for r, w in ps:
        os.close(r)
        os.close(w)


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment for a child Python, with the fastsel this
    process imported (its C extension inside it) first on PYTHONPATH."""
    import fastsel
    env = dict(os.environ)
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fastsel.__file__)))]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(extra or {})
    return env


# -- C helpers ----------------------------------------------------------------

NO_CC = False        # the hidden --no-cc option: behave as if there were no compiler


def find_cc() -> Optional[str]:
    if NO_CC:
        return None
    cc = os.environ.get("CC")
    if cc and shutil.which(cc.split()[0]):
        return cc.split()[0]
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = os.path.join(base, "fastsel-bench")
    try:
        os.makedirs(d, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=d)
        probe.close()
        return d
    except OSError:
        d = os.path.join(tempfile.gettempdir(), f"fastsel-bench-{os.getuid()}")
        os.makedirs(d, exist_ok=True)
        return d


def build_helper(name: str) -> Tuple[Optional[str], str]:
    """Compile ``<name>.c`` (shipped beside this module) with ``cc -O2`` into a
    cache directory keyed by the source's hash.  Returns (path or None, note)."""
    src = os.path.join(HERE, f"{name}.c")
    cc = find_cc()
    if cc is None:
        return None, "no C compiler (cc) found"
    if not os.path.exists(src):
        return None, f"{src} is missing"
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    exe = os.path.join(_cache_dir(), f"{name}-{digest}")
    if os.path.exists(exe):
        return exe, f"{cc} -O2 (cached {exe})"
    tmp = f"{exe}.{os.getpid()}.tmp"
    res = subprocess.run([cc, "-O2", "-o", tmp, src], capture_output=True, text=True)
    if res.returncode != 0:
        return None, f"{cc} failed to build {name}.c: {res.stderr.strip()[:300]}"
    os.replace(tmp, exe)
    return exe, f"{cc} -O2 -> {exe}"


def run_floor(exe: str, mech: str, nfds: int, nready: int, s: Settings,
              writable: bool = False) -> Optional[float]:
    """Median seconds per zero-timeout wait of ``mech`` in C (on the layout of
    :func:`pipes_layout`, or of :func:`pipes_writable`)."""
    res = subprocess.run([exe, mech, str(nfds), str(nready),
                          str(max(s.min_time * 1000, 0.5)), str(max(s.repeat, 3))]
                         + (["writable"] if writable else []),
                         capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        return None
    return float(res.stdout.split()[0]) * 1e-9


# -- machine ------------------------------------------------------------------

def machine_info() -> Dict[str, Any]:
    import fastsel
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True).stdout.strip() or cpu
        except OSError:
            pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: Dict[str, Any] = {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "system": platform.system(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
        "fastsel_version": getattr(fastsel, "__version__", "?"),
        "fastsel_extension": getattr(sys.modules.get("fastsel._fastsel"), "__file__", None),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import uvloop
        info["uvloop_version"] = uvloop.__version__
    except ImportError:
        info["uvloop_version"] = None
    try:
        import matplotlib
        info["matplotlib_version"] = matplotlib.__version__
    except ImportError:
        info["matplotlib_version"] = None
    return info
