#!/usr/bin/env node
// Node.js `ws` peer for duplex's interoperability tests. `ws` comes from npm
// (tests/interop/package.json), installed by `scripts/setup.sh --tests` into
// .deps/node; set NODE_PATH=.deps/node/node_modules or pass --modules DIR.
//
//   node_peer.js server [--host H] [--port P] [--protocol P] [--allow-origin O]
//                       [--tls-cert F --tls-key F] [--lifetime S]
//       An echo server: each message goes back with its type; the peer's close
//       code and reason go back in the closing handshake. A text message
//       "close:CODE:REASON" makes the server close with CODE and REASON instead.
//       Prints "listening on ws[s]://HOST:PORT/" when ready; stops on SIGINT /
//       SIGTERM or after --lifetime seconds.
//
//   node_peer.js client --url URL [--refused-url URL] [--ca F] [--timeout S]
//       Runs the interop scenarios against an echo server at URL (which must
//       select the subprotocol "chat" when offered) and, with --refused-url,
//       checks that a handshake the server refuses (Origin not allowed) fails.
//       Prints "ok NAME" / "FAIL NAME: why" per scenario; exits 1 on failure.
'use strict';

const fs = require('fs');
const path = require('path');

function parseArgs(argv) {
  const out = { _: [], protocol: [], 'allow-origin': [] };
  for (let i = 0; i < argv.length; ++i) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const key = a.slice(2);
      const value = argv[++i];
      if (value === undefined) throw new Error(`${a} needs a value`);
      if (Array.isArray(out[key])) out[key].push(value);
      else out[key] = value;
    } else {
      out._.push(a);
    }
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const modules = args.modules ||
    path.join(__dirname, '..', '..', '..', '.deps', 'node', 'node_modules');
let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require(path.join(modules, 'ws'));
}

const TEXT = 'Gr\u00fc\u00dfe, \u4e16\u754c! \u20ac \u{1F600} \u00f1 \u05e9\u05dc\u05d5\u05dd';
const BINARY_SIZES = [0, 125, 126, 65535, 65536, 1 << 20];
const BURST = 1000;
const DENIED_ORIGIN = 'http://denied.invalid';

// Deterministic bytes (xorshift32), so a mismatch is reproducible.
function payload(size, seed) {
  const buf = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; ++i) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

// --- server ---------------------------------------------------------------------

function serve() {
  const host = args.host || '127.0.0.1';
  const port = Number(args.port || 0);
  const lifetime = Number(args.lifetime || 120);
  let server;
  const options = {
    maxPayload: 64 << 20,
    perMessageDeflate: false,
    handleProtocols: (offered) => {
      for (const p of args.protocol) if (offered.has(p)) return p;
      return false;
    },
  };
  if (args['allow-origin'].length) {
    // 403 as the other servers answer (ws's default refusal status is 401).
    options.verifyClient = (info, done) =>
      done(args['allow-origin'].includes(info.origin), 403, 'Forbidden');
  }
  let scheme = 'ws';
  if (args['tls-cert']) {
    const https = require('https');
    server = https.createServer({
      cert: fs.readFileSync(args['tls-cert']),
      key: fs.readFileSync(args['tls-key']),
    });
    scheme = 'wss';
  } else {
    const http = require('http');
    server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
  }
  const wss = new WebSocket.Server({ server, ...options });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        const text = data.toString('utf8');
        if (text.startsWith('close:')) {
          const rest = text.slice(6);
          const colon = rest.indexOf(':');
          ws.close(Number(rest.slice(0, colon)), rest.slice(colon + 1));
          return;
        }
      }
      ws.send(data, { binary: isBinary });
    });
    ws.on('error', () => {});
  });
  const stop = () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  setTimeout(() => { console.error('lifetime over, stopping'); stop(); }, lifetime * 1000).unref();
  server.listen(port, host, () => {
    console.log(`listening on ${scheme}://${host}:${server.address().port}/`);
  });
  // Keep the process alive until stopped (the listen handle does that).
}

// --- client ---------------------------------------------------------------------

class Failure extends Error {}

function check(cond, why) {
  if (!cond) throw new Failure(why);
}

