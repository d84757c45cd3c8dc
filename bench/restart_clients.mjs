// Load generator for bench/restart.py: `count` clients of the JS kit (web/crossbar-jwt/crossbar-jwt.js,
// on npm autobahn 22.11.1 as under Node) stay logged in to one router while it restarts. Each
// client's getToken() mints a fresh token (unique jti) with jsonwebtoken and JWT_SECRET from the
// environment (never from the command line), as an application's token endpoint would.
//   argv[2]: {"url": ..., "count": 2500, "inflight": 100, "name": "g0", "kit": {<kit options>}, "timeout_s": 300}
//   RESTART_KIT_FILE (environment): another copy of the kit to run instead (an .mjs file), e.g. an older one
// Prints {"ready": n, ...} once all joined, then answers stdin lines:
//   status          -> {"connected": n, "rejoined": n}   (rejoined: joined at least twice)
//   report <ms>     -> every event since that Unix time in ms: {"events": [[t_ms, kind, detail], ...], "cpu_s": ...}
//                      kinds: attempt (a WebSocket opened for a connect), login (getToken() called: the
//                      router challenged), join, lost (a joined session ended), fail (an attempt that
//                      did not join; detail: "<reason> login" if getToken() was called in it, else "<reason> connect")
//   close           -> closes every client and exits
// 127.0.0.1 only; the whole run is bounded by timeout_s.
import crypto from "node:crypto";
import readline from "node:readline";
import autobahn from "autobahn";
import jwt from "jsonwebtoken";

// The kit under test: the repository's, or another version of it (bench/restart.py --kit-file).
const { connect } = await import(process.env.RESTART_KIT_FILE
  ? new URL(`file://${process.env.RESTART_KIT_FILE}`).href : "../web/crossbar-jwt/crossbar-jwt.js");

const job = JSON.parse(process.argv[2]);
if (!/^wss?:\/\/127\.0\.0\.1:/.test(job.url)) throw new Error("restart_clients.mjs: 127.0.0.1 only");
const key = crypto.createSecretKey(Buffer.from(process.env.JWT_SECRET, "utf8")); // a KeyObject: ~20x faster signing
const deadline = setTimeout(() => {
  console.error(`restart_clients.mjs: did not finish within ${job.timeout_s || 300} s`);
  process.exit(2);
}, 1000 * (job.timeout_s || 300));
deadline.unref();

// AutobahnJS warns at every close ("connection closed", "auto-reconnecting in ..."): thousands of
// lines would cost the generator CPU. Other warnings stay.
const warn = autobahn.log.warn;
autobahn.log.warn = (...args) => {
  if (!/^(connection closed|auto-reconnect)/.test(String(args[0]))) warn(...args);
};

const events = [];
const note = (kind, detail = null) => events.push([Date.now(), kind, detail]);

// Counts every connect attempt (AutobahnJS creates one transport per attempt, its own retries and the
// kit's alike). The kit constructs its Connection inside connect(): `building` says whose it is.
let building = null;
class CountingConnection extends autobahn.Connection {
  constructor(options) {
    super(options);
    this._benchClient = building;
  }
  _create_transport() {
    const c = this._benchClient;
    if (c) {
      c.attempt += 1;
      c.loginInAttempt = false;
      note("attempt");
    }
    return super._create_transport();
  }
}
const ab = { ...autobahn, Connection: CountingConnection };

const clients = [];
let joinedOnce = 0;
let onChange = () => {};

function open(i) {
  // attempt: connect attempts so far; ended: the last attempt whose end was noted. AutobahnJS 22.11.1
  // under Node closes a failed WebSocket twice (ws emits "error", then "close": lib/transport/websocket.js
  // calls transport.onclose for each), so the kit's onState may say "reconnecting" twice per attempt.
  const c = { sub: `${job.name}-${i}`, joins: 0, state: "connecting", loginInAttempt: false, kit: null,
    attempt: 0, ended: 0 };
  clients.push(c);
  building = c;
  c.kit = connect({
    ...job.kit,
    autobahn: ab,
    url: job.url,
    realm: "realm1",
    getToken: () => {
      c.loginInAttempt = true;
      note("login");
      const now = Math.floor(Date.now() / 1000);
      return jwt.sign({ sub: c.sub, roles: ["user"], iat: now, exp: now + 900, jti: crypto.randomUUID() }, key,
        { algorithm: "HS256" });
    },
    onSession: () => {
      c.joins += 1;
      if (c.joins === 1) joinedOnce += 1;
      note("join");
      onChange();
    },
    onState: (state, client) => {
      if ((state === "reconnecting" || state === "stopped") && c.ended < c.attempt) {
        c.ended = c.attempt;
        if (c.state === "connected") note("lost", client.reason);
        else note("fail", `${client.reason} ${c.loginInAttempt ? "login" : "connect"}`);
      }
      c.state = state;
    },
  });
  building = null;
}

// The first logins: `inflight` at a time, so the start is not itself a herd.
const t0 = Date.now();
await new Promise((resolve) => {
  let started = 0;
  const inflight = job.inflight || 100;
  onChange = () => {
    while (started < job.count && started - joinedOnce < inflight) open(started++);
    if (joinedOnce === job.count) resolve();
  };
  onChange();
});
onChange = () => {};
const cpu0 = process.cpuUsage();
console.log(JSON.stringify({ ready: clients.length, seconds: (Date.now() - t0) / 1000 }));

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const [command, arg] = line.trim().split(" ");
  if (command === "status") {
    console.log(JSON.stringify({ connected: clients.filter((c) => c.state === "connected").length,
      rejoined: clients.filter((c) => c.joins >= 2).length }));
  } else if (command === "report") {
    const since = Number(arg);
    const cpu = process.cpuUsage(cpu0);
    console.log(JSON.stringify({ events: events.filter((e) => e[0] >= since), cpu_s: (cpu.user + cpu.system) / 1e6 }));
  } else if (command === "close") {
    clients.forEach((c) => c.kit.close());
    setTimeout(() => process.exit(0), 200);
  }
});
lines.on("close", () => process.exit(0));
