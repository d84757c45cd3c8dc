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
//   a token already expired or not yet valid, getToken() failing): first retry after 0.5 s, growing
//   1.5× to at most 1.5 s, with jitter. AutobahnJS retries lost connections itself (configured here);
//   after a GOODBYE, an ABORT or a failed getToken() the kit retries with its own backoff (AutobahnJS
//   would start its backoff over at every WebSocket that opens).
// - Stops, and says why, on a final reason (FINAL_REASONS below): reconnecting would either fail the
//   same way with every fresh token, or undo what the router decided (revocation).
// - state: "connecting" → "connected" ⇄ "reconnecting" → "stopped"; client.reason / client.message are
//   the exact WAMP reason URI and message that ended the last session or attempt (null while connected).
//
// API: connect(options) → client
//   options: url, realm, getToken?, onSession?(session, details), onState?(state, client),
//     onRefresh?(exp), refreshAheadSeconds (10), initialRetryDelay (0.5 s), maxRetryDelay (1.5 s),
//     retryDelayGrowth (1.5), retryDelayJitter (0.1), finalReasons (FINAL_REASONS), autobahn
//     (the AutobahnJS module; default: the global `autobahn`)
//   client: state, reason, message, session (the joined autobahn.Session or null), refreshes,
//     connection (the autobahn.Connection underneath), close()
//   No timer of the kit is longer than MAX_TIMER_SECONDS (2^31 − 1 ms, ~24.8 days; setTimeout fires
//   at once beyond it): a longer-lived token is refreshed after that long.
// Details: docs/clients.md.

// The wire names: authenticator/contract.py (tests/unit/test_contract.py keeps these in step).
const REFRESH_PROCEDURE = "authenticator.refresh";
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
  "authenticator.error.lifetime_too_long",
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
  initialRetryDelay: 0.5,
  maxRetryDelay: 1.5,
  retryDelayGrowth: 1.5,
  retryDelayJitter: 0.1,
  finalReasons: FINAL_REASONS,
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

// Seconds before retry `attempt` (0, 1, ...): `initial` growing `growth`× per attempt to at most
// `maximum`, ±`jitter`; `rand` in [0, 1). Within [0, maximum] for any attempt count and never NaN:
// growth ** attempt is Infinity after some 1,750 attempts of 1.5× (about 40 minutes of outage), and
// 0 × Infinity is NaN, which setTimeout takes as "at once" (authenticator/kit.py: the same rule).
export function retryDelay(attempt, { initial = DEFAULTS.initialRetryDelay, maximum = DEFAULTS.maxRetryDelay,
  growth = DEFAULTS.retryDelayGrowth, jitter = DEFAULTS.retryDelayJitter } = {}, rand = Math.random) {
  const grown = initial > 0 ? initial * growth ** attempt : 0;
  const mean = Number.isFinite(grown) ? Math.min(maximum, grown) : maximum;
  const delay = Math.min(maximum, mean * (1 + jitter * (2 * rand() - 1)));
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
// false, true) (autobahn 22.11.1, Connection.open: the transport's onclose). The kit returns true
// whenever it takes over: it reconnects with its own backoff (after an expiry, a refused refresh, a
// failed getToken()), or it stops with the reason in client.reason (close(), a final reason). So the
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

export function connect(options) {
  const o = { ...DEFAULTS, ...options };
  const ab = o.autobahn || globalThis.autobahn;
  if (!ab) throw new Error("crossbar-jwt.js needs AutobahnJS: load autobahn.min.js first, or pass {autobahn}");

  let session = null; // the joined session
  let token = null; // the token this session logged in or last refreshed with
  let tokenError = null; // why getToken() failed during the last challenge
  let leaving = null; // {reason, message} when the kit itself leaves to reconnect
  let failures = 0; // attempts since the last join, for the kit's own backoff
  let refreshTimer = null;
  let retryTimer = null;

  const client = {
    state: "connecting",
    reason: null,
    message: null,
    refreshes: 0,
    connection: null,
    get session() { return session; },
    close,
  };

  function setState(state, reason = null, message = null) {
    Object.assign(client, { state, reason, message });
    if (o.onState) o.onState(state, client);
  }

  const retry = {
    initial: o.initialRetryDelay, maximum: o.maxRetryDelay, growth: o.retryDelayGrowth, jitter: o.retryDelayJitter,
  };

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
    max_retries: -1,
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
    failures = 0;
    setState("connected");
    const extra = details.authextra || {};
    if (o.getToken && extra.exp) scheduleRefresh(s, secondsLeft(extra));
    if (o.onSession) o.onSession(s, details);
  };

  // true: the kit takes over (its own retry, or stopped); AutobahnJS does not retry.
  connection.onclose = (closed, details) => {
    const takenOver = afterClose(closed, details);
    if (takenOver) dropReconnectDisabledLine(ab);
    return takenOver;
  };

  // What follows a closed connection or a failed attempt: stop, let AutobahnJS retry, or retry here.
  function afterClose(closed, details) {
    session = null;
    clearTimeout(refreshTimer);
    if (client.state === "stopped") return true;
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
      return true;
    }
    if (details.will_retry && reason !== TOKEN_UNAVAILABLE) { // a lost connection: AutobahnJS retries
      setState("reconnecting", reason, message);
      return false;
    }
    // After a GOODBYE (expired), an ABORT or a failed getToken() the kit retries with its own
    // backoff: AutobahnJS does not retry the first two, and would start its backoff over at every
    // WebSocket that opens (a failing getToken() would be asked every 0.5 s).
    setState("reconnecting", reason, message);
    retryTimer = later(() => {
      if (client.state !== "stopped") connection.open();
    }, retryDelay(failures++, retry));
    return true;
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

  connection.open();
  setState("connecting");
  return client;
}
