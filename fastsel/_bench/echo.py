"""The end-to-end case of ``python -m fastsel bench``: an asyncio echo server.

The server runs in a child process of its own (this file run as a script:
``python echo.py server IMPL VARIANT SAMPLE_EVERY``) on a fresh event loop
(stdlib selector, fastsel selector, or uvloop), so that its environment --
``MALLOC_MMAP_THRESHOLD_``, read by glibc once at start-up -- and its CPU
accounting are its own.  The load comes from another process: the C load
generator ``loadgen.c`` when a compiler exists, else a Python client (``python
echo.py client ...``, spreading the connections over worker processes), so
that the client is not what is measured.

Where the server's CPU goes, per request, over the client's session:

* kernel: the server process's system time (``getrusage(RUSAGE_SELF)``);
* selector: the thread CPU time (``time.thread_time()``, user + system) spent
  inside ``selector.select()``, read around every SAMPLE_EVERY-th call and
  scaled by calls / timed calls (one read costs a system call, so timing
  every call would cost more than the selector itself);
* Python: user time minus the selector's share: the event loop, the
  transports and the protocol.

The selector's figure includes the kernel time of its own ``epoll_wait()``,
which the kernel figure counts too; the Python figure is then low by that
much (see docs/performance.md).  The cost of the instrumentation (clock reads,
the wrapper call) is measured in the child and reported next to the split.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

HOST = "127.0.0.1"

# glibc's malloc serves requests at or above M_MMAP_THRESHOLD from mmap(); the
# threshold starts at 128 KiB and rises when a larger mmapped block is freed.
# asyncio's socket transports recv() into a fresh 256 KiB bytes object per
# read, shrink it to the bytes received (mremap) and free it (munmap): the
# freed block is small, the threshold stays, and every read costs an
# mmap + mremap + munmap and page faults.  Setting MALLOC_MMAP_THRESHOLD_ above
# 256 KiB keeps the buffer on the heap, but a set value also turns the
# adjustment of M_TRIM_THRESHOLD off, which stays at 128 KiB: freeing the
# shrunk buffer's tail then trims the heap (brk) and the next read grows it
# again.  "mmap+trim" raises both.
MALLOC_SETTINGS: Dict[str, Dict[str, str]] = {
    "default": {},
    "mmap-threshold": {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
    "mmap+trim": {"MALLOC_MMAP_THRESHOLD_": str(1 << 20),
                  "MALLOC_TRIM_THRESHOLD_": str(16 << 20)},
}
_MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                "MALLOC_MMAP_MAX_")


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _sock_echo(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    try:
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


async def _sock_accept_loop(loop: asyncio.AbstractEventLoop, lsock: socket.socket,
                            tasks: set) -> None:
    while True:
        conn, _ = await loop.sock_accept(lsock)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(_sock_echo(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class TimedSelector:
    """A selector whose ``select()`` adds the thread CPU time it takes, read
    around every ``every``-th call.  The other methods asyncio calls are the
    wrapped selector's own bound methods, so they cost nothing extra."""

    def __init__(self, sel: Any, every: int) -> None:
        self._select = sel.select
        self.register, self.unregister, self.modify = sel.register, sel.unregister, sel.modify
        self.get_key, self.get_map, self.close = sel.get_key, sel.get_map, sel.close
        self.every = max(1, every)
        self.calls = self.timed = self.events = 0
        self.cpu = 0.0

    def select(self, timeout: Optional[float] = None) -> Any:
        self.calls += 1
        if self.calls % self.every:
            ready = self._select(timeout)
        else:
            t0 = time.thread_time()
            ready = self._select(timeout)
            self.cpu += time.thread_time() - t0
            self.timed += 1
        self.events += len(ready)
        return ready

    def stats(self) -> Dict[str, float]:
        return {"calls": self.calls, "timed": self.timed, "events": self.events,
                "cpu": self.cpu}


def new_loop(impl: str, every: int = 1) -> "tuple[asyncio.AbstractEventLoop, Any]":
    """(a fresh event loop, its TimedSelector or None for uvloop)."""
    if impl == "uvloop":
        import uvloop
        return uvloop.new_event_loop(), None
    if impl == "stdlib":
        sel: Any = selectors.DefaultSelector()
    elif impl == "fastsel":
        import fastsel
        sel = fastsel.DefaultSelector()
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    timed = TimedSelector(sel, every)
    return asyncio.SelectorEventLoop(timed), timed  # type: ignore[arg-type]


def _instrument_costs() -> Dict[str, float]:
    """Seconds per clock read, and per wrapper call on the untimed path
    (CPU time of this thread, best of 5)."""
    class _Null:
        def select(self, timeout: Any = None) -> list:
            return []
        register = unregister = modify = get_key = get_map = close = select
    null, n = _Null(), 20000
    wrapped = TimedSelector(null, n + 1)
    best: Dict[str, float] = {}
    for _ in range(5):
        for name, fn in (("clock", time.thread_time), ("bare", null.select),
                         ("wrapped", wrapped.select)):
            t0 = time.thread_time()
            for _ in range(n):
                fn()
            t = (time.thread_time() - t0) / n
            best[name] = min(best.get(name, t), t)
    return {"clock_read_s": best["clock"],
            "wrapper_call_s": max(0.0, best["wrapped"] - best["bare"])}


