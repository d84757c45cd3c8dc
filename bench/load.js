// Load generator for make bench: one process, driven by bench/run.py with one JSON argument,
// prints one JSON result line. Two kinds of client (job.client):
//   "library": the ones our users run: AutobahnJS (npm autobahn, the same 22.11 release as the demo
//              page) and socket.io-client 4.
//   "lean":    the same wire protocol on a bare WebSocket (bench/wire.js), a few lines per message:
//              the same frames reach the server (AutobahnJS's own HELLO; socket.io's CONNECT with the
//              token as auth) for a fraction of the generator's CPU. socket.io-client costs the
//              generator more per session than socket.io costs the server, so with it the figure was
//              the generator's, not the server's (docs/benchmarks.md).
//   {"mode": "sessions", "target": T, "count": 1000, "inflight": 50}
//   {"mode": "fanout", "target": T, "subscribers": 100, "events": 2000, "window": 20, "topic": "..."}
//   {"mode": "idle", "target": T, "count": 1000, "inflight": 50}  -> prints {"ready": n}, closes on stdin end
//   {"mode": "reconnect", "url": ..., "fresh": 200, "stale": 20}  -> see reconnect() below
// T = {"kind": "wamp"|"socketio", "url": ..., "auth": {"type": "jwt", "sub", "roles"} | {"type": "static", "authid", "ticket"}}
// JWT auth mints a fresh token (unique jti, 300 s) per session before the clock starts; the
// secret comes from the environment (JWT_SECRET), never from the command line.
"use strict";
const crypto = require("crypto");
// AutobahnJS warns on every close when retries are off; that would cost the generator CPU.
const warn = console.warn;
console.warn = (...args) => { if (!/auto-reconnect disabled|connection closed/.test(String(args[0]))) warn(...args); };
const autobahn = require("autobahn");
const jwt = require("jsonwebtoken");
const { io } = require("socket.io-client");
const { leanWampClient, leanSocketioClient } = require("./lean");

const job = JSON.parse(process.argv[2]);
const key = process.env.JWT_SECRET ? crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8")) : null;

function credential(auth) {
  if (auth.type === "static") return auth.ticket;
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: auth.sub, roles: auth.roles, iat: now, exp: now + 300, jti: crypto.randomUUID() };
  return jwt.sign(claims, key, { algorithm: "HS256" });
}

// One client connection: open(onJoined, onClosed) -> handle with close() and subscribe/publish.
function wampClient(target, ticket, onJoined, onClosed) {
  const connection = new autobahn.Connection({
    url: target.url, realm: "realm1", authmethods: ["ticket"],
    authid: target.auth.sub || target.auth.authid, onchallenge: () => ticket,
    max_retries: 0, retry_if_unreachable: false,
  });
  let closedByUs = false;
  const handle = {
    close: () => { closedByUs = true; try { connection.close(); } catch (e) { /* already closed */ } },
    subscribe: (topic, onEvent) => handle.session.subscribe(topic, () => onEvent()),
    publish: (topic, i) => handle.session.publish(topic, [i], {}, { acknowledge: true }),
  };
  connection.onopen = (session) => { handle.session = session; onJoined(handle); };
  // An ABORT (a refused token) is reason "closed" too: only a close we asked for is no error.
  connection.onclose = (reason, details) => { onClosed(closedByUs ? null : `${reason} ${details.reason || ""}`); return true; };
  connection.open();
  return handle;
}

