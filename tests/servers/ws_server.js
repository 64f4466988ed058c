// The Node ws peer of nova-interop.
//
// Serves the behaviours in the nova-interop crate docs, chosen by request
// path, on 127.0.0.1 only. Started by the harness (tests/src/peer.rs) as
//
//     node ws_server.js --lifetime-ms N [--cert F --key F]
//         [--deflate [--server-no-context-takeover] [--client-no-context-takeover]
//                    [--server-max-window-bits N]] --port N
//
// with the pinned ws on NODE_PATH. The first stdout line is
// `LISTENING 127.0.0.1:PORT`, or `BIND-FAILED <reason>` with exit status 75.
// Exits when stdin closes or after the lifetime.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer, WebSocket } = require('ws');

// The constants in tests/src/behaviour.rs.
const MAX_MESSAGE_SIZE = 64 * 1024 * 1024;
const FRAGMENTED_TEXT_PARTS = [
  Buffer.from([0x66, 0x72, 0x61, 0x67, 0x2d, 0xc3]), // "frag-" + first byte of é
  Buffer.from([0xa9, 0x2d, 0xe2, 0x9c]), // rest of é, "-", first bytes of ✓
  Buffer.from([0x93, 0x2d, 0x65, 0x6e, 0x64]), // last byte of ✓, "-end"
];
const FRAGMENTED_BINARY_PARTS = [
  Buffer.from([0x00, 0x01, 0x02]),
  Buffer.from([0x80, 0xfe]),
  Buffer.from([0xff]),
];
const PING_PAYLOAD = 'nova-ping';
const PONG_CONFIRMATION = 'pong:nova-ping';
const DEFAULT_CLOSE_CODE = 1000;
const DEFAULT_STREAM_INTERVAL_MS = 10;
const CLOSE_TIMEOUT_MS = 10000;
const BIND_FAILED_EXIT = 75;
const PATHS = new Set(['/echo', '/fragmented', '/ping', '/close', '/stream']);

// ws buffers whatever send() is given; above this the peer stops reading
// (echo) or skips ticks (stream) until the socket drains.
const HIGH_WATER = 1024 * 1024;

function parseArgs(argv) {
  const args = { port: null, lifetimeMs: 120000, cert: null, key: null, deflate: null };
  const deflate = () => {
    args.deflate = args.deflate ?? {};
    return args.deflate;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case '--port': args.port = Number(value); break;
      case '--lifetime-ms': args.lifetimeMs = Number(value); break;
      case '--cert': args.cert = value; break;
      case '--key': args.key = value; break;
      // The flags take no value: step back so the loop's `+= 2` lands on the next one.
      case '--deflate': deflate(); i -= 1; break;
      case '--server-no-context-takeover': deflate().serverNoContextTakeover = true; i -= 1; break;
      case '--client-no-context-takeover': deflate().clientNoContextTakeover = true; i -= 1; break;
      case '--server-max-window-bits': deflate().serverMaxWindowBits = Number(value); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!Number.isInteger(args.port)) throw new Error('--port N is required');
  return args;
}

// Sends, pausing the reads of `ws` while too much is buffered.
function send(ws, data, options) {
  if (ws.readyState !== WebSocket.OPEN) return;
  ws.send(data, options, (error) => {
    if (!error && ws.isPaused && ws.bufferedAmount < HIGH_WATER) ws.resume();
  });
  if (ws.bufferedAmount >= HIGH_WATER && !ws.isPaused) ws.pause();
}

function echo(ws) {
  ws.on('message', (data, isBinary) => send(ws, data, { binary: isBinary }));
}

const behaviours = {
  '/echo': (ws) => echo(ws),
  '/fragmented': (ws) => {
    // fin: false makes ws send the next parts as continuation frames.
    FRAGMENTED_TEXT_PARTS.forEach((part, i) =>
      ws.send(part, { binary: false, fin: i === FRAGMENTED_TEXT_PARTS.length - 1 }));
    FRAGMENTED_BINARY_PARTS.forEach((part, i) =>
      ws.send(part, { binary: true, fin: i === FRAGMENTED_BINARY_PARTS.length - 1 }));
    echo(ws);
  },
  '/ping': (ws) => {
    ws.on('pong', (data) => {
      if (data.toString() === PING_PAYLOAD) send(ws, PONG_CONFIRMATION, { binary: false });
    });
    ws.ping(PING_PAYLOAD);
    echo(ws);
  },
  '/close': (ws, query) => {
    const code = Number(query.get('code') ?? DEFAULT_CLOSE_CODE);
    const reason = query.get('reason') ?? '';
    ws.once('message', () => {
      try {
        // ws answers the client's close frame by ending the TCP connection.
        ws.close(code, reason);
      } catch (error) {
        // An invalid code or an over-long reason.
        console.error(`close(${code}, ${JSON.stringify(reason)}) failed: ${error.message}`);
        ws.terminate();
      }
    });
  },
  '/stream': (ws, query) => {
    const interval = Math.max(1, Number(query.get('interval_ms') ?? DEFAULT_STREAM_INTERVAL_MS) || 1);
    let n = 0;
    const timer = setInterval(() => {
      // Skipping (not counting) keeps the sequence gapless under backpressure.
      if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount >= HIGH_WATER) return;
      ws.send(String(n));
      n += 1;
    }, interval);
    ws.on('close', () => clearInterval(timer));
    echo(ws);
  },
};

function main() {
  const args = parseArgs(process.argv.slice(2));

  // The harness holds the other end of stdin: EOF means the test is gone.
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
  setTimeout(() => process.exit(0), args.lifetimeMs);

  const server = args.cert
    ? https.createServer({ cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
    : http.createServer();
  server.on('request', (request, response) => {
    response.writeHead(426, { 'Content-Type': 'text/plain' });
    response.end('a WebSocket upgrade is required\n');
  });
  server.on('clientError', (error, socket) => socket.destroy());

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MESSAGE_SIZE,
    // permessage-deflate only with --deflate; threshold 0 compresses every
    // message, so small ones are exercised too.
    perMessageDeflate: args.deflate ? { ...args.deflate, threshold: 0 } : false,
    closeTimeout: CLOSE_TIMEOUT_MS,
  });
  server.on('upgrade', (request, socket, head) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(request.url, 'http://127.0.0.1');
    const behaviour = behaviours[url.pathname];
    if (!PATHS.has(url.pathname) || !behaviour) {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunknown path\n');
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      ws.on('error', () => {});
      behaviour(ws, url.searchParams);
    });
  });

  let listening = false;
  server.on('error', (error) => {
    if (listening) {
      console.error(`server error: ${error.message}`);
      return;
    }
    process.stdout.write(`BIND-FAILED ${error.message}\n`, () => process.exit(BIND_FAILED_EXIT));
  });
  server.listen(args.port, '127.0.0.1', () => {
    listening = true;
    process.stdout.write(`LISTENING 127.0.0.1:${server.address().port}\n`);
  });
}

main();
