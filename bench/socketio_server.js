// The comparison: what many of our users run today — socket.io 4 with a jsonwebtoken middleware.
// Same policy shape as the router's: role-wide rooms (app.chat.*), per-user rooms
// (app.user.<sub>.status), deny otherwise. Prints "listening <port>" when ready.
"use strict";
const crypto = require("crypto");
const http = require("http");
const jwt = require("jsonwebtoken");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 0);
// A KeyObject, as jsonwebtoken's docs advise: a string secret is ~20x slower to verify.
const key = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8"));

function allowed(user, action, topic) {
  if (topic.startsWith("app.chat.")) return user.roles.includes("user") || user.roles.includes("admin");
  if (topic === `app.user.${user.sub}.status`) return true;
  return false;
}

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"], serveClient: false });
io.use((socket, next) => {
  jwt.verify(socket.handshake.auth.token, key, { algorithms: ["HS256"] }, (error, claims) => {
    if (error) return next(new Error(`invalid_token: ${error.message}`));
    socket.data.user = { sub: claims.sub, roles: claims.roles || [] };
    next();
  });
});
io.on("connection", (socket) => {
  socket.on("subscribe", (topic, ack) => {
    if (!allowed(socket.data.user, "subscribe", topic)) return ack({ error: "not_authorized" });
    socket.join(topic);
    ack({ ok: true });
  });
  socket.on("publish", (topic, payload, ack) => {
    if (!allowed(socket.data.user, "publish", topic)) return ack({ error: "not_authorized" });
    socket.to(topic).emit("event", topic, payload);
    ack({ ok: true });
  });
});
server.listen(port, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
