"""asyncio on fastsel's DefaultSelector, typed for mypy --strict."""
from __future__ import annotations

import asyncio


import fastsel


async def echo_once(payload: bytes) -> bytes:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(65536))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    writer.write_eof()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()
    await server.wait_closed()
    return reply


def main() -> None:
    loop = fastsel.new_event_loop()
    try:
        print(loop.run_until_complete(echo_once(b"over fastsel")))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
