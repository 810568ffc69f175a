"""A selectors echo server with callbacks in key.data, typed for mypy --strict."""
from __future__ import annotations

import socket
from typing import Callable

import fastsel as selectors

Callback = Callable[[socket.socket, int], None]


def run(message: bytes, clients: int = 3) -> list[bytes]:
    sel = selectors.DefaultSelector()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)

    def accept(sock: socket.socket, mask: int) -> None:
        conn, _addr = sock.accept()
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ, data=handle)

    def handle(conn: socket.socket, mask: int) -> None:
        data = conn.recv(4096)
        if data:
            conn.sendall(data)
        else:
            sel.unregister(conn)
            conn.close()

    sel.register(server, selectors.EVENT_READ, data=accept)
    peers = [socket.create_connection(server.getsockname(), timeout=5) for _ in range(clients)]
    for peer in peers:
        peer.sendall(message)
        peer.setblocking(False)
    replies = [b""] * clients
    try:
        for _ in range(1000):
            if all(len(r) == len(message) for r in replies):
                break
            for key, mask in sel.select(timeout=0.1):
                callback: Callback = key.data
                callback(key.fileobj, mask)  # type: ignore[arg-type]
            for i, peer in enumerate(peers):
                try:
                    replies[i] += peer.recv(4096)
                except BlockingIOError:
                    pass
    finally:
        for peer in peers:
            peer.close()
        for key in list(sel.get_map().values()):
            sel.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        sel.close()
    return replies


if __name__ == "__main__":
    print(run(b"ping"))
