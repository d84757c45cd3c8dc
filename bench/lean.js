// Lean clients for the load generators (bench/load.js, bench/idle_clients.js): WAMP and socket.io
// on a bare WebSocket (bench/wire.js), the frames the library clients send, a few lines per message.
// Both take (target, credential, onJoined(handle), onClosed(error or null)) and return a handle:
// close(), destroy(), subscribe(topic, onEvent, options), publish(topic, i); a WAMP onEvent gets the
// event's args, a socket.io one nothing.
// target = {url, auth: {sub | authid}, source?: a local address to connect from (127.0.0.x)}.
"use strict";
const wire = require("./wire");

// AutobahnJS 22.11's HELLO roles, sent as they are: a smaller HELLO costs the router less (~10 %).
const AUTOBAHN_ROLES = {
  caller: { features: { caller_identification: true, call_canceling: true, progressive_call_results: true } },
  callee: { features: { caller_identification: true, pattern_based_registration: true, shared_registration: true,
    progressive_call_results: true, registration_revocation: true } },
  publisher: { features: { publisher_identification: true, subscriber_blackwhite_listing: true, publisher_exclusion: true } },
  subscriber: { features: { publisher_identification: true, pattern_based_subscription: true, subscription_revocation: true } },
};
const [HELLO, WELCOME, ABORT, CHALLENGE, AUTHENTICATE, GOODBYE, ERROR, PUBLISH, PUBLISHED, SUBSCRIBE, SUBSCRIBED, EVENT] =
  [1, 2, 3, 4, 5, 6, 8, 16, 17, 32, 33, 36];

function endpoint(url, path) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port), path: path || u.pathname + u.search };
}

// WAMP on a bare WebSocket: HELLO (AutobahnJS's) -> CHALLENGE -> AUTHENTICATE ticket -> WELCOME | ABORT;
// close = GOODBYE, then the closing handshake once the router's GOODBYE came (as AutobahnJS's connection.close()).
function leanWampClient(target, ticket, onJoined, onClosed) {
  const pending = new Map(), subscriptions = new Map();
  let requestId = 0, joined = false, error = null, closing = false;
  const send = (msg) => ws.send(JSON.stringify(msg));
  const request = (msg) => new Promise((resolve, reject) => { const id = ++requestId; msg[1] = id; pending.set(id, { resolve, reject }); send(msg); });
  const handle = {
    close: () => { if (closing) return; closing = true; if (joined) send([GOODBYE, {}, "wamp.close.normal"]); else ws.close(); },
    destroy: () => ws.destroy(),
    subscribe: (topic, onEvent, options = {}) => request([SUBSCRIBE, 0, options, topic]).then((id) => { subscriptions.set(id, onEvent); }),
    publish: (topic, i) => request([PUBLISH, 0, { acknowledge: true }, topic, [i]]),
  };
  const ws = wire.connect({ ...endpoint(target.url), localAddress: target.source, protocol: "wamp.2.json, wamp.2.msgpack" }, {
    open: () => send([HELLO, "realm1", { roles: AUTOBAHN_ROLES, authmethods: ["ticket"], authid: target.auth.sub || target.auth.authid }]),
    message: (data) => {
      const msg = JSON.parse(data);
      switch (msg[0]) {
        case EVENT: { const onEvent = subscriptions.get(msg[1]); if (onEvent) onEvent(msg[4]); break; }
        case PUBLISHED: case SUBSCRIBED: { const p = pending.get(msg[1]); pending.delete(msg[1]); p.resolve(msg[2]); break; }
        case ERROR: { const p = pending.get(msg[2]); pending.delete(msg[2]); p.reject(Object.assign(new Error(msg[4]), { error: msg[4] })); break; }
        case CHALLENGE: send([AUTHENTICATE, ticket, {}]); break;
        case WELCOME: joined = true; onJoined(handle); break;
        case ABORT: error = `closed ${msg[2]}`; ws.close(); break;
        case GOODBYE:
          if (!closing) { error = `closed ${msg[2]}`; send([GOODBYE, {}, "wamp.close.goodbye_and_out"]); }
          ws.close();
          break;
        default: break;
      }
    },
    close: (code, refusal) => onClosed(closing && !error ? null : error || (refusal ? `upgrade refused: ${refusal}` : `lost ${code}`)),
  });
  return handle;
}

// socket.io on a bare WebSocket (engine.io 4): the server's open packet "0{...}", then "40" + the auth
// payload; "40{sid}" is joined, "44{message}" refused. Pings ("2") are answered ("3"); events are
// "42[...]", acknowledgements "43<id>[...]". Close = "41" (disconnect), then the closing handshake,
// as socket.disconnect() does.
function leanSocketioClient(target, token, onJoined, onClosed) {
  const acks = new Map();
  let ackId = 0, joined = false, error = null, closedByUs = false, onEvent = null;
  const emit = (args) => new Promise((resolve, reject) => {
    const id = ackId++;
    acks.set(id, ([answer]) => (answer.ok ? resolve() : reject(new Error(answer.error))));
    ws.send(`42${id}${JSON.stringify(args)}`);
  });
  const handle = {
    close: () => { closedByUs = true; ws.close("41"); },
    destroy: () => ws.destroy(),
    subscribe: (topic, callback) => { onEvent = callback; return emit(["subscribe", topic]); },
    publish: (topic, i) => emit(["publish", topic, i]),
  };
  const ws = wire.connect({ ...endpoint(target.url, "/socket.io/?EIO=4&transport=websocket"), localAddress: target.source }, {
    open: () => {},
    message: (text) => {
      if (text === "2") ws.send("3");
      else if (text.startsWith("42")) { if (onEvent) onEvent(); }
      else if (text.startsWith("43")) {
        const bracket = text.indexOf("["), id = Number(text.slice(2, bracket)), ack = acks.get(id);
        if (ack) { acks.delete(id); ack(JSON.parse(text.slice(bracket))); }
      } else if (text[0] === "0") ws.send(`40${JSON.stringify({ token })}`);
      else if (text.startsWith("40")) { joined = true; onJoined(handle); }
      else if (text.startsWith("44")) { error = `connect_error ${JSON.parse(text.slice(2)).message}`; ws.close(); }
      else if (text.startsWith("41") || text === "1") { error = error || "io server disconnect"; ws.close(); }
    },
    close: (code, refusal) => onClosed(closedByUs && joined && !error ? null : error ||
      (refusal ? `upgrade refused: ${refusal}` : joined ? `transport close ${code}` : `closed before connect ${code}`)),
  });
  return handle;
}

module.exports = { leanWampClient, leanSocketioClient };