def _snapshot(timed: Any) -> Dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    snap = {"user": ru.ru_utime, "sys": ru.ru_stime, "minflt": ru.ru_minflt}
    if timed is not None:
        snap.update(timed.stats())
    return snap


def _split(a: Dict[str, float], b: Dict[str, float], costs: Dict[str, float]) -> Dict[str, Any]:
    """The server's CPU between snapshots a and b, split as the module says."""
    user, system = b["user"] - a["user"], b["sys"] - a["sys"]
    res: Dict[str, Any] = {"server_user_s": user, "server_sys_s": system,
                           "server_cpu_s": user + system,
                           "server_page_faults": b["minflt"] - a["minflt"]}
    if "calls" not in a:
        return res
    calls, timed = b["calls"] - a["calls"], b["timed"] - a["timed"]
    sel_cpu = (b["cpu"] - a["cpu"]) * calls / timed if timed else None
    overhead = 2 * timed * costs["clock_read_s"] + calls * costs["wrapper_call_s"]
    res.update({
        "select_calls": calls, "select_timed": timed,
        "events_per_select": (b["events"] - a["events"]) / calls if calls else None,
        "selector_cpu_s": sel_cpu,
        "python_cpu_s": None if sel_cpu is None else max(0.0, user - sel_cpu),
        "instrumentation_s": overhead, **costs,
    })
    return res


