"""A real HTTP CONNECT + SOCKS5 proxy on loopback, for Nova's proxy tests.

The proxy is pproxy (PyPI), pinned and installed by the harness; this
wrapper only gives it the harness's launch contract:

    python3 -u -B -s proxy_server.py --port N --lifetime-ms N [--auth USER:PASS]

One listener speaks both HTTP CONNECT and SOCKS5 (pproxy tells them apart
by the first byte). With --auth, both require the credentials (HTTP Basic,
RFC 1929), checked on every connection: pproxy's "authenticated IPs" cache
is turned off, or one good login would let every later connection from
127.0.0.1 in. Prints `LISTENING 127.0.0.1:PORT`, or `BIND-FAILED <reason>`
with exit status 75. Exits when stdin closes or after the lifetime.
Connections it makes go wherever the client asks (tests ask for loopback).
"""

import argparse
import asyncio
import os
import sys
import threading

import pproxy

BIND_FAILED_EXIT = 75


def exit_when_stdin_closes():
    # The harness holds the other end: EOF means the test process is gone.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def log(line):
    print(line, file=sys.stderr, flush=True)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime-ms", type=int, default=120_000)
    parser.add_argument("--auth")
    args = parser.parse_args()

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    lifetime = threading.Timer(args.lifetime_ms / 1000, lambda: os._exit(0))
    lifetime.daemon = True
    lifetime.start()

    uri = f"http+socks5://127.0.0.1:{args.port}/"
    if args.auth:
        uri += "#" + args.auth
    try:
        server = await pproxy.Server(uri).start_server({"rserver": [], "authtime": 0, "verbose": log})
    except OSError as error:
        print(f"BIND-FAILED {error}", flush=True)
        # Not sys.exit: interpreter shutdown would trip over the stdin thread.
        os._exit(BIND_FAILED_EXIT)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
