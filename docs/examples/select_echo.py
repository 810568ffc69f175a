"""A select() echo server on fastsel, served to one client, typed for mypy --strict."""
from __future__ import annotations

import socket

import fastsel as select


def serve_once(message: bytes) -> bytes:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    client = socket.create_connection(server.getsockname(), timeout=5)
    sockets: list[socket.socket] = [server]
    echoed = b""
    try:
        client.sendall(message)
        while len(echoed) < len(message):
            readable, _, _ = select.select(sockets, [], [], 1.0)
            for sock in readable:
                if sock is server:
                    conn, _addr = server.accept()
                    conn.setblocking(True)
                    sockets.append(conn)
                else:
                    sock.sendall(sock.recv(4096))
            ready, _, _ = select.select([client], [], [], 0)
            if ready:
                echoed += client.recv(4096)
    finally:
        client.close()
        for sock in sockets:
            sock.close()
    return echoed


if __name__ == "__main__":
    print(serve_once(b"hello, fastsel"))