function socketioClient(target, token, onJoined, onClosed) {
  const socket = io(target.url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
  let joined = false, closedByUs = false;
  const handle = {
    close: () => { closedByUs = true; socket.disconnect(); },
    subscribe: (topic, onEvent) => new Promise((resolve, reject) => {
      socket.on("event", () => onEvent());
      socket.emit("subscribe", topic, (answer) => (answer.ok ? resolve() : reject(new Error(answer.error))));
    }),
    publish: (topic, i) => new Promise((resolve, reject) => {
      socket.emit("publish", topic, i, (answer) => (answer.ok ? resolve() : reject(new Error(answer.error))));
    }),
  };
  socket.on("connect", () => { joined = true; onJoined(handle); });
  socket.on("connect_error", (error) => onClosed(`connect_error ${error.message}`));
  socket.on("disconnect", (reason) => onClosed(closedByUs || !joined ? null : reason));
  return handle;
}

// BENCH_CLIENT=library in the environment: the library clients for a whole run (a cross-check of the lean ones).
const lean = (job.client || process.env.BENCH_CLIENT || "lean") === "lean";
const socketio = job.target && job.target.kind === "socketio";
const client = socketio ? (lean ? leanSocketioClient : socketioClient) : (lean ? leanWampClient : wampClient);

// Opens `count` sessions, `inflight` at a time; keep=false closes each once joined.
const sessionTimeout = job.session_timeout_s || 30;

function openSessions(count, inflight, keep) {
  const credentials = Array.from({ length: count }, () => credential(job.target.auth));
  const latencies = [], errors = [], closeErrors = [], handles = [];
  let started = 0, finished = 0;
  return new Promise((resolve) => {
    const cpu0 = process.cpuUsage(), t0 = process.hrtime.bigint();
    const done = () => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9, cpu = process.cpuUsage(cpu0);
      resolve({ seconds, latencies, errors, closeErrors, handles, cpu_percent: (100 * (cpu.user + cpu.system)) / 1e6 / seconds });
    };
    const startOne = () => {
      const ticket = credentials[started++], t = process.hrtime.bigint();
      let settled = false, joined = false;
      const settle = () => {
        if (settled) return;
        settled = true; clearTimeout(timer); finished++;
        if (started < count) startOne(); else if (finished === count) done();
      };
      const handle = client(job.target, ticket, () => {
        joined = true;
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (keep) { handles.push(handle); settle(); } else handle.close();
      }, (error) => {
        // After a join, a failed close is counted apart: the session was established. (Crossbar 26's
        // proxy workers sometimes answer a GOODBYE with ABORT wamp.error.authentication_failed; the
        // library clients report any close they asked for as clean.)
        if (error && !settled) (joined ? closeErrors : errors).push(error);
        if (!keep || error) settle();
      });
      // A session the server never answers is an error, not a hung run.
      const timer = setTimeout(() => {
        (joined ? closeErrors : errors).push(`no answer within ${sessionTimeout} s (${joined ? "closing" : "joining"})`);
        settle();
        (handle.destroy || handle.close)();
      }, 1000 * sessionTimeout);
    };
    for (let i = 0; i < Math.min(inflight, count); i++) startOne();
  });
}

function percentile(sorted, p) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null; }

async function sessions() {
  const r = await openSessions(job.count, job.inflight, false);
  const sorted = r.latencies.sort((a, b) => a - b);
  return { sessions: sorted.length, errors: r.errors.length, first_error: r.errors[0] || null, seconds: r.seconds,
    close_errors: r.closeErrors.length, first_close_error: r.closeErrors[0] || null,
    rate: sorted.length / r.seconds, p50_ms: percentile(sorted, 0.5), p99_ms: percentile(sorted, 0.99), generator_cpu_percent: r.cpu_percent };
}

async function fanout() {
  const opened = await openSessions(job.subscribers + 1, 50, true);
  if (opened.errors.length) throw new Error(`could not open the fan-out sessions: ${opened.errors[0]}`);
  const [publisher, ...subscribers] = opened.handles;
  const total = job.events * subscribers.length;
  let received = 0, finish;
  const allReceived = new Promise((resolve) => { finish = resolve; });
  await Promise.all(subscribers.map((s) => s.subscribe(job.topic, () => { if (++received === total) finish(); })));
  const cpu0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  let sent = 0;
  const sendNext = () => { if (sent < job.events) return publisher.publish(job.topic, sent++).then(sendNext); };
  await Promise.all(Array.from({ length: job.window }, sendNext));
  await allReceived;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9, cpu = process.cpuUsage(cpu0);
  opened.handles.forEach((h) => h.close());
  return { publishes: job.events, subscribers: subscribers.length, deliveries: received, seconds, rate: received / seconds,
    generator_cpu_percent: (100 * (cpu.user + cpu.system)) / 1e6 / seconds };
}

