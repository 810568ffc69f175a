"""The stdlib's own users of select/selectors, running on fastsel after install().

Each test installs fastsel, drives a real consumer (asyncio, subprocess,
socketserver, multiprocessing.connection, http.server) over real sockets,
pipes and processes, and checks that the object the consumer actually used
is fastsel's.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Iterator

import pytest

import fastsel

pytestmark = pytest.mark.filterwarnings(
    # ForkingTCPServer forks from its serving thread (3.12+ warns about that)
    "ignore:This process .* is multi-threaded:DeprecationWarning")


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    fastsel.install()
    try:
        yield
    finally:
        fastsel.uninstall()


def run_async(coro_fn: Any, timeout: float = 30) -> Any:
    """Run coro_fn() on a new default loop (made while fastsel is installed),
    bounded in time; returns (result, selector type the loop used)."""
    loop = asyncio.new_event_loop()
    try:
        selector_type = type(loop._selector)  # type: ignore[attr-defined]
        result = loop.run_until_complete(asyncio.wait_for(coro_fn(), timeout))
        return result, selector_type
    finally:
        loop.close()


# --- asyncio ----------------------------------------------------------------

def test_asyncio_streams_echo_many_connections() -> None:
    n_clients = 60
    payload = os.urandom(20000)     # several reads per message

    async def main() -> list:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def client(i: int) -> bool:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            msg = bytes([i]) + payload
            writer.write(msg)
            writer.write_eof()
            echoed = await reader.read()
            writer.close()
            return echoed == msg

        try:
            return await asyncio.gather(*(client(i) for i in range(n_clients)))
        finally:
            server.close()
            await server.wait_closed()

    results, selector_type = run_async(main)
    assert selector_type is fastsel.DefaultSelector
    assert results == [True] * n_clients


def test_asyncio_sock_methods() -> None:
    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        try:
            connect = loop.create_task(loop.sock_connect(client, listener.getsockname()))
            conn, _ = await loop.sock_accept(listener)
            await connect
            conn.setblocking(False)
            big = os.urandom(3 * 1024 * 1024)     # more than the socket buffers hold
            send = loop.create_task(loop.sock_sendall(client, big))
            got = bytearray()
            while len(got) < len(big):
                got += await loop.sock_recv(conn, 65536)
            await send
            await loop.sock_sendall(conn, b"reply")
            reply = await loop.sock_recv(client, 100)
            conn.close()
            return bytes(got) == big, reply, type(loop._selector)  # type: ignore[attr-defined]
        finally:
            client.close()
            listener.close()

    (same, reply, selector_type), _ = run_async(main)
    assert selector_type is fastsel.DefaultSelector
    assert same and reply == b"reply"


def test_asyncio_add_reader_writer_churn() -> None:
    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        pairs = [socket.socketpair() for _ in range(20)]
        fired: dict = {}
        try:
            for rounds in range(30):
                done = loop.create_future()
                expected = set()
                for i, (a, b) in enumerate(pairs):
                    if (i + rounds) % 3 == 0:
                        # writable at once
                        def on_write(i: int = i, a: socket.socket = a) -> None:
                            loop.remove_writer(a)
                            fired.setdefault(rounds, set()).add(("w", i))
                            if fired[rounds] >= expected and not done.done():
                                done.set_result(None)
                        loop.add_writer(a, on_write)
                        expected.add(("w", i))
                    elif (i + rounds) % 3 == 1:
                        def on_read(i: int = i, a: socket.socket = a) -> None:
                            a.recv(10)
                            loop.remove_reader(a)
                            fired.setdefault(rounds, set()).add(("r", i))
                            if fired[rounds] >= expected and not done.done():
                                done.set_result(None)
                        loop.add_reader(a, on_read)
                        expected.add(("r", i))
                        b.send(b"x")
                    else:
                        # registered then removed before the loop runs: must never fire
                        loop.add_reader(a, lambda: fired.setdefault("bad", set()).add(i))
                        loop.remove_reader(a)
                await asyncio.wait_for(done, 5)
                if fired[rounds] != expected:
                    return False, rounds, fired[rounds] ^ expected
            # everything was removed again
            return len(selector.get_map()) - 1, None, fired.get("bad")  # -1: the self-pipe
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    result, selector_type = run_async(main)
    assert selector_type is fastsel.DefaultSelector
    assert result == (0, None, None)


def test_asyncio_subprocess_pipes() -> None:
    big = os.urandom(2 * 1024 * 1024)
    code = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d[::-1]); " \
           "sys.stderr.write(str(len(d)))"

    async def main() -> tuple:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(big)
        return out, err, proc.returncode

    (out, err, rc), selector_type = run_async(main, timeout=60)
    assert selector_type is fastsel.DefaultSelector
    assert rc == 0 and out == big[::-1] and err == str(len(big)).encode()


def test_asyncio_timeouts_and_cancellation() -> None:
    async def main() -> tuple:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(loop.sock_recv(a, 10), 0.2)
                timed_out = False
            except asyncio.TimeoutError:
                timed_out = True
            waited = time.monotonic() - t0
            # the timed-out read left no registration behind
            after_timeout = selector.get_map().get(a.fileno())
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0.05)
            registered = selector.get_map().get(a.fileno()) is not None
            task.cancel()
            try:
                await task
                cancelled = False
            except asyncio.CancelledError:
                cancelled = True
            after_cancel = selector.get_map().get(a.fileno())
            # the socket still works after all that
            b.send(b"later")
            data = await asyncio.wait_for(loop.sock_recv(a, 10), 5)
            sleep_t0 = time.monotonic()
            await asyncio.sleep(0.1)            # a pure timer wait: select(timeout)
            slept = time.monotonic() - sleep_t0
            return timed_out, waited, after_timeout, registered, cancelled, after_cancel, data, slept
        finally:
            a.close()
            b.close()

    result, selector_type = run_async(main)
    assert selector_type is fastsel.DefaultSelector
    timed_out, waited, after_timeout, registered, cancelled, after_cancel, data, slept = result
    assert timed_out and 0.15 <= waited < 3
    assert after_timeout is None and registered and cancelled and after_cancel is None
    assert data == b"later"
    assert 0.09 <= slept < 3


# --- subprocess -------------------------------------------------------------

def test_subprocess_communicate_large_and_timeout() -> None:
    import subprocess
    assert subprocess._PopenSelector is fastsel.PollSelector  # type: ignore[attr-defined]
    big = os.urandom(3 * 1024 * 1024)    # far beyond the pipe buffers both ways
    code = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); " \
           "sys.stderr.buffer.write(d[:1000])"
    proc = subprocess.run([sys.executable, "-c", code], input=big, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout == big and proc.stderr == big[:1000]

    # a timeout while the selector waits for output that does not come
    p = subprocess.Popen([sys.executable, "-c", "import time; print('started', flush=True); "
                          "time.sleep(30)"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    with p:
        try:
            t0 = time.monotonic()
            with pytest.raises(subprocess.TimeoutExpired):
                p.communicate(b"x" * 100000, timeout=0.5)
            assert 0.4 <= time.monotonic() - t0 < 10
        finally:
            p.kill()
            out, _ = p.communicate(timeout=10)
    assert out.startswith(b"started")


# --- socketserver / http.server -----------------------------------------------

def _echo_handler() -> type:
    import socketserver

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(line.upper())
    return Echo


@pytest.mark.parametrize("kind", ["ThreadingTCPServer", "ForkingTCPServer"])
def test_socketserver_serve_forever_and_shutdown(kind: str) -> None:
    import socketserver
    if not hasattr(socketserver, kind):
        pytest.skip(f"socketserver.{kind} needs os.fork, which this platform lacks")
    assert socketserver._ServerSelector is fastsel.PollSelector  # type: ignore[attr-defined]
    server_cls = getattr(socketserver, kind)
    server = server_cls(("127.0.0.1", 0), _echo_handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        replies = []
        for i in range(5):
            with socket.create_connection(server.server_address, timeout=10) as c:
                c.sendall(b"hello %d\n" % i + b"y" * 5000 + b"\n")
                c.shutdown(socket.SHUT_WR)
                data = bytearray()
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                replies.append(bytes(data))
        assert replies == [b"HELLO %d\n" % i + b"Y" * 5000 + b"\n" for i in range(5)]
    finally:
        t0 = time.monotonic()
        server.shutdown()           # returns once serve_forever's select loop saw it
        thread.join(10)
        stuck = _reap_forked_children(server, 10)
        server.server_close()
    assert not thread.is_alive() and time.monotonic() - t0 < 5
    assert not stuck, f"forked handler processes still running after 10 s (killed): {stuck}"


def _reap_forked_children(server: Any, within: float) -> list:
    """ForkingTCPServer's handler processes, waited for at most ``within``
    seconds (its server_close() would wait for ever); the stuck ones are
    killed and returned, so that a hung child fails the test instead of
    hanging the run."""
    children = getattr(server, "active_children", None) or set()
    deadline = time.monotonic() + within
    while children and time.monotonic() < deadline:
        for pid in list(children):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0]
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)
        time.sleep(0.02)
    stuck = sorted(children)
    for pid in stuck:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        children.discard(pid)
    return stuck


def test_http_server_serves_a_request(tmp_path) -> None:
    import functools
    import http.server
    import socketserver
    import urllib.request
    assert socketserver._ServerSelector is fastsel.PollSelector  # type: ignore[attr-defined]
    (tmp_path / "hello.txt").write_bytes(b"served by fastsel\n" * 1000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d/hello.txt" % server.server_address[1]
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, body = resp.status, resp.read()
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert status == 200 and body == b"served by fastsel\n" * 1000


# --- multiprocessing.connection.wait ---------------------------------------

def test_multiprocessing_connection_wait() -> None:
    import multiprocessing.connection as mpc
    from multiprocessing import Pipe
    assert mpc._WaitSelector is fastsel.PollSelector  # type: ignore[attr-defined]
    pipes = [Pipe() for _ in range(6)]
    try:
        readers = [r for r, _ in pipes]
        t0 = time.monotonic()
        assert mpc.wait(readers, timeout=0.2) == []
        assert 0.15 <= time.monotonic() - t0 < 3
        for i in (1, 4):
            pipes[i][1].send({"n": i})
        ready = mpc.wait(readers, timeout=5)
        assert sorted(readers.index(r) for r in ready) == [1, 4]
        assert [r.recv() for r in ready] in ([{"n": 1}, {"n": 4}], [{"n": 4}, {"n": 1}])
        # a closed writer makes its reader ready (EOF)
        pipes[2][1].close()
        ready = mpc.wait(readers, timeout=5)
        assert ready == [readers[2]]
        # a real socket in the mix, and a wake-up from another thread
        a, b = socket.socketpair()
        try:
            threading.Timer(0.1, b.send, args=(b"!",)).start()
            assert mpc.wait([a, readers[0]], timeout=5) == [a]
        finally:
            a.close()
            b.close()
    finally:
        for r, w in pipes:
            r.close()
            w.close()
