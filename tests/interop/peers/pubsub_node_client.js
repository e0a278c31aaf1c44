// A pub/sub test client on Node `ws` (npm), driven by lines on stdin; the same
// commands and output as pubsub_py_client.py.
//   node pubsub_node_client.js URL
'use strict';
const WebSocket = require('ws');
const readline = require('readline');

const ws = new WebSocket(process.argv[2]);
const stats = {};
const bad = [];
ws.on('open', () => console.log('open'));
ws.on('message', (data) => {
  const m = data.toString();
  const colon = m.indexOf(':');
  const prefix = m.slice(0, colon);
  const s = stats[prefix] || (stats[prefix] = { count: 0, last: -1, gaps: 0 });
  s.count++;
  if (prefix === 'probe') return;
  const i = Number(m.slice(colon + 1));
  if (i <= s.last) bad.push(m);
  else if (i !== s.last + 1) s.gaps += i - s.last - 1;
  s.last = Math.max(s.last, i);
});
ws.on('close', () => console.log('closed'));
ws.on('error', (e) => console.log('error ' + e.message));

async function send(prefix, n, delay) {
  for (let i = 0; i < n; i++) {
    if (ws.readyState !== WebSocket.OPEN) break;
    ws.send(`${prefix}:${i}`);
    if (delay) await new Promise((r) => setTimeout(r, delay));
    else if (i % 100 === 99) await new Promise((r) => setImmediate(r));
  }
  console.log(`sent ${prefix}`);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  const w = line.trim().split(/\s+/);
  if (w[0] === 'quit') {
    ws.close();
    process.exit(0);
  } else if (w[0] === 'send') {
    await send(w[1], Number(w[2]), Number(w[3]));
  } else if (w[0] === 'report') {
    console.log(JSON.stringify({ stats, bad: bad.slice(0, 10) }));
  }
});
rl.on('close', () => process.exit(0));
