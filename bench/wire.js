// A WebSocket client with nothing but the wire: for load generators that must cost less than the
// server they measure. One TCP connection, the upgrade request written as one string, the 101
// answer checked by its status line only, text frames masked with one key per process, server
// frames parsed (text, close, ping; fragments joined). No Sec-WebSocket-Accept check, no
// extensions, no TLS: it talks to 127.0.0.1 servers under test, never to anything else.
// A full client (`ws`, as AutobahnJS and socket.io-client use) spends about as much CPU per
// connection as a lean server does, so a generator built on it measures itself (docs/benchmarks.md).
"use strict";
const crypto = require("crypto");
const net = require("net");

const MASK = crypto.randomBytes(4);
const KEY = crypto.randomBytes(16).toString("base64");

function frame(opcode, payload) {
  const length = payload.length;
  const headerLength = length < 126 ? 6 : length < 65536 ? 8 : 14;
  const out = Buffer.allocUnsafe(headerLength + length);
  out[0] = 0x80 | opcode;
  if (length < 126) out[1] = 0x80 | length;
  else if (length < 65536) { out[1] = 0x80 | 126; out.writeUInt16BE(length, 2); }
  else { out[1] = 0x80 | 127; out.writeUInt32BE(0, 2); out.writeUInt32BE(length, 6); }
  MASK.copy(out, headerLength - 4);
  for (let i = 0; i < length; i++) out[headerLength + i] = payload[i] ^ MASK[i & 3];
  return out;
}

// connect({host, port, path, protocol, localAddress}, {open(), message(text), close(code, refusal)})
//   -> {send(text), close(last), destroy()}; close() is called once, when the TCP connection is gone;
//   refusal is the server's status line when it did not switch protocols (code 1002).
function connect(options, on) {
  const socket = net.connect({ host: options.host, port: options.port, localAddress: options.localAddress });
  socket.setNoDelay(true);
  let buffer = null, upgraded = false, closed = false, closeSent = false, closeCode = 1006, refusal = null, fragments = null;
  const request = `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n` +
    (options.protocol ? `Sec-WebSocket-Protocol: ${options.protocol}\r\n` : "") + "\r\n";
  // The connection ends when TCP does: after a closing handshake the server closes first (RFC 6455 7.1.1).
  const finish = () => { if (!closed) { closed = true; socket.destroy(); on.close(closeCode, refusal); } };
  socket.on("connect", () => socket.write(request));
  socket.on("error", finish);
  socket.on("close", finish);
  socket.on("data", (chunk) => {
    buffer = buffer ? Buffer.concat([buffer, chunk]) : chunk;
    if (!upgraded) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      if (buffer.toString("latin1", 0, 12) !== "HTTP/1.1 101") {  // refused: keep the status line
        closeCode = 1002; refusal = buffer.toString("latin1", 0, Math.min(buffer.indexOf("\r\n"), 80));
        return finish();
      }
      upgraded = true;
      buffer = buffer.subarray(end + 4);
      on.open();
    }
    while (buffer && buffer.length >= 2 && !closed) {
      const opcode = buffer[0] & 0x0f, fin = buffer[0] & 0x80;
      let length = buffer[1] & 0x7f, offset = 2;
      if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); offset = 4; }
      else if (length === 127) { if (buffer.length < 10) return; length = buffer.readUInt32BE(6); offset = 10; }
      if (buffer.length < offset + length) return;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x8) {  // close: answer it (unless it answers ours), then wait for the server's FIN
        closeCode = length >= 2 ? payload.readUInt16BE(0) : 1005;
        if (!closeSent) { closeSent = true; socket.end(frame(0x8, payload.subarray(0, 2))); }
        buffer = null;
        return;
      }
      if (opcode === 0x9) { socket.write(frame(0xa, payload)); continue; }
      if (opcode === 0xa) continue;
      if (!fin || opcode === 0x0) {  // fragments: keep until the final one
        fragments = fragments ? Buffer.concat([fragments, payload]) : Buffer.from(payload);
        if (!fin) continue;
        on.message(fragments.toString("utf8"));
        fragments = null;
      } else on.message(payload.toString("utf8"));
    }
    if (buffer && buffer.length === 0) buffer = null;
  });
  return {
    send: (text) => { if (!closed && !closeSent) socket.write(frame(0x1, Buffer.from(text, "utf8"))); },
    // last: a text message sent with the close frame, in the same write.
    close: (last) => {
      if (closed || closeSent) return;
      if (!upgraded) return finish();
      closeSent = true;
      const close = frame(0x8, Buffer.from([0x03, 0xe8]));  // 1000, normal closure
      socket.write(last ? Buffer.concat([frame(0x1, Buffer.from(last, "utf8")), close]) : close);
    },
    destroy: finish,
  };
}

module.exports = { connect };
