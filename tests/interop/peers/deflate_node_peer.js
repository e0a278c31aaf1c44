#!/usr/bin/env node
// Node `ws` with permessage-deflate, for duplex's compression interop tests.
// NODE_PATH must hold ws (.deps/node/node_modules, from scripts/setup.sh --tests).
//
//   deflate_node_peer.js server [--no-context-takeover] [--lifetime S]
//       An echo server with perMessageDeflate (threshold 0: every message
//       compressed): each message goes back with its type; a text message
//       "fragments:N:SIZE" makes it send jsonText(SIZE, N) as one text message
//       in N fragments. Prints "listening on ws://127.0.0.1:PORT/" when ready
//       and "extensions: ..." (the negotiated answer) per connection on stderr.
//
//   deflate_node_peer.js client --url URL [--no-context-takeover] [--timeout S]
//       Scenarios against an echo server with compression offered: checks the
//       negotiated extension, then echoes text, binary, fragmented and large
//       messages (16 MiB compressed with ws's default limits; 4 MiB sent in
//       64-byte fragments must come back in at most 65 frames). Prints "ok NAME" / "FAIL NAME: why"; exits 1 on any failure.
'use strict';

const WebSocket = require('ws');

const argv = process.argv.slice(2);
const mode = argv[0];
const args = { 'no-context-takeover': false, lifetime: 300, timeout: 60 };
for (let i = 1; i < argv.length; ++i) {
  const key = argv[i].replace(/^--/, '');
  if (key === 'no-context-takeover') args[key] = true;
  else args[key] = argv[++i];
}

// Text that compresses like JSON telemetry (the same as the C++ tests').
function jsonText(size, seed = 1) {
  let out = '';
  let i = seed;
  while (out.length < size) {
    out += `{"id":${i},"name":"sensor-${i % 17}","value":${(i * 7919) % 1000},"ok":true},`;
    ++i;
  }
  return out.slice(0, size);
}

// Incompressible bytes (xorshift32).
function noise(size, seed) {
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

function deflateOptions() {
  const nct = args['no-context-takeover'];
  return { threshold: 0, serverNoContextTakeover: nct, clientNoContextTakeover: nct };
}

// The negotiated permessage-deflate with its parameters ('' if none); ws's
// own `extensions` getter lists names only.
function describe(ws) {
  const pmd = ws._extensions['permessage-deflate'];
  if (!pmd) return '';
  return 'permessage-deflate' + Object.entries(pmd.params || {})
    .map(([k, v]) => (v === true ? `; ${k}` : `; ${k}=${v}`)).join('');
}

// --- server ---------------------------------------------------------------------

function serve() {
  const http = require('http');
  const server = http.createServer((req, res) => { res.writeHead(426); res.end(); });
  const wss = new WebSocket.Server({ server, maxPayload: 64 << 20,
                                     perMessageDeflate: deflateOptions() });
  wss.on('connection', (ws, req) => {
    console.error(`extensions: ${describe(ws)}`);
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        const text = data.toString('utf8');
        if (text.startsWith('fragments:')) {
          const [, n, size] = text.split(':');
          const body = jsonText(Number(size), Number(n));
          const step = Math.max(1, Math.floor(body.length / Number(n)));
          for (let at = 0; at < body.length; at += step) {
            const last = at + step >= body.length;
            ws.send(body.slice(at, at + step), { binary: false, fin: last, compress: true });
          }
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
  setTimeout(() => { console.error('lifetime over, stopping'); stop(); }, args.lifetime * 1000).unref();
  server.listen(0, '127.0.0.1', () => {
    console.log(`listening on ws://127.0.0.1:${server.address().port}/`);
  });
}

// --- client ---------------------------------------------------------------------

class Failure extends Error {}
function check(cond, why) { if (!cond) throw new Failure(why); }

// A connection whose messages are queued, so scenarios await them in order.
// `limits`: ws's options (maxPayload, maxFragments); {} keeps ws's defaults.
function open(url, limits = { maxPayload: 64 << 20 }) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ...limits, perMessageDeflate: deflateOptions() });
    const queue = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      if (waiters.length) waiters.shift().resolve(m); else queue.push(m);
    });
    ws.on('close', (code) => { for (const w of waiters.splice(0)) w.reject(new Error(`closed ${code}`)); });
    ws.on('error', reject);
    ws.on('open', () => resolve(ws));
    ws.next = () => new Promise((res, rej) => {
      if (queue.length) res(queue.shift()); else waiters.push({ resolve: res, reject: rej });
    });
    ws.done = () => new Promise((res) => { ws.on('close', res); ws.close(1000); });
  });
}

async function expectText(ws, text, what) {
  const m = await ws.next();
  check(!m.isBinary, `${what}: binary, expected text`);
  check(m.data.toString('utf8') === text, `${what}: text differs`);
}