// A connection whose messages are queued, so scenarios can await them in order.
function open(url, protocols, extra) {
  return new Promise((resolve, reject) => {
    const opts = { maxPayload: 64 << 20, perMessageDeflate: false, ...extra };
    if (args.ca) opts.ca = fs.readFileSync(args.ca);
    const ws = new WebSocket(url, protocols, opts);
    const queue = [];
    const waiters = [];
    ws.closeInfo = null;
    ws.on('message', (data, isBinary) => {
      const item = { data, isBinary };
      if (waiters.length) waiters.shift().resolve(item);
      else queue.push(item);
    });
    ws.on('close', (code, reason) => {
      ws.closeInfo = { code, reason: reason.toString('utf8') };
      for (const w of waiters.splice(0)) w.reject(new Failure(`closed with ${code}`));
    });
    ws.on('open', () => resolve(ws));
    ws.on('error', (e) => reject(e));
    ws.next = () => new Promise((res, rej) => {
      if (queue.length) res(queue.shift());
      else if (ws.closeInfo) rej(new Failure('closed'));
      else waiters.push({ resolve: res, reject: rej });
    });
  });
}

function closed(ws) {
  return new Promise((resolve) => {
    if (ws.closeInfo) resolve(ws.closeInfo);
    else ws.once('close', () => resolve(ws.closeInfo));
  });
}

async function expectText(ws, text) {
  const m = await ws.next();
  check(!m.isBinary, 'binary message, expected text');
  check(m.data.toString('utf8') === text, `text differs: ${m.data.length} bytes`);
}

const scenarios = {
  'text-utf8': async (url) => {
    const ws = await open(url, []);
    check(ws.protocol === '', `subprotocol '${ws.protocol}' not offered`);
    ws.send(TEXT);
    await expectText(ws, TEXT);
    ws.close();
    await closed(ws);
  },
  'binary-sizes': async (url) => {
    const ws = await open(url, []);
    for (const size of BINARY_SIZES) {
      const data = payload(size, size);
      ws.send(data, { binary: true });
      const m = await ws.next();
      check(m.isBinary, `size ${size}: text message, expected binary`);
      check(Buffer.compare(m.data, data) === 0, `size ${size}: payload differs (${m.data.length})`);
    }
    ws.close();
    await closed(ws);
  },
  'burst-1000': async (url) => {
    const ws = await open(url, []);
    for (let i = 0; i < BURST; ++i) ws.send(`burst ${i}`);
    for (let i = 0; i < BURST; ++i) await expectText(ws, `burst ${i}`);
    ws.close();
    await closed(ws);
  },
  'subprotocol': async (url) => {
    const ws = await open(url, ['superchat', 'chat']);
    check(ws.protocol === 'chat', `negotiated '${ws.protocol}', expected 'chat'`);
    ws.send('with chat');
    await expectText(ws, 'with chat');
    ws.close();
    await closed(ws);
  },
  'close-4000': async (url) => {
    const ws = await open(url, []);
    ws.send('before close');
    await expectText(ws, 'before close');
    ws.close(4000, 'bye from node');
    const info = await closed(ws);
    check(info.code === 4000, `server's close code ${info.code}`);
    check(info.reason === 'bye from node', `server's close reason '${info.reason}'`);
  },
  'refused-handshake': async (url) => {
    let ws;
    try {
      ws = await open(url, [], { origin: DENIED_ORIGIN });
    } catch (e) {
      const m = /Unexpected server response: (\d+)/.exec(e.message);
      check(m && Number(m[1]) >= 400 && Number(m[1]) < 500, `error: ${e.message}`);
      return;
    }
    ws.terminate();
    throw new Failure('the handshake succeeded');
  },
};

function withTimeout(promise, seconds) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Failure(`timed out after ${seconds} s`)), seconds * 1000);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function runClient() {
  const timeout = Number(args.timeout || 30);
  const names = Object.keys(scenarios).filter((n) => n !== 'refused-handshake' || args['refused-url']);
  let failed = 0;
  for (const name of names) {
    const url = name === 'refused-handshake' ? args['refused-url'] : args.url;
    try {
      await withTimeout(scenarios[name](url), timeout);
      console.log(`ok ${name}`);
    } catch (e) {
      ++failed;
      console.log(`FAIL ${name}: ${e.message}`);
    }
  }
  console.log(`${names.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

const command = args._[0];
if (command === 'server') {
  serve();
} else if (command === 'client') {
  if (!args.url) {
    console.error('client needs --url');
    process.exit(2);
  }
  runClient();
} else {
  console.error('usage: node_peer.js server|client [options] (see the header of this file)');
  process.exit(2);
}