async function idle() {
  const opened = await openSessions(job.count, job.inflight, true);
  console.log(JSON.stringify({ ready: opened.handles.length, errors: opened.errors.length, first_error: opened.errors[0] || null }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  opened.handles.forEach((h) => h.close());
  return { closed: opened.handles.length };
}

// Router restart under load (tests/router/test_faults.py): `fresh` clients mint a new single-use
// token on every (re)connect, `stale` ones keep presenting their first token. Prints {"joined": n}
// once all joined, waits for a "restarted" line on stdin, then reports who came back and who was refused.
async function reconnect() {
  const clients = [];
  let onChange = () => {};
  const make = (stale) => {
    const state = { stale, joins: 0, refused: null };
    const first = credential({ type: "jwt", sub: `load${clients.length}`, roles: ["user"] });
    const connection = new autobahn.Connection({
      url: job.url, realm: "realm1", authmethods: ["ticket"], authid: `load${clients.length}`,
      onchallenge: () => (stale ? first : credential({ type: "jwt", sub: `load${clients.length}`, roles: ["user"] })),
      max_retries: -1, initial_retry_delay: 0.3, max_retry_delay: 1.5, retry_delay_growth: 1.5,
    });
    connection.onopen = () => { state.joins++; onChange(); };
    connection.onclose = (reason, details) => {
      if (details && details.reason && details.reason.startsWith("authenticator.error.")) state.refused = details.reason;
      onChange();
      return false;  // keep AutobahnJS's own retry behaviour
    };
    state.connection = connection;
    clients.push(state);
    connection.open();
  };
  for (let i = 0; i < job.fresh; i++) make(false);
  for (let i = 0; i < job.stale; i++) make(true);
  const until = (condition) => new Promise((resolve) => { onChange = () => { if (condition()) resolve(); }; onChange(); });
  await until(() => clients.every((c) => c.joins >= 1));
  console.log(JSON.stringify({ joined: clients.length }));
  await new Promise((resolve) => { process.stdin.once("data", resolve); });
  await until(() => clients.every((c) => (c.stale ? c.refused || c.joins >= 2 : c.joins >= 2)));
  const refused = {};
  clients.filter((c) => c.refused).forEach((c) => { refused[c.refused] = (refused[c.refused] || 0) + 1; });
  const result = { rejoined: clients.filter((c) => !c.stale && c.joins >= 2).length, refused,
    rejoined_stale: clients.filter((c) => c.stale && c.joins >= 2).length };
  clients.forEach((c) => { try { c.connection.close(); } catch (e) { /* already closed */ } });
  return result;
}

// Entitlement under load (tests/router/test_load.py): `users` sessions u0..uN-1 subscribe to the
// public feed, their chat room and their own notifications -- every other user to the feed by a
// wildcard ("app.public.") and to the room by a prefix -- and try three ways into other users'
// notifications: someone else's topic, the "app.user." prefix, the "app.user..notifications"
// wildcard. Each of those must be refused wamp.error.not_authorized (any other failure is counted
// apart: it is not a denial). Prints {"ready": ...}; on a stdin line, an admin publishes to the
// feed and to every user, one user per room chats; reports what was lost and what went to the
// wrong user.
async function entitlement() {
  const N = job.users, ROOMS = job.rooms;
  const user = (i) => `load${job.run}u${i}`;
  // Room names of one length: the prefix "app.chat.room007" matches that room and no other.
  const room = (r) => `app.chat.room${String(r).padStart(3, "0")}`;
  const sessions = new Array(N);
  const got = Array.from({ length: N }, () => ({ feed: 0, chat: 0, mine: 0, wrong: 0 }));
  const foreign = { allowed: 0, not_authorized: 0, other: 0, first_other: null };
  // Sessions the router (or the client library) closed after they joined, and failed publishes.
  const dropped = { sessions: 0, first: null }, publishFailures = { count: 0, first: null };
  let started = 0, joined = 0, finishing = false;
  const cpu0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  const open = (sub, roles) => new Promise((resolve, reject) => {
    let opened = false;
    const connection = new autobahn.Connection({ url: job.url, realm: "realm1", authmethods: ["ticket"], authid: sub,
      onchallenge: () => credential({ type: "jwt", sub, roles }), max_retries: 0 });
    connection.onopen = (session) => { opened = true; resolve(session); };
    connection.onclose = (reason, details) => {
      if (!opened) reject(new Error(`${sub}: ${reason} ${details.reason}`));
      else if (!finishing) { dropped.sessions++; dropped.first = dropped.first || `${sub}: ${reason} ${details.reason || ""} ${details.message || ""}`; }
      return true;
    };
    connection.open();
  });
  await new Promise((resolve, reject) => {
    const next = () => {
      if (started >= N) return;
      const i = started++;
      open(user(i), ["user"]).then(async (session) => {
        sessions[i] = session;
        const pattern = i % 2 === 1;  // every other user subscribes by patterns that must deliver too
        await session.subscribe(pattern ? "app.public." : "app.public.feed", () => { got[i].feed++; },
          pattern ? { match: "wildcard" } : {});
        await session.subscribe(room(i % ROOMS), () => { got[i].chat++; }, pattern ? { match: "prefix" } : {});
        await session.subscribe(`app.user.${user(i)}.notifications`, ([to]) => { if (to === user(i)) got[i].mine++; else got[i].wrong++; });
        const attempts = [[`app.user.${user((i + 1) % N)}.notifications`, {}],
          ["app.user.", { match: "prefix" }], ["app.user..notifications", { match: "wildcard" }]];
        for (const [topic, options] of attempts) {
          await session.subscribe(topic, () => { got[i].wrong++; }, options).then(() => { foreign.allowed++; }, (error) => {
            if (error && error.error === "wamp.error.not_authorized") foreign.not_authorized++;
            else { foreign.other++; foreign.first_other = foreign.first_other || `${topic}: ${error && (error.error || error)}`; }
          });
        }
        if (++joined === N) resolve(); else next();
      }).catch(reject);
    };
    for (let k = 0; k < 50; k++) next();
  });
  const openSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ ready: joined, open_seconds: openSeconds }));
  await new Promise((resolve) => { process.stdin.once("data", resolve); });
  const admin = await open(`load${job.run}admin`, ["admin"]);
  const t1 = process.hrtime.bigint();
  const publishes = [];
  const ack = { acknowledge: true, exclude_me: false };
  const attempt = async (publish) => {
    try { await publish(); } catch (error) { publishFailures.count++; publishFailures.first = publishFailures.first || String(error && (error.error || error.message || error)); }
  };
  const window = async (jobs) => { const queue = jobs.slice(); const worker = async () => { while (queue.length) await attempt(queue.shift()); }; await Promise.all(Array.from({ length: 50 }, worker)); };
  for (let e = 0; e < job.feed_events; e++) publishes.push(() => admin.publish("app.public.feed", [e], {}, ack));
  for (let i = 0; i < N; i++) publishes.push(() => admin.publish(`app.user.${user(i)}.notifications`, [user(i)], {}, ack));
  for (let r = 0; r < ROOMS; r++) for (let e = 0; e < job.chat_events; e++) publishes.push(() => sessions[r].publish(room(r), [e], {}, ack));
  await window(publishes);
  const perRoom = (r) => Math.floor(N / ROOMS) + (r < N % ROOMS ? 1 : 0);
  const expected = N * job.feed_events + N * job.chat_events + N;
  const delivered = () => got.reduce((sum, g) => sum + g.feed + g.chat + g.mine, 0);
  const deadline = Date.now() + 1000 * (job.settle_s || 30);
  while (delivered() < expected && Date.now() < deadline && !dropped.sessions) await new Promise((r) => setTimeout(r, 20));
  const seconds = Number(process.hrtime.bigint() - t1) / 1e9, cpu = process.cpuUsage(cpu0);
  const lost = got.reduce((sum, g, i) => sum + Math.max(0, job.feed_events - g.feed) + Math.max(0, job.chat_events - g.chat) + Math.max(0, 1 - g.mine), 0);
  const extra = got.reduce((sum, g) => sum + Math.max(0, g.feed - job.feed_events) + Math.max(0, g.chat - job.chat_events) + Math.max(0, g.mine - 1), 0);
  finishing = true;
  sessions.forEach((s) => { try { s.leave(); } catch (e) { /* dropped before */ } });
  return { sessions: N + 1, published: publishes.length, expected, delivered: delivered(), lost, duplicated: extra,
    cross_user: got.reduce((sum, g) => sum + g.wrong, 0), foreign_subscriptions_allowed: foreign.allowed,
    foreign_refused_not_authorized: foreign.not_authorized, foreign_failed_otherwise: foreign.other,
    first_other_failure: foreign.first_other, dropped_sessions: dropped.sessions, first_drop: dropped.first,
    failed_publishes: publishFailures.count, first_failed_publish: publishFailures.first,
    rooms: ROOMS, per_room: perRoom(0), publish_seconds: seconds, open_seconds: openSeconds,
    generator_cpu_seconds: (cpu.user + cpu.system) / 1e6 };
}

const modes = { sessions, fanout, idle, reconnect, entitlement };
const deadline = setTimeout(() => { console.error(`load.js: ${job.mode} did not finish within ${job.timeout_s || 120} s`); process.exit(2); }, 1000 * (job.timeout_s || 120));
deadline.unref();
modes[job.mode]().then((result) => { console.log(JSON.stringify(result)); process.exit(0); },
  (error) => { console.error(`load.js: ${error.stack || error}`); process.exit(1); });