const scenarios = {
  negotiation: async () => {
    const ws = await open(args.url);
    const ext = describe(ws);
    check(ext.startsWith('permessage-deflate'), `extensions '${ext}'`);
    if (args['no-context-takeover']) {
      check(ext.includes('server_no_context_takeover'), `extensions '${ext}'`);
      check(ext.includes('client_no_context_takeover'), `extensions '${ext}'`);
    }
    console.error(`negotiated: ${ext}`);
    await ws.done();
  },
  'text-messages': async () => {
    const ws = await open(args.url);
    for (let i = 0; i < 50; ++i) {
      const t = jsonText(2000 + i * 37, i);
      ws.send(t);
      await expectText(ws, t, `echo ${i}`);
    }
    const short = 'h\u00e9llo \u20ac \u{1F600}';
    ws.send(short);
    await expectText(ws, short, 'short text');
    await ws.done();
  },
  'binary-messages': async () => {
    const ws = await open(args.url);
    for (const size of [0, 1, 125, 126, 65535, 65536, 1 << 20]) {
      const data = noise(size, size);
      ws.send(data);
      const m = await ws.next();
      check(m.isBinary && Buffer.compare(m.data, data) === 0, `binary ${size} differs`);
    }
    await ws.done();
  },
  'fragmented-to-peer': async () => {
    const ws = await open(args.url);
    const text = jsonText(100000, 3);
    for (let at = 0; at < text.length; at += 7000)
      ws.send(text.slice(at, at + 7000), { binary: false, fin: at + 7000 >= text.length, compress: true });
    await expectText(ws, text, 'fragmented text');
    const data = noise(300000, 5);
    for (let at = 0; at < data.length; at += 65536)
      ws.send(data.subarray(at, at + 65536), { binary: true, fin: at + 65536 >= data.length, compress: true });
    const m = await ws.next();
    check(m.isBinary && Buffer.compare(m.data, data) === 0, 'fragmented binary differs');
    await ws.done();
  },
  'large-message-8MiB': async () => {
    const ws = await open(args.url);
    const text = jsonText(8 << 20, 9);
    ws.send(text);
    await expectText(ws, text, '8 MiB');
    await ws.done();
  },
  // ws's default limits (maxFragments 16,384, maxPayload 100 MiB): the echo of
  // a 16 MiB compressed message must come in few frames (it came in 16,389,
  // one per KiB of compressed input, and ws failed with 1008).
  'compressed-16MiB-default-limits': async () => {
    const ws = await open(args.url, {});
    const data = noise(16 << 20, 16);
    ws.send(data, { binary: true, compress: true });
    const m = await ws.next();
    check(m.isBinary && Buffer.compare(m.data, data) === 0, '16 MiB binary differs');
    const text = jsonText(16 << 20, 17);
    ws.send(text);
    await expectText(ws, text, '16 MiB text');
    await ws.done();
  },
  // Autobahn 9.3.1's shape: 4 MiB in 64-byte fragments (65,536 frames). The
  // echo must come back in pieces of at least 64 KiB: at most 65 frames, which
  // ws counts for us with maxFragments (1008 beyond).
  'fragments-64B-echo-in-few-frames': async () => {
    const ws = await open(args.url, { maxFragments: 65 });
    for (const compress of [false, true]) {
      const data = noise(4 << 20, compress ? 5 : 4);
      for (let at = 0; at < data.length; at += 64)
        ws.send(data.subarray(at, at + 64), { binary: true, fin: at + 64 >= data.length, compress });
      const m = await ws.next();
      check(m.isBinary && Buffer.compare(m.data, data) === 0, `4 MiB in 64 B fragments (compress ${compress}) differs`);
    }
    await ws.done();
  },
  'burst-1000': async () => {
    const ws = await open(args.url);
    for (let i = 0; i < 1000; ++i) ws.send(`burst ${i} ` + jsonText(100, i));
    for (let i = 0; i < 1000; ++i) await expectText(ws, `burst ${i} ` + jsonText(100, i), `burst ${i}`);
    await ws.done();
  },
};

function withTimeout(promise, seconds) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${seconds} s`)), seconds * 1000);
  })]).finally(() => clearTimeout(timer));
}

async function client() {
  let failed = 0;
  const names = Object.keys(scenarios);
  for (const name of names) {
    try {
      await withTimeout(scenarios[name](), Number(args.timeout));
      console.log(`ok ${name}`);
    } catch (e) {
      ++failed;
      console.log(`FAIL ${name}: ${e && e.message || e}`);
    }
  }
  console.log(`${names.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (mode === 'server') serve();
else if (mode === 'client') client();
else { console.error('usage: deflate_node_peer.js server|client ...'); process.exit(2); }
