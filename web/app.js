// The demo page: one WAMP connection whose token comes from /auth/token on every (re)connect.
"use strict";

const $ = (id) => document.getElementById(id);
const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
// Reasons after which reconnecting would be wrong or pointless: the user must act first.
const FINAL_REASONS = new Set(["authenticator.error.revoked", "authenticator.error.unknown_role",
  "authenticator.error.invalid_claim", "authenticator.error.origin_not_allowed"]);

let me = { authid: null, roles: [] };
let connection = null;
let session = null;
let refreshTimer = null;
// Refresh this long before the token's exp (never sooner than a second from now).
const REFRESH_AHEAD_SECONDS = 10;

// A fresh token for the live session before the old one runs out: no reconnect, no lost events.
// If it fails (issuer down, logged out) the session ends at exp and the page reconnects as usual.
function scheduleRefresh(exp) {
  clearTimeout(refreshTimer);
  if (!exp) return;
  const delay = Math.max(1, exp - Date.now() / 1000 - REFRESH_AHEAD_SECONDS);
  const forSession = session;
  refreshTimer = setTimeout(async () => {
    if (session !== forSession || !session) return;
    try {
      const answer = await session.call("authenticator.refresh", [await fetchToken()]);
      $("refreshed").textContent = String(Number($("refreshed").textContent || 0) + 1);
      scheduleRefresh(answer.exp);
    } catch (error) {
      console.warn("token refresh failed; the session will end at exp and reconnect", error.error || error);
    }
  }, delay * 1000);
}

function setState(state, identity) {
  $("state").textContent = state;
  $("state").dataset.state = state;
  if (identity !== undefined) $("identity").textContent = identity;
}

function showReason(reason, message) {
  $("reason").hidden = !reason;
  $("reason").textContent = reason ? `${reason}: ${message || ""}` : "";
  $("reason").dataset.reason = reason || "";
}

function append(list, text, who) {
  const item = document.createElement("li");
  if (who) {
    const name = document.createElement("strong");
    name.textContent = who;
    item.append(name, " ");
  }
  item.append(text);
  $(list).append(item);
}

async function fetchToken() {
  const response = await fetch("/auth/token", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error("not logged in");
  return (await response.json()).token;
}

function connect() {
  const previous = connection;
  connection = null; // its onclose must not act any more
  if (previous && (previous.isOpen || previous.isRetrying)) previous.close("wamp.close.normal");
  const loggedIn = Boolean(me.authid);
  connection = new autobahn.Connection({
    url: WS_URL,
    realm: "realm1",
    authmethods: loggedIn ? ["ticket"] : ["anonymous"],
    // A fresh token on every connect and every automatic reconnect.
    onchallenge: (s, method) => fetchToken(),
    max_retries: -1,
    max_retry_delay: 3,
  });
  const mine = connection;
  connection.onopen = (s, details) => {
    if (mine !== connection) return;
    session = s;
    showReason(null);
    setState("connected", `${details.authid} (${details.authrole})`);
    subscribe(s, details);
    if (me.authid) scheduleRefresh(details.authextra && details.authextra.exp);
  };
  connection.onclose = (reason, details) => {
    if (mine !== connection) return true;
    session = null;
    clearTimeout(refreshTimer);
    const why = details.reason || reason;
    setState(details.will_retry ? "reconnecting" : "closed");
    if (why && why.startsWith("authenticator.error.")) showReason(why, details.message);
    if (FINAL_REASONS.has(why)) return true; // revoked and the like: do not reconnect silently
    if (why === "authenticator.error.expired" && !details.will_retry) {
      setTimeout(connect, 100); // the token ran out: a fresh one, a new session
    }
    return false;
  };
  setState("connecting");
  connection.open();
}

function subscribe(s, details) {
  s.subscribe("app.public.feed", ([text]) => append("public-feed", text));
  if (!me.authid) return;
  s.subscribe("app.chat.lobby", ([text], kw, event) => append("chat", text, event.publisher_authid),
              { get_retained: false });
  const topic = `app.user.${me.authid}.notifications`;
  $("notifications-topic").textContent = topic;
  s.subscribe(topic, ([text]) => append("notifications", text));
}

function renderAccount() {
  const loggedIn = Boolean(me.authid);
  $("login-panel").hidden = loggedIn;
  $("account-panel").hidden = !loggedIn;
  $("chat-panel").hidden = !loggedIn;
  $("notifications-panel").hidden = !loggedIn;
  $("admin-panel").hidden = !me.roles.includes("admin");
  $("account-name").textContent = me.authid || "";
  $("account-roles").textContent = me.roles.join(", ");
}

async function post(path, body) {
  return fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await post("/auth/login", { username: $("username").value, password: $("password").value });
  const body = await response.json();
  if (!response.ok) { $("login-error").textContent = body.error; return; }
  $("login-error").textContent = "";
  me = body;
  renderAccount();
  connect();
});

$("logout").addEventListener("click", async () => {
  await post("/auth/logout");
  me = { authid: null, roles: [] };
  renderAccount();
  connect(); // back to the anonymous, public-only view
});

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!session) return;
  session.publish("app.chat.lobby", [$("chat-text").value], {}, { acknowledge: true, exclude_me: false });
  $("chat-text").value = "";
});

function adminAction(form, action) {
  $(form).addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      $("admin-result").textContent = await action();
    } catch (error) {
      $("admin-result").textContent = `refused: ${error.error || error}`;
    }
  });
}
adminAction("notify-form", async () => {
  await session.publish(`app.user.${$("notify-user").value}.notifications`, [$("notify-text").value], {},
                        { acknowledge: true });
  return "notification sent";
});
adminAction("announce-form", async () => {
  await session.publish("app.public.feed", [$("announce-text").value], {}, { acknowledge: true, exclude_me: false });
  return "announced";
});
adminAction("revoke-form", async () => {
  const result = await session.call("authenticator.revoke", [], { authid: $("revoke-user").value });
  return `revoked; live sessions ended: ${result.sessions_ended}`;
});

(async () => {
  me = await (await fetch("/auth/me", { credentials: "same-origin" })).json();
  renderAccount();
  connect();
})();
