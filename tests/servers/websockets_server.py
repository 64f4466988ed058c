"""The Python websockets peer of nova-interop.

Serves the behaviours in the nova-interop crate docs, chosen by request path,
on 127.0.0.1 only. Started by the harness (tests/src/peer.rs) as

    python3 -u -B -s websockets_server.py --lifetime-ms N [--cert F --key F]
        [--deflate [--server-no-context-takeover] [--client-no-context-takeover]
                   [--server-max-window-bits N]] --port N

with the pinned websockets on PYTHONPATH. The first stdout line is
`LISTENING 127.0.0.1:PORT`, or `BIND-FAILED <reason>` with exit status 75.
Exits when stdin closes or after the lifetime.
"""

import argparse
import asyncio
import http
import os
import ssl
import sys
import threading
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

# The constants in tests/src/behaviour.rs.
MAX_MESSAGE_SIZE = 64 << 20
FRAGMENTED_TEXT_PARTS = [b"frag-\xc3", b"\xa9-\xe2\x9c", b"\x93-end"]
FRAGMENTED_BINARY_PARTS = [b"\x00\x01\x02", b"\x80\xfe", b"\xff"]
PING_PAYLOAD = b"nova-ping"
PONG_CONFIRMATION = "pong:nova-ping"
DEFAULT_CLOSE_CODE = 1000
DEFAULT_STREAM_INTERVAL_MS = 10
CLOSE_TIMEOUT_S = 10
BIND_FAILED_EXIT = 75
PATHS = {"/echo", "/fragmented", "/ping", "/close", "/stream"}


def query_value(query, name, default):
    values = query.get(name)
    return values[0] if values else default


async def echo(ws):
    # `async for` ends quietly on a normal close; the handler catches the rest.
    async for message in ws:
        await ws.send(message)


async def echo_with(ws, side_task):
    """Echoes while `side_task` runs; cancels it when the connection ends."""
    task = asyncio.create_task(side_task)
    try:
        await echo(ws)
    finally:
        task.cancel()


async def confirm_pong(ws, pong_waiter):
    await pong_waiter
    await ws.send(PONG_CONFIRMATION)


async def tick(ws, interval):
    n = 0
    while True:
        # send() waits while the write buffer is full, so a client that does
        # not read stops the counter instead of growing a buffer.
        await ws.send(str(n))
        n += 1
        await asyncio.sleep(interval)


async def handler(ws):
    url = urlsplit(ws.request.path)
    query = parse_qs(url.query)
    try:
        if url.path == "/echo":
            await echo(ws)
        elif url.path == "/fragmented":
            # An iterable is sent as fragments; bytes with text=True go out as
            # a text message, which lets the boundaries split characters.
            # websockets adds an empty final continuation frame.
            await ws.send(FRAGMENTED_TEXT_PARTS, text=True)
            await ws.send(FRAGMENTED_BINARY_PARTS)
            await echo(ws)
        elif url.path == "/ping":
            pong_waiter = await ws.ping(PING_PAYLOAD)
            await echo_with(ws, confirm_pong(ws, pong_waiter))
        elif url.path == "/close":
            code = int(query_value(query, "code", DEFAULT_CLOSE_CODE))
            reason = query_value(query, "reason", "")
            await ws.recv()
            # Waits for the client's close frame, then closes TCP (the server
            # closes first), or gives up after close_timeout.
            await ws.close(code, reason)
        elif url.path == "/stream":
            interval_ms = max(1, int(query_value(query, "interval_ms", DEFAULT_STREAM_INTERVAL_MS)))
            await echo_with(ws, tick(ws, interval_ms / 1000))
    except ConnectionClosed:
        pass


def refuse_unknown_paths(connection, request):
    if urlsplit(request.path).path not in PATHS:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "unknown path\n")
    return None


def exit_when_stdin_closes():
    # The harness holds the other end: EOF means the test process is gone.
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lifetime-ms", type=int, default=120_000)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    # permessage-deflate: off unless --deflate; then these shape the answer.
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--server-no-context-takeover", action="store_true")
    parser.add_argument("--client-no-context-takeover", action="store_true")
    parser.add_argument("--server-max-window-bits", type=int)
    args = parser.parse_args()

    extensions = None
    if args.deflate:
        extensions = [
            ServerPerMessageDeflateFactory(
                server_no_context_takeover=args.server_no_context_takeover,
                client_no_context_takeover=args.client_no_context_takeover,
                server_max_window_bits=args.server_max_window_bits,
            )
        ]

    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    lifetime = threading.Timer(args.lifetime_ms / 1000, lambda: os._exit(0))
    lifetime.daemon = True
    lifetime.start()

    tls = None
    if args.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)

    try:
        server = await serve(
            handler,
            "127.0.0.1",
            args.port,
            ssl=tls,
            process_request=refuse_unknown_paths,
            compression=None,
            extensions=extensions,
            max_size=MAX_MESSAGE_SIZE,
            # Only the paths decide what is sent: no keepalive pings.
            ping_interval=None,
            close_timeout=CLOSE_TIMEOUT_S,
        )
    except OSError as error:
        print(f"BIND-FAILED {error}", flush=True)
        # Not sys.exit: interpreter shutdown would trip over the stdin thread.
        os._exit(BIND_FAILED_EXIT)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
