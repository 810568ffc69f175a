"""Client side of test_seed_examples: start a seed server, drive it, report JSON.

    python seed_driver.py EXAMPLE.py {m|install} {netns|intercept}

Runs inside the network namespace of the test (netns: a private one made by
`unshare -rn`, so port 8080 is this run's alone).  Starts the server through
seed_runner.py -- under `python -m fastsel` (m) or with fastsel.install()
(install) -- connects real clients, then kills the server and prints what it
observed as one JSON object.  Everything is bounded in time.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
N_CLIENTS = 4
BIG = 10000          # larger than the examples' recv(4096)


def wait_port(port_of, proc: subprocess.Popen, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        port = port_of()
        if port:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("server did not listen in time")


def recv_until_eof(sock: socket.socket, limit: int) -> tuple:
    """(bytes received, how it ended): 'eof', 'reset' or 'timeout'."""
    buf = bytearray()
    try:
        while len(buf) <= limit:
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(buf), "eof"
            buf += chunk
        return bytes(buf), "overflow"
    except ConnectionResetError:
        return bytes(buf), "reset"
    except socket.timeout:
        return bytes(buf), "timeout"


def client(port: int, cid: int, echo: bool, out: dict) -> None:
    """Send a small and a large message, then half-close and wait for EOF."""
    marker = 65 + cid
    messages = [bytes([marker]) * 100, bytes([marker]) * BIG]
    record = {"sent": 0, "echoed_ok": None, "end": None}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for msg in messages:
                s.sendall(msg)
                record["sent"] += len(msg)
                if echo:
                    got = bytearray()
                    while len(got) < len(msg):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += chunk
                    record["echoed_ok"] = (record["echoed_ok"] is not False) and bytes(got) == msg
                time.sleep(0.02)
            s.shutdown(socket.SHUT_WR)
            rest, record["end"] = recv_until_eof(s, 1 << 20)
            record["after_close_bytes"] = len(rest)
    except OSError as exc:
        record["error"] = repr(exc)
    out[cid] = record


def main() -> None:
    example, mode, netmode = sys.argv[1:4]
    name = os.path.basename(example)
    tmp = tempfile.mkdtemp(prefix="seed-")
    portfile = os.path.join(tmp, "port")
    env = dict(os.environ, SEED_PROCESS_LOG=os.path.join(tmp, "process.log"))
    cmd = [sys.executable]
    if mode == "m":
        cmd += ["-m", "fastsel"]
    cmd.append(os.path.join(HERE, "seed_runner.py"))
    if mode == "install":
        cmd.append("--install")
    if netmode == "intercept":
        cmd += ["--intercept", portfile]
    cmd.append(example)
    if name == "poll_server.py" and netmode == "intercept":
        pass   # the runner's own bind to 8080 is intercepted too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=tmp)

    def port_of() -> int:
        if netmode == "netns":
            return 8080
        try:
            with open(portfile) as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    report: dict = {"example": name, "mode": mode, "net": netmode}
    timer = threading.Timer(60, proc.kill)     # hard bound on the server's life
    timer.start()
    try:
        port = wait_port(port_of, proc)
        report["port"] = port
        echo = name == "selectors_echo_server.py"
        # a client that connects and closes at once, without sending
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        results: dict = {}
        threads = [threading.Thread(target=client, args=(port, cid, echo, results))
                   for cid in range(N_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        report["clients"] = results
        # the server still serves a new client after all of that
        late: dict = {}
        client(port, N_CLIENTS, echo, late)
        report["late_client"] = late[N_CLIENTS]
        report["alive"] = proc.poll() is None
    except Exception as exc:  # noqa: BLE001 - reported to the test
        report["error"] = repr(exc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        timer.cancel()
    report["server_stdout"] = out.decode(errors="replace")
    report["server_stderr"] = err.decode(errors="replace")
    report["server_rc"] = proc.returncode
    try:
        with open(env["SEED_PROCESS_LOG"], "rb") as f:
            data = f.read()
        report["processed"] = {str(b): data.count(bytes([b])) for b in set(data)}
        report["processed_total"] = len(data)
    except OSError:
        report["processed"] = None
    print(json.dumps(report))


if __name__ == "__main__":
    main()
