"""fastsel demo: the classic select() echo server, served by fastsel.

A server on 127.0.0.1 (ephemeral port) runs the usual ``select.select()``
loop -- but with ``import fastsel as select`` -- while a few client threads
connect at once, send messages (some larger than one 4096-byte recv), read
their echoes back and close.  The server logs what happens and a summary says
which implementation served it.

    python demo/echo_demo.py [--clients N] [--impl fastsel|stdlib]

Exit status 0 when every client got exactly its bytes back.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from typing import Any

DEADLINE_S = 20.0      # the whole demo is bounded in time
RECV_SIZE = 4096


def load_impl(name: str) -> Any:
    if name == "stdlib":
        import select
        return select
    import fastsel
    if not hasattr(fastsel, "select"):
        sys.exit("fastsel was built without select() yet; try --impl stdlib")
    return fastsel


def describe(impl: Any) -> str:
    fn = impl.select
    if impl.__name__ == "fastsel":
        ext = sys.modules.get("fastsel._fastsel")
        where = (f"C extension {ext.__file__}" if impl.implementation == "c"
                 else "the platform's own select module: no C extension here")
        return (f"fastsel {impl.__version__} (select() is {fn.__module__}.{fn.__name__}, "
                f"{where})")
    return f"the stdlib (select() is {fn.__module__}.{fn.__name__})"


def client(cid: int, port: int, messages: list[bytes], results: dict) -> None:
    """Connect, send each message, read its echo back, close."""
    got_all = True
    sent = received = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for msg in messages:
                sock.sendall(msg)
                sent += len(msg)
                echo = bytearray()
                while len(echo) < len(msg):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    echo += chunk
                received += len(echo)
                got_all = got_all and bytes(echo) == msg
                time.sleep(0.01 * cid)   # interleave the clients a little
    except OSError as exc:
        got_all = False
        print(f"  client {cid}: error {exc!r}")
    results[cid] = (sent, received, got_all)


def serve(select: Any, server: socket.socket, n_clients: int, log: Any) -> dict:
    """The select() loop: accept, read, echo (buffered writes), close."""
    inputs = [server]
    pending: dict[socket.socket, bytearray] = {}   # bytes still to echo
    names: dict[socket.socket, str] = {}
    stats = {"accepted": 0, "read": 0, "echoed": 0, "closed": 0, "waits": 0}
    deadline = time.monotonic() + DEADLINE_S
    while stats["closed"] < n_clients:
        if time.monotonic() > deadline:
            raise TimeoutError("demo did not finish in time")
        writers = [s for s, buf in pending.items() if buf]
        readable, writable, _ = select.select(inputs, writers, [], 1.0)
        stats["waits"] += 1
        for sock in readable:
            if sock is server:
                conn, addr = server.accept()
                conn.setblocking(False)
                inputs.append(conn)
                pending[conn] = bytearray()
                names[conn] = f"{addr[0]}:{addr[1]}"
                stats["accepted"] += 1
                log(f"accepted  {names[conn]} (fd {conn.fileno()})")
                continue
            data = sock.recv(RECV_SIZE)
            if data:
                stats["read"] += len(data)
                pending[sock] += data
                log(f"read      {len(data):5d} bytes from {names[sock]}")
            else:
                log(f"closed    {names[sock]} (client hung up)")
                inputs.remove(sock)
                del pending[sock]
                sock.close()
                stats["closed"] += 1
        for sock in writable:
            buf = pending.get(sock)
            if not buf:
                continue
            n = sock.send(buf)
            del buf[:n]
            stats["echoed"] += n
            log(f"echoed    {n:5d} bytes to   {names[sock]}")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--impl", choices=["fastsel", "stdlib"], default="fastsel")
    parser.add_argument("--quiet", action="store_true", help="summary only")
    args = parser.parse_args(argv)

    select = load_impl(args.impl)
    t0 = time.monotonic()

    def log(line: str) -> None:
        if not args.quiet:
            print(f"  [{time.monotonic() - t0:6.3f}s] {line}")

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    print(f"python {sys.version.split()[0]}; implementation: {describe(select)}")
    print(f"select() server on 127.0.0.1:{port}, {args.clients} concurrent clients")

    # Each client sends a small line, a message larger than one recv and a
    # medium one; sizes differ per client so the log shows interleaving.
    plans = {
        cid: [f"hello from client {cid}\n".encode(),
              bytes([65 + cid % 26]) * (6000 + 1000 * cid),
              os.urandom(700 + 100 * cid)]
        for cid in range(args.clients)
    }
    results: dict[int, tuple[int, int, bool]] = {}
    threads = [threading.Thread(target=client, args=(cid, port, plan, results), daemon=True)
               for cid, plan in plans.items()]
    for t in threads:
        t.start()
    try:
        stats = serve(select, server, args.clients, log)
    finally:
        server.close()
    for t in threads:
        t.join(timeout=5)

    ok = len(results) == args.clients and all(r[2] for r in results.values())
    print()
    print(f"served by: {describe(select)}")
    print(f"connections accepted: {stats['accepted']}, closed: {stats['closed']}, "
          f"select() calls: {stats['waits']}")
    print(f"bytes read: {stats['read']}, bytes echoed: {stats['echoed']}")
    for cid in sorted(results):
        sent, received, good = results[cid]
        print(f"  client {cid}: sent {sent}, got back {received}, "
              f"{'intact' if good else 'MISMATCH'}")
    print(f"result: {'OK' if ok else 'FAILED'} in {time.monotonic() - t0:.2f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
