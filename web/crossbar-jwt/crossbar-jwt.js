// crossbar-jwt client kit for the browser (and Node): one WAMP connection that stays logged in.
// The npm package crossbar-jwt (this folder: package.json; types in crossbar-jwt.d.ts; README.md).
//
//   <script src="node_modules/autobahn-browser/autobahn.min.js"></script>   (the global `autobahn`)
//   <script type="module">
//     import { connect } from "./node_modules/crossbar-jwt/crossbar-jwt.js";  // or "crossbar-jwt" with a bundler
//     const client = connect({
//       url: "wss://example.org/ws",
//       realm: "realm1",
//       getToken: async () => (await (await fetch("/auth/token")).json()).token,  // a fresh JWT per call
//       onSession: (session, details) => {       // every join: the first and each reconnect
//         session.subscribe("app.chat.lobby", ([text]) => console.log(text));
//       },
//       onState: (state, client) => console.log(state, client.reason, client.message),
//     });
//     // later: client.close()
//   </script>
//
// What it does for you:
// - getToken() on every connect and every reconnect (the WAMP ticket challenge), never a stale token;
//   without getToken the session is anonymous. getToken() returning null means "no user" (logged
//   out): the kit stops (reason NO_TOKEN) instead of asking again; a getToken() that throws is
//   retried with the backoff below.
// - Before the token's exp it calls getToken() again and authenticator.refresh(token): the same
//   session goes on, subscriptions and all. It times this by the router's clock (`expires_in` in
//   WELCOME and in refresh's answer), so a clock that is off by minutes does not matter. A failed refresh is retried; if none succeeds the router
//   ends the session at exp (+ grace) with `authenticator.error.expired` and the kit reconnects.
// - Reconnects, with a fresh token, after the router ends the session for expiry, after a lost
//   connection or a router restart, and after a login refused for a passing reason (store_unavailable,
//   a token already expired or not yet valid, getToken() failing), with full jitter: retry n waits a
//   random time between 0 and a cap that starts at 0.5 s and doubles up to 10 s (retryDelay below;
//   measured in docs/benchmarks.md#restart-with-many-clients). The kit schedules every retry itself
//   (AutobahnJS's own backoff has no full jitter, starts over at every WebSocket that opens, and
//   under Node counts a failed connect twice).
// - Stops, and says why, on a final reason (FINAL_REASONS below): reconnecting would either fail the
//   same way with every fresh token, or undo what the router decided (revocation).
// - state: "connecting" → "connected" ⇄ "reconnecting" → "stopped"; client.reason / client.message are
//   the exact WAMP reason URI and message that ended the last session or attempt (null while connected).
//
// API: connect(options) → client
//   options: url, realm, getToken?, onSession?(session, details), onState?(state, client),
//     onRefresh?(exp), refreshAheadSeconds (10), initialRetryDelay (0.5 s), maxRetryDelay (10 s),
//     retryDelayGrowth (2), retryDelayJitter (1: full jitter), finalReasons (FINAL_REASONS), autobahn
//     (the AutobahnJS module; default: the global `autobahn`)
//   client: state, reason, message, session (the joined autobahn.Session or null), refreshes,
//     connection (the autobahn.Connection underneath), subscribe(topic, handler, options), close()
// client.subscribe(topic, handler, {recover, onRecovered, onError, options}) → subscription: the kit
//   subscribes on every join (the first and each reconnect) by itself. With recover: true (a topic
//   that keeps history) the handler gets every event once, in order, also those published while the
//   page was disconnected or reloading: see "Recovering subscriptions" below.
//   No timer of the kit is longer than MAX_TIMER_SECONDS (2^31 − 1 ms, ~24.8 days; setTimeout fires
//   at once beyond it): a longer-lived token is refreshed after that long.
// Details: docs/clients.md.

// The wire names: authenticator/contract.py (tests/unit/test_contract.py keeps these in step).
const REFRESH_PROCEDURE = "authenticator.refresh";
export const HISTORY_PROCEDURE = "authenticator.history";
export const PRESENCE_PROCEDURE = "authenticator.presence";
// Join/leave events of topic T: on PRESENCE_TOPIC_PREFIX + T, kwargs {event: "join"|"leave", authid}.
export const PRESENCE_TOPIC_PREFIX = "authenticator.presence.";
// The EVENT detail the router sets on each live event of a topic that keeps history: its position.
export const EVENT_POSITION_DETAIL = "x_position";
export const EXPIRED = "authenticator.error.expired";
export const REFRESH_REFUSED = "authenticator.error.refresh_refused";
// getToken() threw (or returned something that is not a token); the kit retries with backoff.
export const TOKEN_UNAVAILABLE = "crossbar-jwt.token_unavailable";
// getToken() returned null: there is no user to log in (logged out); the kit stops.
export const NO_TOKEN = "crossbar-jwt.no_token";

