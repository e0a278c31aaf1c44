// A topic server on Node `ws` (npm), the same semantics as `duplex
// pubsub-server`: a client's topic is its URL path, and each text or binary
// message a client sends goes to every other client of that path, type intact.
// The broadcast is the loop the ws README gives ("Server broadcast"), no
// compression. Prints "listening on ws://127.0.0.1:PORT/" when ready; SIGTERM
// or SIGINT stop it.
//   node fanout_ws.js [PORT]   (NODE_PATH: the node_modules holding ws)
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const rooms = new Map(); // path -> Set of sockets
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.argv[2] || 0),
  perMessageDeflate: false,
});
wss.on('connection', (ws, req) => {
  const path = new URL(req.url, 'ws://localhost').pathname;
  let room = rooms.get(path);
  if (!room) rooms.set(path, (room = new Set()));
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const client of room)
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
  });
  ws.on('close', () => {
    room.delete(ws);
    if (room.size === 0) rooms.delete(path);
  });
});
wss.on('listening', () => console.log(`listening on ws://127.0.0.1:${wss.address().port}/`));
const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
