"""Server side of test_seed_examples: run one seed example unchanged.

    python [-m fastsel] seed_runner.py [--install] [--intercept PORTFILE] EXAMPLE.py

Supplies only what the example's document leaves to the reader -- ``process``
for select_server.py (it appends the data to $SEED_PROCESS_LOG), the listening
non-blocking ``server`` on port 8080 for poll_server.py -- and prints one JSON
line saying which implementation ``select``/``selectors`` resolve to.
With --intercept, a bind to port 8080 is redirected to an ephemeral port on
127.0.0.1 whose number is written to PORTFILE (used when no private network
namespace is available).
"""
from __future__ import annotations

import json
import os
import runpy
import socket
import sys


def intercept_bind(portfile: str) -> None:
    real_bind = socket.socket.bind

    def bind(self: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
        if isinstance(address, tuple) and len(address) == 2 and address[1] == 8080:
            real_bind(self, ("127.0.0.1", 0))
            tmp = portfile + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(self.getsockname()[1]))
            os.replace(tmp, portfile)
            return
        real_bind(self, address)

    socket.socket.bind = bind  # type: ignore[method-assign]


def main() -> None:
    args = sys.argv[1:]
    install = "--install" in args
    if install:
        args.remove("--install")
    if args[0] == "--intercept":
        intercept_bind(args[1])
        args = args[2:]
    example = args[0]
    import fastsel
    if install:
        fastsel.install()
    import select
    import selectors
    report = {
        name: getattr(mod, name) is getattr(fastsel, name)
        for mod, names in ((select, ("select", "poll")), (selectors, ("DefaultSelector",)))
        for name in names if hasattr(fastsel, name)
    }
    print(json.dumps({"fastsel": report}), flush=True)

    g = {}
    name = os.path.basename(example)
    if name == "select_server.py":
        log = os.environ["SEED_PROCESS_LOG"]

        def process(data: bytes) -> None:
            with open(log, "ab") as f:
                f.write(data)
        g["process"] = process
    elif name == "poll_server.py":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 8080))
        server.listen()
        server.setblocking(False)
        g["server"] = server
    sys.argv = [example]
    runpy.run_path(example, init_globals=g, run_name="__main__")


if __name__ == "__main__":
    main()