// Reasons after which the kit stops instead of reconnecting. Revoked: the router ended the user's
// sessions on purpose, and a freshly minted token would log them straight back in (revocation
// covers tokens issued until then). The others are refused again with every fresh token from the
// same issuer: a wrong key, claim, role or configuration needs a person, and a loop would only
// hammer the router. Not final: expired, not_yet_valid, replayed (a fresh token fixes them),
// unknown_key (a key rotated at the identity provider: the router fetches its JWKS again, at most
// once per min_refetch_seconds), store_unavailable and internal_error (passing), refresh_refused
// (the token's roles changed: reconnecting with it gives the session the new roles, so the kit
// does exactly that).
export const FINAL_REASONS = new Set([
  NO_TOKEN,
  "authenticator.error.revoked",
  "authenticator.error.unknown_role",
  "authenticator.error.invalid_claim",
  "authenticator.error.missing_claim",
  "authenticator.error.origin_not_allowed",
  "authenticator.error.missing_token",
  "authenticator.error.malformed_token",
  "authenticator.error.algorithm_not_allowed",
  "authenticator.error.invalid_signature",
  "authenticator.error.invalid_issuer",
  "authenticator.error.invalid_audience",
  "authenticator.error.wrong_realm",
  "authenticator.error.lifetime_too_long",
  "authenticator.error.grant_not_allowed",
  "wamp.error.no_such_realm",
  "wamp.error.no_such_role",
  "wamp.error.no_auth_method",
]);

// The longest timer the kit sets, in seconds: 2^31 − 1 ms (about 24.8 days). setTimeout fires at once
// for a longer delay (and for Infinity or NaN), in browsers and in Node: a token living 30 days
// would be refreshed in a tight loop. A longer delay waits this long instead; a long-lived token
// is then refreshed early, which is harmless. The Python kits use the same bound.
const MAX_TIMER_MS = 2 ** 31 - 1;
export const MAX_TIMER_SECONDS = MAX_TIMER_MS / 1000;

// setTimeout for `seconds`, within [0, MAX_TIMER_SECONDS]: every timer of the kit goes through here.
// NaN (a delay nobody can compute) waits the longest, never 0 s.
function later(fn, seconds) {
  const ms = seconds * 1000;
  return setTimeout(fn, Number.isNaN(ms) ? MAX_TIMER_MS : Math.min(MAX_TIMER_MS, Math.max(0, ms)));
}

const DEFAULTS = {
  refreshAheadSeconds: 10,
  // Full jitter, a cap from 0.5 s doubling to 10 s: after a restart under 5,000 clients the router
  // admitted logins at its limit with the fewest connections dropped at its listen queue: all back
  // 10.5 s after it was ready, 322 dropped (the former 1.5 s cap, ±10 %: 11.4 s, 9,913 dropped; a
  // 20 s cap: 18.7 s), for ~2x the connects refused while it was down (19,697 against 10,559).
  // docs/benchmarks.md#restart-with-many-clients.
  initialRetryDelay: 0.5,
  maxRetryDelay: 10,
  retryDelayGrowth: 2,
  retryDelayJitter: 1,
  finalReasons: FINAL_REASONS,
  historyPageSize: 100, // events per history call (the router gives at most 1000)
};

// Seconds from now until the refresh, from the seconds the router says the token has left
// (`expires_in`, on the router's clock): `ahead` before exp, ahead = min(refreshAheadSeconds, a
// third of what is left), never under 0.5 s. A token already past exp (admitted within the
// leeway) is refreshed at once. A lifetime that is not a number (no usable answer) is not refreshed
// ahead: the router ends the session at exp and the kit reconnects with a fresh token.
export function refreshDelay(expiresIn, refreshAheadSeconds = DEFAULTS.refreshAheadSeconds) {
  if (Number.isNaN(expiresIn)) return MAX_TIMER_SECONDS;
  const ahead = Math.min(refreshAheadSeconds, Math.max(expiresIn, 0) / 3);
  return Math.max(0.5, expiresIn - ahead);
}

