#!/usr/bin/env node
// Node.js `ws` over a Unix domain socket, for duplex's interop tests. `ws`
// comes from npm (.deps/node, scripts/setup.sh --tests); set NODE_PATH.
//
//   unix_node_peer.js server --socket PATH
//       An echo server on an http.Server listening on PATH. The text message
//       "target?" is answered with the request target and Host header
//       ("TARGET HOST") instead of an echo. Prints "listening on PATH" when
//       ready; stops on SIGTERM / SIGINT (removing nothing: the test owns PATH).
//
//   unix_node_peer.js client --url ws+unix:///PATH:/TARGET [--timeout S]
//       Connects, sends a text and a 70,000-byte binary message, expects each
//       back unchanged, closes with 1000 and expects the echo of that code.
//       Prints "ok NAME" / "FAIL NAME: why"; exits 1 on any failure.
'use strict';

const http = require('http');
const WebSocket = require('ws');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function server() {
  const socketPath = arg('--socket');
  const httpServer = http.createServer((req, res) => {
    res.writeHead(426, {'Content-Type': 'text/plain'});
    res.end('WebSocket only\n');
  });
  const wss = new WebSocket.WebSocketServer({server: httpServer});
  wss.on('connection', (ws, req) => {
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data.toString() === 'target?') {
        ws.send(`${req.url} ${req.headers.host}`);
      } else {
        ws.send(data, {binary: isBinary});
      }
    });
  });
  httpServer.listen(socketPath, () => console.log(`listening on ${socketPath}`));
  const stop = () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    httpServer.close(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function client() {
  const url = arg('--url');
  const timeout = Number(arg('--timeout', '10')) * 1000;
  let failed = 0;
  const check = (name, ok, why) => {
    if (ok) {
      console.log(`ok ${name}`);
    } else {
      failed += 1;
      console.log(`FAIL ${name}: ${why}`);
    }
  };
  const ws = new WebSocket(url);
  const queue = [];
  let waiter = null;
  ws.on('message', (data, isBinary) => {
    queue.push({data, isBinary});
    if (waiter) waiter();
  });
  const next = () => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), timeout);
    const take = () => {
      if (!queue.length) return;
      clearTimeout(timer);
      waiter = null;
      resolve(queue.shift());
    };
    waiter = take;
    take();
  });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timed out connecting')), timeout);
      ws.on('open', () => { clearTimeout(timer); resolve(); });
      ws.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    check('open', true);
    ws.send('hello over a socket file');
    let m = await next();
    check('text echo', !m.isBinary && m.data.toString() === 'hello over a socket file',
          JSON.stringify(m.data.toString()));
    const big = Buffer.alloc(70000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    ws.send(big);
    m = await next();
    check('binary echo', m.isBinary && Buffer.compare(m.data, big) === 0,
          `${m.data.length} bytes, binary ${m.isBinary}`);
    const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
    ws.close(1000, 'done');
    const code = await Promise.race([closed, new Promise((r) => setTimeout(() => r('timeout'), timeout))]);
    check('close 1000 echoed', code === 1000, `closed with ${code}`);
  } catch (e) {
    check('scenario', false, e.message);
    ws.terminate();
  }
  process.exit(failed ? 1 : 0);
}

if (process.argv[2] === 'server') server();
else if (process.argv[2] === 'client') client();
else {
  console.error('usage: unix_node_peer.js server --socket PATH | client --url URL');
  process.exit(2);
}
