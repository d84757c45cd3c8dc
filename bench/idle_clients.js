// Idle authenticated sessions for bench/idle_sessions.py: one generator process of several. Each
// session is its own user ({prefix}{i}, a fresh JWT with role user, minted with JWT_SECRET from the
// environment) and subscribes to its own notifications topic, app.user.{authid}.notifications, on
// the lean WAMP client (bench/lean.js: a generator that holds 20,000 sessions must cost little).
//   node bench/idle_clients.js '{"url": "ws://127.0.0.1:PORT/ws", "prefix": "idle", "first": 0,
//                                "count": 5000, "inflight": 12, "source": "127.0.0.2", "ttl_s": 3600}'
// Prints {"ready": ...} once every session joined and subscribed (or failed), then on each "report"
// line on stdin one line: how many sessions have their event, events for someone else, duplicates,
// sessions the router closed, the wall-clock time of the last event. Exits when stdin ends.
"use strict";
const crypto = require("crypto");
const readline = require("readline");
const jwt = require("jsonwebtoken");
const { leanWampClient } = require("./lean");

const job = JSON.parse(process.argv[2]);
const key = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8"));
const now = Math.floor(Date.now() / 1000);
const users = Array.from({ length: job.count }, (_, i) => `${job.prefix}${job.first + i}`);
const tokens = users.map((sub) => jwt.sign({ sub, roles: ["user"], iat: now, exp: now + (job.ttl_s || 3600),
  jti: crypto.randomUUID() }, key, { algorithm: "HS256" }));
const received = new Uint32Array(job.count);
const state = { joined: 0, failed: 0, firstError: null, wrong: 0, dropped: 0, firstDrop: null, lastEventMs: null };
const target = { url: job.url, auth: {}, source: job.source };
const handles = [];
let started = 0, settled = 0, finishing = false;
const cpu0 = process.cpuUsage(), t0 = process.hrtime.bigint();
const cpuSeconds = () => { const c = process.cpuUsage(cpu0); return (c.user + c.system) / 1e6; };

function open(i) {
  const sub = users[i];
  let done = false, joined = false;
  const settle = (error) => {
    if (done) return;
    done = true; clearTimeout(timer);
    if (error) { state.failed++; state.firstError = state.firstError || `${sub}: ${error}`; } else state.joined++;
    if (++settled === job.count) ready(); else if (started < job.count) open(started++);
  };
  const handle = leanWampClient({ ...target, auth: { sub } }, tokens[i], (h) => {
    joined = true;
    h.subscribe(`app.user.${sub}.notifications`, (args) => {
      if (args && args[0] === sub) received[i]++; else state.wrong++;
      state.lastEventMs = Date.now();
    }).then(() => settle(null), (error) => settle(`subscribe refused: ${error.error || error.message}`));
  }, (error) => {
    if (!done) return settle(error || "closed before it joined");
    if (!finishing) { state.dropped++; state.firstDrop = state.firstDrop || `${sub}: ${error}`; }
  });
  handles[i] = handle;
  const timer = setTimeout(() => { settle(`no answer within 60 s (${joined ? "subscribing" : "joining"})`); handle.destroy(); }, 60000);
}

function ready() {
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ ready: state.joined, errors: state.failed, first_error: state.firstError,
    open_seconds: seconds, cpu_seconds: cpuSeconds(), done_ms: Date.now() }));
}

function report() {
  let withEvent = 0, duplicates = 0;
  for (const n of received) { if (n > 0) withEvent++; if (n > 1) duplicates += n - 1; }
  return { sessions: state.joined, with_event: withEvent, duplicates, wrong: state.wrong, dropped: state.dropped,
    first_drop: state.firstDrop, last_event_ms: state.lastEventMs, cpu_seconds: cpuSeconds() };
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => { if (line.trim() === "report") console.log(JSON.stringify(report())); });
lines.on("close", () => { finishing = true; process.exit(0); });
for (let k = 0; k < Math.min(job.inflight || 12, job.count); k++) open(started++);