async def _serve(loop: asyncio.AbstractEventLoop, variant: str, timed: Any) -> None:
    """Listen, print the port, then answer 'start' / 'stop' lines on stdin with
    CPU snapshots; 'stop' prints the split and ends the server."""
    tasks: set = set()
    server = acceptor = None
    if variant == "protocol":
        server = await loop.create_server(EchoProtocol, HOST, 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((HOST, 0))
        lsock.listen(1024)
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        acceptor = loop.create_task(_sock_accept_loop(loop, lsock, tasks))
    costs = _instrument_costs()
    done = loop.create_future()
    snaps: List[Dict[str, float]] = []
    pending = b""

    def on_stdin() -> None:
        nonlocal pending
        chunk = os.read(0, 4096)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            snaps.append(_snapshot(timed))
            if line.strip() == b"stop" and not done.done():
                done.set_result(None)
        if not chunk and not done.done():
            done.set_exception(RuntimeError("stdin closed before 'stop'"))

    loop.add_reader(0, on_stdin)
    _emit({"port": port, "pid": os.getpid()})
    try:
        await done
    finally:
        loop.remove_reader(0)
        if server is not None:
            server.close()
        if acceptor is not None:
            acceptor.cancel()
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(acceptor, *tasks, return_exceptions=True)
            lsock.close()
    _emit(_split(snaps[0], snaps[-1], costs))


def _emit(obj: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def server_main(argv: List[str]) -> int:
    """``python echo.py server IMPL VARIANT SAMPLE_EVERY``."""
    impl, variant, every = argv[0], argv[1], int(argv[2])
    loop, timed = new_loop(impl, every)
    try:
        loop.run_until_complete(_serve(loop, variant, timed))
    finally:
        loop.close()
    return 0


# -- the parent's side ----------------------------------------------------------

def _read_json_line(proc: subprocess.Popen, timeout: float) -> Dict[str, Any]:
    """One JSON line from the server's stdout, within ``timeout`` seconds."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError(f"echo server gave no answer within {timeout:.0f} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            err = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
            raise RuntimeError(f"echo server exited: {err.strip()[-500:]}")
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def server_env(malloc: str) -> Dict[str, str]:
    """The server child's environment: this process's, with the same fastsel
    first on PYTHONPATH and glibc's malloc variables as ``malloc`` says."""
    from fastsel._bench import runner
    env = runner.child_env(MALLOC_SETTINGS[malloc])
    for k in _MALLOC_VARS:
        if k not in MALLOC_SETTINGS[malloc]:
            env.pop(k, None)
    return env


def _client_cmd(loadgen: Optional[str], port: int, conns: int, size: int, warmup: float,
                duration: float) -> List[str]:
    tail = [str(conns), str(size), str(warmup), str(duration)]
    if loadgen is not None:
        return [loadgen, HOST, str(port)] + tail
    # run by path: the client needs only the stdlib, not fastsel
    return [sys.executable, os.path.abspath(__file__), "client", HOST, str(port)] + tail


def run_echo(impl: str, variant: str, size: int, conns: int, warmup: float,
             duration: float, loadgen: Optional[str], malloc: str = "default",
             sample_every: int = 1) -> Dict[str, Any]:
    """One session: requests/s, p50/p99 latency, server CPU per request and
    its split (kernel / Python / selector)."""
    srv = subprocess.Popen([sys.executable, os.path.abspath(__file__), "server", impl,
                            variant, str(sample_every)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=server_env(malloc))
    try:
        port = _read_json_line(srv, 30)["port"]
        srv.stdin.write(b"start\n")  # type: ignore[union-attr]
        srv.stdin.flush()  # type: ignore[union-attr]
        t0 = time.perf_counter()
        client = subprocess.run(_client_cmd(loadgen, port, conns, size, warmup, duration),
                                capture_output=True, text=True, timeout=warmup + duration + 30)
        wall = time.perf_counter() - t0
        srv.stdin.write(b"stop\n")  # type: ignore[union-attr]
        srv.stdin.flush()  # type: ignore[union-attr]
        res = _read_json_line(srv, 30)
        srv.wait(30)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"echo session timed out ({exc.cmd[0]})") from None
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
        for f in (srv.stdin, srv.stdout, srv.stderr):
            if f is not None:
                f.close()
    if client.returncode != 0:
        raise RuntimeError(f"echo client failed ({client.returncode}): {client.stderr.strip()}")
    res.update(json.loads(client.stdout.strip().splitlines()[-1]))
    res["server_wall_s"] = wall
    res["malloc"] = malloc
    res["rps"] = res["requests"] / res["seconds"] if res["seconds"] else 0.0
    total = res["total_requests"]
    for key in ("cpu", "user_cpu", "sys_cpu", "python_cpu", "selector_cpu"):
        src = {"cpu": "server_cpu_s", "user_cpu": "server_user_s", "sys_cpu": "server_sys_s",
               "python_cpu": "python_cpu_s", "selector_cpu": "selector_cpu_s"}[key]
        v = res.get(src)
        res[f"{key}_per_request_s"] = v / total if v is not None and total else None
    res["page_faults_per_request"] = res["server_page_faults"] / total if total else None
    return res


# -- the Python fallback client (no C compiler) -----------------------------

def _client_worker(host: str, port: int, conns: int, size: int, warmup: float,
                   duration: float, queue: Any) -> None:
    """One client process: ``conns`` connections in a closed loop."""
    sel = selectors.DefaultSelector()
    msg = b"x" * size
    state: Dict[int, list] = {}
    for _ in range(conns):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        state[s.fileno()] = [s, 0, 0, 0.0]       # sock, sent, received, started
        sel.register(s, selectors.EVENT_READ)
    t_start = time.perf_counter()
    t_measure, t_end = t_start + warmup, t_start + warmup + duration
    lat: List[float] = []
    total = 0

    def pump(st: list) -> None:
        s = st[0]
        while st[1] < size:
            try:
                st[1] += s.send(msg[st[1]:] if st[1] else msg)
            except BlockingIOError:
                sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
                return
        sel.modify(s, selectors.EVENT_READ)

    for st in state.values():
        st[3] = t_start
        pump(st)
    now = t_start
    error = None
    while now < t_end and error is None:
        ready = sel.select(0.1)
        now = time.perf_counter()
        for key, ev in ready:
            st = state[key.fd]
            if ev & selectors.EVENT_WRITE:
                pump(st)
            if not ev & selectors.EVENT_READ:
                continue
            try:
                data = st[0].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                error = "server closed a connection"
                break
            st[2] += len(data)
            if st[2] < size:
                continue
            total += 1
            if st[3] >= t_measure and now <= t_end:
                lat.append(now - st[3])
            st[1] = st[2] = 0
            st[3] = now
            pump(st)
    for st in state.values():
        st[0].close()
    sel.close()
    queue.put({"latencies": lat, "total": total + conns, "error": error})


def client_main(argv: List[str]) -> int:
    """``python echo.py client HOST PORT CONNS SIZE WARMUP DURATION [PROCS]``:
    the connections are spread over PROCS worker processes (default: one per
    core left over by the server)."""
    import multiprocessing
    host, port, conns, size, warmup, duration = (
        argv[0], int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]), float(argv[5]))
    procs = int(argv[6]) if len(argv) > 6 else max(1, min(4, (os.cpu_count() or 2) - 1))
    procs = max(1, min(procs, conns))
    ctx: Any = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    queue = ctx.Queue()
    workers = []
    for i in range(procs):
        share = conns // procs + (1 if i < conns % procs else 0)
        w = ctx.Process(target=_client_worker,
                        args=(host, port, share, size, warmup, duration, queue))
        w.start()
        workers.append(w)
    results = [queue.get(timeout=warmup + duration + 60) for _ in workers]
    for w in workers:
        w.join()
    errors = [r["error"] for r in results if r["error"]]
    if errors:
        print(errors[0], file=sys.stderr)
        return 1
    lat = sorted(x for r in results for x in r["latencies"])
    n = len(lat)
    print(json.dumps({"requests": n, "total_requests": sum(r["total"] for r in results),
                      "seconds": duration,
                      "p50_s": lat[n // 2] if n else -1, "p99_s": lat[int(n * 0.99)] if n else -1,
                      "client": f"python x{procs}"}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        sys.exit(client_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        sys.exit(server_main(sys.argv[2:]))
    sys.exit("usage: python echo.py client HOST PORT CONNS SIZE WARMUP DURATION [PROCS]\n"
             "       python echo.py server IMPL VARIANT SAMPLE_EVERY")
