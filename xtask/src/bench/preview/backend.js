// The benchmark's backend, run inside the sandbox and proxied by both Islet's preview edge and
// nginx: `node backend.js PORT PROCESSES` (more than 1: a `cluster` of that many). Node's own `http` module with keep-alive, so that the
// backend costs little next to the proxies (Python's http.server would be the bottleneck).
//
//   GET  /small   13-byte body
//   GET  /big     1 MiB body (one preallocated buffer)
//   POST /upload  reads the body, answers its length
//   GET  /ws      WebSocket (RFC 6455) echo of text and binary messages
'use strict';
const cluster = require('cluster');
const crypto = require('crypto');
const http = require('http');

const port = Number(process.argv[2] || 8000);
const workers = Number(process.argv[3] || 1);

if (workers > 1 && cluster.isPrimary) {
  // The primary hands accepted connections to the workers round-robin; with keep-alive that
  // happens once per connection, not per request.
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', () => process.exit(1));
} else {
  serve();
}

function serve() {
  const small = Buffer.from('Hello, world\n');
  const big = Buffer.alloc(1 << 20, 'x');

  const server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
    if (req.method === 'GET' && req.url === '/small') {
      send(res, small);
    } else if (req.method === 'GET' && req.url === '/big') {
      send(res, big);
    } else if (req.method === 'POST' && req.url === '/upload') {
      let length = 0;
      req.on('data', (chunk) => { length += chunk.length; });
      req.on('end', () => send(res, Buffer.from(String(length))));
    } else {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
    }
  });
  // Longer than both proxies keep idle upstream connections (Node's default is 5 s): a proxy
  // reusing a connection that the backend just closed would show up as an error.
  server.keepAliveTimeout = 120000;
  server.headersTimeout = 121000;
  server.on('upgrade', websocket);
  server.listen(port, '0.0.0.0');
}

function send(res, body) {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

function websocket(req, socket, head) {
  const key = req.headers['sec-websocket-key'];
  if (req.url !== '/ws' || !key) {
    socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const accept = crypto
    .createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  socket.setNoDelay(true);
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: ' + accept + '\r\n\r\n'
  );
  let pending = Buffer.alloc(0);
  const onData = (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      const frame = parse(pending);
      if (!frame) return;
      pending = pending.subarray(frame.size);
      if (frame.opcode === 0x8) {
        socket.end(encode(0x8, frame.payload.subarray(0, 2)));
        return;
      }
      if (frame.opcode === 0x9) socket.write(encode(0xa, frame.payload));
      else if (frame.opcode === 0x1 || frame.opcode === 0x2) {
        socket.write(encode(frame.opcode, frame.payload));
      }
      // Pongs and continuation frames are ignored: the benchmark sends single-frame messages.
    }
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
  if (head && head.length) onData(Buffer.from(head));
}

// One frame from the front of `buf` (client frames are masked), or null if incomplete.
function parse(buf) {
  if (buf.length < 2) return null;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let length = buf[1] & 0x7f;
  let at = 2;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    at = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const maskAt = at;
  if (masked) at += 4;
  if (buf.length < at + length) return null;
  const payload = Buffer.from(buf.subarray(at, at + length));
  if (masked) {
    for (let i = 0; i < length; i++) payload[i] ^= buf[maskAt + (i & 3)];
  }
  return { opcode, payload, size: at + length };
}

// A final, unmasked server frame.
function encode(opcode, payload) {
  const n = payload.length;
  let head;
  if (n < 126) {
    head = Buffer.from([0x80 | opcode, n]);
  } else if (n < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}