// Seconds before retry `attempt` (0, 1, ...), drawn at random below a cap: the cap is `initial`
// growing `growth`× per attempt to at most `maximum`, and the delay is uniform in
// [(1 − jitter) × cap, cap]. jitter 1 (the default) is "full jitter", [0, cap]: clients that lost
// the same router spread over the whole window instead of arriving together, and the first retry
// after a lost connection or an expiry is on average initial / 2 away. jitter 0 is exactly the cap.
// `rand` in [0, 1). Within [0, maximum] for any attempt count and never NaN: growth ** attempt is
// Infinity after some 1,000 attempts of 2× (hours of outage), and 0 × Infinity is NaN, which
// setTimeout takes as "at once" (authenticator/kit/common.py, Backoff.delay: the same rule).
export function retryDelay(attempt, { initial = DEFAULTS.initialRetryDelay, maximum = DEFAULTS.maxRetryDelay,
  growth = DEFAULTS.retryDelayGrowth, jitter = DEFAULTS.retryDelayJitter } = {}, rand = Math.random) {
  const grown = initial > 0 ? initial * growth ** attempt : 0;
  const cap = Number.isFinite(grown) ? Math.min(maximum, grown) : maximum;
  const delay = Math.min(maximum, cap * (1 - Math.min(1, Math.max(0, jitter)) * rand()));
  if (Number.isFinite(delay)) return Math.max(0, delay);
  return Number.isFinite(maximum) ? maximum : DEFAULTS.maxRetryDelay; // NaN options: never "at once"
}

// `expires_in` from the router, else (an older router) exp against this machine's clock.
function secondsLeft(answer) {
  if (answer && Number.isFinite(answer.expires_in)) return answer.expires_in;
  return answer.exp - Date.now() / 1000;
}

class NoToken extends Error {}

const RECONNECT_DISABLED = "auto-reconnect disabled!";

// AutobahnJS follows every onclose that returns true with console.warn("auto-reconnect disabled!",
// false, true) (autobahn 22.11.1, Connection.open: the transport's onclose). The kit always returns
// true: it reconnects with its own backoff, or it stops with the reason in client.reason (close(),
// a final reason). So the
// line came at every login of the demo page and every reconnect, and told of a failure that was not
// one. The kit drops that one line and nothing else: AutobahnJS logs through its exported `log`
// object, looked up at each call, and warns synchronously right after onclose returns; the filter
// is in place for that moment only (removed by the line itself, or at the next microtask). Its
// "connection closed" line with the reason, every other line, and every error stay.
function dropReconnectDisabledLine(ab) {
  const log = ab.log;
  if (!log || typeof log.warn !== "function") return; // another AutobahnJS: its line stays
  const warn = log.warn;
  let active = true;
  const restore = () => {
    if (active && log.warn === filtered) log.warn = warn;
    active = false;
  };
  const filtered = function (...args) {
    if (active && args[0] === RECONNECT_DISABLED) {
      restore();
      return undefined;
    }
    return warn.apply(this, args);
  };
  log.warn = filtered;
  queueMicrotask(restore);
}

// ---- Recovering subscriptions (issue 22; docs/clients.md#recovering-subscriptions-javascript) -------------
//
// A topic that keeps history (the router's policy says which) numbers its events: each live EVENT
// carries its position {offset, epoch} (EVENT_POSITION_DETAIL); the offset grows by 1 per event,
// the epoch changes when the stream's state was lost. authenticator.history(topic, {since, limit})
// gives every event after `since`, oldest first, or recovered: false and none (never a part).
// With nothing seen yet, the kit reads the stream's position before subscribing (read after, it could
// count an event whose EVENT is still on its way). On every (re)subscribe of a recovering subscription
//   1. subscribes first, and buffers the live events that arrive;
//   2. reads the history since the last position the application saw (page after page);
//   3. merges by position: each offset once, none skipped, in order;
//   4. delivers the missed events, then the buffered live ones after them;
//   5. tells the application onRecovered({recovered, missed}); recovered: false means events
//      were lost for good (history too old, too many, another epoch): reload from your own data.
//      It comes before the events after the loss: a lost stream's new epoch is read from its start.
// Live, an event whose offset is not the next one (a gap) or of another epoch makes the kit read
// the history again (buffering meanwhile); an offset already seen is dropped as a duplicate; an
// event without a position (the router forgot it: should not happen) is delivered and the kit reads
// the history after it, matching what it delivered by content so it comes only once.
// The position is kept in memory and in sessionStorage (RECOVERY_KEY_PREFIX + realm + topic), so a
// reloaded page recovers too; without sessionStorage (Node, storage disabled) in memory only.

