"""The end-to-end case of ``python -m fastsel bench``: an asyncio echo server.

The server runs in the benchmark's own process on a fresh event loop (stdlib
selector, fastsel selector, or uvloop); the load comes from a separate
process -- the C load generator ``loadgen.c`` when a compiler exists, else a
Python client (this file run as a script: ``python echo.py client ...``,
spreading the connections over worker processes) -- so that the
client is not what is measured.  Server CPU time comes from
``resource.getrusage(RUSAGE_SELF)`` around the client's whole session.
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

HOST = "127.0.0.1"


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


def new_loop(impl: str) -> asyncio.AbstractEventLoop:
    if impl == "stdlib":
        return asyncio.SelectorEventLoop(selectors.DefaultSelector())
    if impl == "fastsel":
        import fastsel
        return asyncio.SelectorEventLoop(fastsel.DefaultSelector())  # type: ignore[arg-type]
    if impl == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    raise ValueError(f"unknown implementation {impl!r}")


def _cpu() -> Tuple[float, float]:
    """(user, system) CPU seconds of this process: the server's."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


async def _session(loop: asyncio.AbstractEventLoop, variant: str,
                   client_cmd: List[str], timeout: float) -> Dict[str, Any]:
    tasks: set = set()
    if variant == "protocol":
        server = await loop.create_server(EchoProtocol, HOST, 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        acceptor = None
    else:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((HOST, 0))
        lsock.listen(1024)
        lsock.setblocking(False)
        port = lsock.getsockname()[1]
        server = None
        acceptor = loop.create_task(_sock_accept_loop(loop, lsock, tasks))
    cpu0, wall0 = _cpu(), time.perf_counter()
    proc = subprocess.Popen(client_cmd + [str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"echo client timed out after {timeout:.0f} s")
            await asyncio.sleep(0.02)
        cpu1, wall1 = _cpu(), time.perf_counter()
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except asyncio.TimeoutError:
                pass
        if acceptor is not None:
            acceptor.cancel()
            for t in list(tasks):
                t.cancel()
            await asyncio.gather(acceptor, *tasks, return_exceptions=True)
            lsock.close()
    if proc.returncode != 0:
        raise RuntimeError(f"echo client failed ({proc.returncode}): {err.strip()}")
    res = json.loads(out.strip().splitlines()[-1])
    res["server_user_s"] = cpu1[0] - cpu0[0]
    res["server_sys_s"] = cpu1[1] - cpu0[1]
    res["server_cpu_s"] = res["server_user_s"] + res["server_sys_s"]
    res["server_wall_s"] = wall1 - wall0
    return res


def run_echo(impl: str, variant: str, size: int, conns: int, warmup: float,
             duration: float, loadgen: Optional[str]) -> Dict[str, Any]:
    """One session: returns requests/s, p50/p99 latency, server CPU per request."""
    if loadgen is not None:
        cmd = [loadgen, HOST]
        tail = [str(conns), str(size), str(warmup), str(duration)]
        # loadgen takes the port second: HOST PORT CONNS ...
        client = _PortSecond(cmd, tail)
    else:
        # run by path: the client needs only the stdlib, not fastsel
        client = _PortSecond([sys.executable, os.path.abspath(__file__), "client", HOST],
                             [str(conns), str(size), str(warmup), str(duration)])
    loop = new_loop(impl)
    try:
        res = loop.run_until_complete(
            _session(loop, variant, client, timeout=warmup + duration + 30))
    finally:
        loop.close()
    res["rps"] = res["requests"] / res["seconds"] if res["seconds"] else 0.0
    total = res["total_requests"]
    res["cpu_per_request_s"] = res["server_cpu_s"] / total if total else None
    res["user_cpu_per_request_s"] = res["server_user_s"] / total if total else None
    return res


class _PortSecond(list):
    """A client command line whose port (known only once the server is up)
    goes between ``head`` and ``tail``: ``cmd + [port]`` builds it."""

    def __init__(self, head: List[str], tail: List[str]) -> None:
        super().__init__(head)
        self._tail = tail

    def __add__(self, other: List[str]) -> List[str]:  # type: ignore[override]
        return list(self) + list(other) + self._tail


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
    sys.exit("usage: python echo.py client HOST PORT CONNS SIZE WARMUP DURATION [PROCS]")