// ==== THE ONE PLACE THE KIT READS AUTOBAHNJS'S INTERNALS =========================================
// AutobahnJS builds the Event a handler gets from an EVENT's details and drops every detail it does
// not know (autobahn 22.11.1, lib/session.js, Session._process_EVENT: it keeps topic, publisher,
// publisher_authid, publisher_authrole, retained, forward_for): a handler never sees x_position.
// The session dispatches each incoming message through its table _MESSAGE_MAP[type] (EVENT is 36)
// and calls the handlers synchronously inside. The kit wraps that one entry: it notes the raw
// EVENT's publication id and position, calls AutobahnJS's own function, and forgets them; the kit's
// handler, called inside, takes the position whose publication id is its event's.
// Verified against VERIFIED_AUTOBAHN only (tests/web/test_recovery.py, and under Node
// tests/unit/test_js_kit_recovery.py). With another AutobahnJS, or a table that is not as
// verified, the kit leaves the session alone and says so with console.error: live events then have
// no position, and recovering subscriptions fall back to recovery at each (re)subscribe that cannot
// be vouched for: each resubscribe is reported recovered: false (reload from your own data). Never
// silently unprotected.
export const VERIFIED_AUTOBAHN = "22.11.1";
const WAMP_EVENT = 36;

// → {positionOf(publication)} for this session, or null when AutobahnJS is not the verified one.
function tapEventPositions(ab, session) {
  const table = session && session._MESSAGE_MAP;
  if (ab.version !== VERIFIED_AUTOBAHN || !table || typeof table[WAMP_EVENT] !== "function"
      || table[WAMP_EVENT] !== session._process_EVENT) return null;
  const processEvent = table[WAMP_EVENT];
  let raw = null; // the EVENT being dispatched: [publication, position]
  table[WAMP_EVENT] = function (msg) {
    const details = msg[3];
    raw = [msg[2], details && typeof details === "object" ? details[EVENT_POSITION_DETAIL] : undefined];
    try {
      return processEvent.call(this, msg);
    } finally {
      raw = null;
    }
  };
  // undefined: not dispatched through the tap; null: the EVENT had no position.
  return { positionOf: (publication) => (raw && raw[0] === publication ? raw[1] ?? null : undefined) };
}
// ==== END OF THE ONE PLACE ======================================================================

export const RECOVERY_KEY_PREFIX = "crossbar-jwt.position ";
// History errors that another try will not change: recovery is off for this session's subscription
// (onRecovered says recovered: false, with the error); the others (history_unavailable, a lost
// answer) are tried again with the backoff.
const HISTORY_REFUSALS = new Set([
  "wamp.error.not_authorized", "authenticator.error.no_history", "wamp.error.invalid_argument",
  "wamp.error.no_such_procedure",
]);

function isPosition(p) {
  return Boolean(p) && typeof p === "object" && Number.isSafeInteger(p.offset) && p.offset >= 0
    && typeof p.epoch === "string";
}

// Exactly the two keys: the router refuses a `since` with more.
const asPosition = (p) => ({ offset: p.offset, epoch: p.epoch });

// The sessionStorage of a page; null in Node, or where storage is disabled (it throws then).
function sessionStore() {
  try {
    const store = globalThis.sessionStorage;
    return store && typeof store.getItem === "function" ? store : null;
  } catch {
    return null;
  }
}

function loadPosition(key) {
  try {
    const kept = sessionStore()?.getItem(key);
    const position = kept ? JSON.parse(kept) : null;
    return isPosition(position) ? asPosition(position) : null;
  } catch {
    return null;
  }
}

function savePosition(key, position) {
  try {
    sessionStore()?.setItem(key, JSON.stringify(position));
  } catch {
    // full or disabled: the position stays in memory
  }
}

// One JSON text per value whatever the order of its keys: an event delivered without a position
// is recognized in the history by its content.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

// Every event after `since`, page after page, or {recovered: false} (nothing: never a part). Without
// `since` (nothing seen yet) only the stream's position.
async function readHistory(session, topic, since, limit) {
  if (!since) {
    const answer = await session.call(HISTORY_PROCEDURE, [topic], { since: null, limit: 1 });
    return { recovered: false, events: [], position: answer.position, first: true };
  }
  const events = [];
  let from = since;
  for (;;) {
    const answer = await session.call(HISTORY_PROCEDURE, [topic], { since: asPosition(from), limit });
    if (!answer.recovered) return { recovered: false, events: [], position: answer.position };
    events.push(...answer.events);
    const last = answer.events.at(-1);
    if (!last || last.position.offset >= answer.position.offset) {
      return { recovered: true, events, position: answer.position };
    }
    from = last.position; // more than `limit`: read on from the last one
  }
}

export function connect(options) {
  const o = { ...DEFAULTS, ...options };
  const ab = o.autobahn || globalThis.autobahn;
  if (!ab) throw new Error("crossbar-jwt.js needs AutobahnJS: load autobahn.min.js first, or pass {autobahn}");

  let session = null; // the joined session
  let token = null; // the token this session logged in or last refreshed with
  let tokenError = null; // why getToken() failed during the last challenge
  let leaving = null; // {reason, message} when the kit itself leaves to reconnect
  let failures = 0; // attempts since the last join, for the kit's backoff
  let attemptEnded = false; // the current attempt's close was handled (see connection.onclose)
  let refreshTimer = null;
  let retryTimer = null;

  const client = {
    state: "connecting",
    reason: null,
    message: null,
    refreshes: 0,
    connection: null,
    get session() { return session; },
    subscribe,
    close,
  };

  function setState(state, reason = null, message = null) {
    Object.assign(client, { state, reason, message });
    if (o.onState) o.onState(state, client);
  }

  const retry = {
    initial: o.initialRetryDelay, maximum: o.maxRetryDelay, growth: o.retryDelayGrowth, jitter: o.retryDelayJitter,
  };

  // ---- the application's subscriptions, made again on every join ----
  const subscriptions = new Set();
  let tap = null; // the joined session's EVENT tap (null: another AutobahnJS)
  let tapWarned = false;

  function subscribe(topic, handler, { recover = false, onRecovered = null, onError = null, options = {} } = {}) {
    if (typeof topic !== "string" || typeof handler !== "function") {
      throw new TypeError("client.subscribe(topic, handler, options): a topic string and a handler function");
    }
    const key = RECOVERY_KEY_PREFIX + o.realm + " " + topic;
    const sub = {
      topic, handler, recover: Boolean(recover), onRecovered, onError, options, key,
      position: recover ? loadPosition(key) : null, // the last position delivered to the application
      session: null, // the session it is subscribed on (or subscribing)
      autobahn: null, // AutobahnJS's Subscription on that session
      fetching: false, // reading the history: live events wait in `buffer`
      buffer: [],
      unplaced: [], // delivered without a position, not yet found in the history
      unrecoverable: null, // the session on which the history was refused (no_history, not_authorized)
      subscribes: 0,
      closed: false,
    };
    subscriptions.add(sub);
    if (session) establish(sub, session);
    return {
      topic,
      get position() { return sub.position && asPosition(sub.position); },
      get active() { return sub.autobahn !== null; },
      unsubscribe: async () => {
        sub.closed = true;
        subscriptions.delete(sub);
        const [s, subscribed] = [sub.session, sub.autobahn];
        sub.session = sub.autobahn = null;
        if (s && subscribed && s.isOpen) await s.unsubscribe(subscribed);
      },
    };
  }

  function report(sub, error, what) {
    if (sub.onError) callApp(sub.onError, error);
    else console.warn(`crossbar-jwt: ${what} ${sub.topic} failed`, (error && error.error) || error);
  }

  // The application's callbacks: one that throws does not stop the kit's merge.
  function callApp(fn, ...args) {
    try {
      fn(...args);
    } catch (error) {
      console.error("crossbar-jwt: a subscription callback threw", error);
    }
  }

  async function establish(sub, s) {
    Object.assign(sub, { session: s, autobahn: null, buffer: [], unplaced: [], fetching: sub.recover });
    const positions = tap;
    if (sub.recover && !positions && !tapWarned) {
      tapWarned = true;
      console.error(`crossbar-jwt: AutobahnJS ${ab.version} is not ${VERIFIED_AUTOBAHN}, the version whose EVENT `
        + "handling the kit was verified against: live events carry no position, so recovering subscriptions "
        + "report every resubscribe as recovered: false (reload from your own data)");
    }
    const again = sub.subscribes > 0 || sub.position !== null; // there is something to recover
    let refused = null;
    if (sub.recover && positions && !sub.position) {
      // Nothing seen yet: the stream's position first, *before* subscribing. Read after, it could
      // count an event whose live EVENT is still on its way, which would then look seen already.
      const baseline = await readOrRefusal(sub, s, null);
      if (!baseline) return; // the session ended meanwhile
      if (baseline.refused) refused = baseline.refused;
      else advance(sub, baseline.read.position);
    }
    let subscribed;
    try {
      subscribed = await s.subscribe(sub.topic, (args, kwargs, details) => {
        if (sub.session !== s) return;
        const position = positions ? positions.positionOf(details.publication) : undefined;
        accept(sub, s, { args, kwargs, details, position });
      }, sub.options);
    } catch (error) {
      if (sub.session === s) sub.session = null;
      if (!sub.closed && s === session) report(sub, error, "subscribing to");
      return;
    }
    if (sub.closed || sub.session !== s) {
      if (s.isOpen) s.unsubscribe(subscribed).catch(() => {});
      return;
    }
    sub.autobahn = subscribed;
    sub.subscribes += 1;
    if (!sub.recover) return;
    if (refused) {
      giveUp(sub, s, refused);
      return;
    }
    if (!positions) { // another AutobahnJS: nothing to vouch for (above)
      sub.fetching = false;
      sub.position = null;
      if (again) callApp(sub.onRecovered || (() => {}), { recovered: false, missed: 0 });
      flush(sub, s);
      return;
    }
    await recover(sub, s, again);
  }

  // The history read, tried again with the backoff while it fails for a passing reason: {read}, or
  // {refused: error} (HISTORY_REFUSALS), or null when the session or the subscription ended.
  async function readOrRefusal(sub, s, since) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        const read = await readHistory(s, sub.topic, since, o.historyPageSize);
        if (!isPosition(read.position)) throw new Error("the history answered no position");
        return sub.session === s && !sub.closed ? { read } : null;
      } catch (error) {
        if (sub.session !== s || sub.closed) return null;
        if (HISTORY_REFUSALS.has(error && error.error)) return { refused: error };
        report(sub, error, "reading the history of");
        await new Promise((resolve) => later(resolve, retryDelay(attempt, { ...retry, jitter: 0 })));
        if (sub.session !== s || sub.closed) return null;
      }
    }
  }

  // This topic cannot be recovered for this user on this session (no history, not allowed): say
  // so, and deliver its live events as they come.
  function giveUp(sub, s, error) {
    report(sub, error, "reading the history of");
    sub.unrecoverable = s;
    callApp(sub.onRecovered || (() => {}), { recovered: false, missed: 0, error: error.error });
    flush(sub, s);
  }

  function deliver(sub, args, kwargs, details) {
    callApp(sub.handler, args || [], kwargs || {}, details);
  }

  function advance(sub, position) {
    sub.position = asPosition(position);
    savePosition(sub.key, sub.position);
  }

  // A live event (or one that waited in the buffer): deliver it, drop it, or read the history first.
  function accept(sub, s, event) {
    if (sub.fetching) {
      sub.buffer.push(event);
      return;
    }
    const { args, kwargs, details, position } = event;
    details.position = isPosition(position) ? asPosition(position) : null;
    details.missed = false;
    if (!sub.recover || sub.unrecoverable === s || position === undefined) { // as it came
      deliver(sub, args, kwargs, details);
      return;
    }
    if (!isPosition(position)) { // the router sent none: deliver, and check the history after it
      deliver(sub, args, kwargs, details);
      sub.unplaced.push(canonical([args || [], kwargs || {}]));
      recover(sub, s);
      return;
    }
    const seen = sub.position;
    if (seen && position.epoch === seen.epoch && position.offset <= seen.offset) return; // a duplicate
    if (!seen || (position.epoch === seen.epoch && position.offset === seen.offset + 1)) {
      deliver(sub, args, kwargs, details);
      advance(sub, position);
      return;
    }
    // A gap (events missed in between) or another epoch (the stream was lost): history first.
    sub.buffer.push(event);
    recover(sub, s);
  }

  // Live events that waited while the history was read, in the order they came.
  function flush(sub, s) {
    const waiting = sub.buffer;
    sub.buffer = [];
    sub.fetching = false;
    for (const event of waiting) {
      if (sub.session !== s) return;
      accept(sub, s, event); // may read the history again: the rest then waits again, in order
    }
  }

  // Read the history since the last position, merge it with the live events that wait, deliver.
  // `announce`: tell onRecovered (not after the baseline of a first subscription).
  async function recover(sub, s, announce = true) {
    sub.fetching = true;
    const since = sub.position;
    const first = await readOrRefusal(sub, s, since);
    if (!first) return;
    if (first.refused && since && first.refused.error === "wamp.error.invalid_argument") {
      // A kept position the router does not take (altered in sessionStorage, or of another
      // router): it would be refused at every join. Announced as lost; the kit goes on from now.
      const now = await readOrRefusal(sub, s, null);
      if (!now) return;
      if (!now.refused) {
        advance(sub, now.read.position);
        if (announce && sub.onRecovered) callApp(sub.onRecovered, { recovered: false, missed: 0 });
        flush(sub, s);
        return;
      }
      first.refused = now.refused;
    }
    if (first.refused) {
      giveUp(sub, s, first.refused);
      return;
    }
    let read = first.read;
    let lost = !read.recovered; // events after `since` are gone for good
    if (lost && since && read.position.epoch !== since.epoch && read.position.offset > 0) {
      // The stream was lost (a restarted memory store, an evicted stream): its new epoch all came
      // after the loss, so it is read from its start and delivered after the announcement.
      const fresh = await readOrRefusal(sub, s, { offset: 0, epoch: read.position.epoch });
      if (!fresh) return;
      if (fresh.read && fresh.read.recovered) {
        read = fresh.read;
        sub.position = { offset: 0, epoch: read.position.epoch };
      }
    }
    if (!read.recovered) {
      sub.position = asPosition(read.position); // nothing to deliver from it: go on from the top
      read = { events: [] };
    }
    // Each event after the position, in order; where a live copy came while the history was read,
    // that one (it reached the page: not missed), and the buffer's is then a duplicate.
    const came = new Map(sub.buffer.filter((e) => isPosition(e.position))
      .map((e) => [`${e.position.offset} ${e.position.epoch}`, e]));
    const plan = [];
    let at = sub.position;
    for (const kept of read.events) {
      const position = kept.position;
      if (!isPosition(position) || position.epoch !== at.epoch || position.offset > at.offset + 1) {
        lost = true; // not an answer the kit can merge (a hole in it): treated as lost
        break;
      }
      if (position.offset <= at.offset) continue; // delivered already
      at = position;
      const live = came.get(`${position.offset} ${position.epoch}`);
      if (sub.unplaced.length && sub.unplaced[0] === canonical([kept.args || [], kept.kwargs || {}])) {
        sub.unplaced.shift(); // the live event that came without a position: delivered then
        plan.push({ position });
      } else if (live) {
        plan.push({ position, args: live.args, kwargs: live.kwargs,
          details: Object.assign(live.details, { position: asPosition(position), missed: false }) });
      } else {
        plan.push({ position, args: kept.args, kwargs: kept.kwargs, missed: true, details: { topic: sub.topic,
          position: asPosition(position), publisher_authid: kept.publisher_authid ?? null, missed: true } });
      }
    }
    sub.unplaced = [];
    const missed = plan.filter((step) => step.missed).length;
    const tell = () => {
      if (announce && sub.onRecovered) callApp(sub.onRecovered, { recovered: !lost, missed });
    };
    if (lost) tell(); // before the events after the hole: the application reloads first
    for (const step of plan) {
      if (sub.session !== s || sub.closed) return;
      if (step.details) deliver(sub, step.args, step.kwargs, step.details);
      advance(sub, step.position);
    }
    if (lost && plan.length === 0) advance(sub, sub.position);
    if (!lost) tell();
    flush(sub, s);
  }

  async function freshToken() {
    const fresh = await o.getToken();
    if (fresh === null) throw new NoToken();
    if (typeof fresh !== "string" || !fresh) throw new Error("getToken() returned no token");
    return fresh;
  }

  const connection = new ab.Connection({
    url: o.url,
    realm: o.realm,
    authmethods: o.getToken ? ["ticket"] : ["anonymous"],
    onchallenge: async (s, method) => {
      if (client.state === "stopped") throw new Error("closed");
      if (method !== "ticket") throw new Error(`unexpected authentication method ${method}`);
      try {
        token = await freshToken();
        tokenError = null;
        return token;
      } catch (error) {
        tokenError = error instanceof NoToken
          ? { reason: NO_TOKEN, message: "getToken() returned null: no user to log in" }
          : { reason: TOKEN_UNAVAILABLE, message: String(error && error.message ? error.message : error) };
        throw error; // AutobahnJS aborts this attempt; onclose below decides
      }
    },
    // The kit schedules every retry itself (afterClose): AutobahnJS's own backoff draws a Gaussian
    // around a growing delay (no full jitter), starts over at every WebSocket that opens, and under
    // Node advances twice per failed connect. Its options say the same in case it is ever asked.
    max_retries: 0,
    initial_retry_delay: o.initialRetryDelay,
    max_retry_delay: Math.min(o.maxRetryDelay, MAX_TIMER_SECONDS), // AutobahnJS's own setTimeout
    retry_delay_growth: o.retryDelayGrowth,
    retry_delay_jitter: o.retryDelayJitter,
  });
  client.connection = connection;

  connection.onopen = (s, details) => {
    if (client.state === "stopped") { // AutobahnJS keeps a pending retry across close(): undo it
      connection.close("wamp.close.normal");
      return;
    }
    session = s;
    tap = tapEventPositions(ab, s);
    failures = 0;
    setState("connected");
    for (const sub of subscriptions) establish(sub, s);
    const extra = details.authextra || {};
    if (o.getToken && extra.exp) scheduleRefresh(s, secondsLeft(extra));
    if (o.onSession) o.onSession(s, details);
  };

  // Always true: the kit retries (or has stopped); AutobahnJS does not retry. AutobahnJS 22.11.1
  // under Node reports a failed WebSocket twice (its transport calls onclose for ws's "error" and
  // again for its "close"): the second report of the same attempt is ignored, else two retries
  // would be scheduled and the backoff advanced twice.
  connection.onclose = (closed, details) => {
    if (!attemptEnded) {
      attemptEnded = true;
      afterClose(closed, details);
    }
    dropReconnectDisabledLine(ab);
    return true;
  };

  function open() {
    attemptEnded = false;
    connection.open();
  }

  // What follows a closed connection or a failed attempt: stop, or retry after retryDelay.
  function afterClose(closed, details) {
    session = null;
    tap = null;
    for (const sub of subscriptions) Object.assign(sub, { session: null, autobahn: null, buffer: [], fetching: false });
    clearTimeout(refreshTimer);
    if (client.state === "stopped") return;
    let reason, message;
    if (leaving) {
      ({ reason, message } = leaving);
      leaving = null;
    } else if (tokenError) { // getToken() failed in the challenge (AutobahnJS's own ABORT follows)
      ({ reason, message } = tokenError);
      tokenError = null;
    } else if (details.reason) { // GOODBYE or ABORT from the router
      [reason, message] = [details.reason, details.message || ""];
    } else { // no WAMP reason: AutobahnJS's "lost", "unreachable" or "closed"
      [reason, message] = [closed, `the connection was ${closed === "unreachable" ? "not made" : closed}`];
    }
    if (o.finalReasons.has(reason)) {
      stop(reason, message);
      return;
    }
    // Lost or unreachable, a GOODBYE (expired), an ABORT, a failed getToken(): the first retry too
    // waits a random part of initialRetryDelay, so the clients of a restarted router do not all
    // come back in the same instant; a client whose token expired is back within 0.5 s.
    setState("reconnecting", reason, message);
    clearTimeout(retryTimer);
    retryTimer = later(() => {
      if (client.state !== "stopped") open();
    }, retryDelay(failures++, retry));
  }

  function scheduleRefresh(s, expiresIn) {
    clearTimeout(refreshTimer);
    refreshTimer = later(() => refresh(s, 0), refreshDelay(expiresIn, o.refreshAheadSeconds));
  }

  async function refresh(s, attempt) {
    if (s !== session) return;
    let fresh;
    try {
      fresh = await freshToken();
      const answer = await s.call(REFRESH_PROCEDURE, [fresh]);
      if (s !== session) return;
      token = fresh;
      client.refreshes += 1;
      if (o.onRefresh) o.onRefresh(answer.exp);
      scheduleRefresh(s, secondsLeft(answer));
    } catch (error) {
      if (s !== session) return; // the session ended meanwhile: onclose decides
      if (error instanceof NoToken) { // logged out meanwhile: leave, and stop
        leaving = { reason: NO_TOKEN, message: "getToken() returned null: no user to log in" };
        s.leave("wamp.close.normal");
        return;
      }
      const reason = error && error.error ? error.error : TOKEN_UNAVAILABLE;
      if (reason === REFRESH_REFUSED) {
        // The token is for another user or other roles: a new session with it, now.
        leaving = { reason, message: (error.args && error.args[0]) || "" };
        s.leave("wamp.close.normal");
        return;
      }
      // Try again shortly; if no refresh succeeds the router ends the session at exp (+ grace).
      console.warn("crossbar-jwt: token refresh failed, retrying", reason);
      clearTimeout(refreshTimer);
      refreshTimer = later(() => refresh(s, attempt + 1), retryDelay(attempt, { ...retry, jitter: 0 }));
    }
  }

  function stop(reason, message) {
    clearTimeout(refreshTimer);
    clearTimeout(retryTimer);
    setState("stopped", reason, message);
  }

  function close() {
    if (client.state === "stopped") return;
    stop("wamp.close.normal", "closed by the application");
    try {
      connection.close("wamp.close.normal");
    } catch {
      // already closed, between two attempts
    }
    // AutobahnJS's close() does not cancel a retry it has scheduled (autobahn-browser 22.11.1,
    // Connection.prototype.close): without this one more WebSocket would open after close().
    if (typeof connection._autoreconnect_reset === "function") connection._autoreconnect_reset();
  }

  open();
  setState("connecting");
  return client;
}
