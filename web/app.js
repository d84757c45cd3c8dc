// The demo page: one connection through the client kit (the npm package crossbar-jwt, in
// crossbar-jwt/; index.html's import map names it), which fetches a token from /auth/token on
// every (re)connect, refreshes it before exp and reconnects when it must.
// The chat and the notifications are the kit's recovering subscriptions: after a lost connection
// or a reload the page shows what it missed, once each and in order ("recovered N missed"). The
// page keeps what its lists show in sessionStorage (its own data; the kit keeps its positions
// there too), so a reload shows the earlier ones and the kit adds those it missed.
import { connect, PRESENCE_PROCEDURE, PRESENCE_TOPIC_PREFIX } from "crossbar-jwt";

const $ = (id) => document.getElementById(id);
const WS_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

let me = { authid: null, roles: [] };
let client = null;

function showState(state, identity) {
  const shown = state === "stopped" ? "closed" : state; // the kit will not reconnect by itself
  $("state").textContent = shown;
  $("state").dataset.state = shown;
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

// -- a list of a recovering subscription: what it shows, kept in sessionStorage (the page's data) --
const CHAT = "app.chat.lobby";
const lists = {}; // element id -> {topic, key, items: [{text, who, offset, epoch}]}

function storedItems(key) {
  try {
    const items = JSON.parse(sessionStorage.getItem(key) || "[]");
    return Array.isArray(items) ? items : [];
  } catch {
    return [];
  }
}

function showList(id) {
  $(id).replaceChildren();
  for (const item of lists[id].items) append(id, item.text, item.who);
}

function keepItems(id) {
  try {
    sessionStorage.setItem(lists[id].key, JSON.stringify(lists[id].items));
  } catch {
    // storage full or off: the list is still shown
  }
}

function openList(id, topic) {
  lists[id] = { topic, key: `demo.shown ${me.authid} ${topic}`, items: [] };
  lists[id].items = storedItems(lists[id].key);
  showList(id);
  $(`${id}-recovery`).textContent = "";
}

function addItem(id, text, who, position) {
  const item = { text: String(text), who: who || null, offset: position ? position.offset : null,
    epoch: position ? position.epoch : null };
  lists[id].items.push(item);
  keepItems(id);
  append(id, item.text, item.who);
}

// After each recovery: "recovered N missed". recovered false: events were lost for good (a router
// restart without Redis, too long away): the page forgets what it showed (its own data) and shows
// what the kit delivers next: the events kept since the loss, then the live ones.
function recovered(id, { recovered: whole, missed, error }) {
  const status = $(`${id}-recovery`);
  status.dataset.recovered = String(whole);
  if (error) {
    status.textContent = `no recovery: ${error}`;
  } else if (whole) {
    status.textContent = `recovered ${missed} missed`;
  } else {
    status.textContent = "history lost: reloading";
    lists[id].items = [];
    keepItems(id);
    showList(id);
  }
}

// -- who is in the chat: authenticator.presence, then its join/leave events ------------------------
let online = new Set();

function showOnline() {
  const names = [...online].sort();
  $("online").textContent = names.join(", ");
  $("online").dataset.authids = names.join(",");
}

async function followPresence(s, pending) {
  try {
    const answer = await s.call(PRESENCE_PROCEDURE, [CHAT]);
    online = new Set(answer.authids);
    for (const change of pending.splice(0)) applyPresence(change);
    pending.answered = true;
    showOnline();
  } catch (error) {
    $("online").textContent = `unknown (${error.error || error})`;
  }
}

function applyPresence({ event, authid }) {
  if (event === "join") online.add(authid);
  else if (event === "leave") online.delete(authid);
}

async function fetchToken() {
  const response = await fetch("/auth/token", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw new Error("not logged in");
  return (await response.json()).token;
}

let generation = 0; // callbacks of a replaced connection (log in, log out) do nothing

function start() {
  const mine = ++generation;
  if (client) client.close();
  client = connect({
    url: WS_URL,
    realm: "realm1",
    getToken: me.authid ? fetchToken : null, // logged out: the anonymous, public-only view
    onSession: (s, details) => {
      if (mine !== generation) return;
      showReason(null);
      // A visitor's authid is a random id Crossbar makes up (like "HFKK-Q995-..."): not worth showing.
      const who = details.authrole === "anonymous" ? "visitor" : details.authid;
      showState("connected", `${who} (${details.authrole})`);
      subscribe(s);
      if (me.authid) followPresence(s, presenceEvents = Object.assign([], { answered: false }));
    },
    onState: (state, kit) => {
      if (mine !== generation || state === "connected") return;
      showState(state);
      // Why the router ended the session or refused the login, e.g. authenticator.error.revoked.
      if (kit.reason && kit.reason.startsWith("authenticator.error.")) showReason(kit.reason, kit.message);
    },
    onRefresh: () => { $("refreshed").textContent = String(Number($("refreshed").textContent) + 1); },
  });
  window.connection = client.connection; // the AutobahnJS connection, for the browser console
  window.client = client;
  if (!me.authid) return;
  // The kit makes these on every join, and recovers what was missed in between.
  openList("chat", CHAT);
  client.subscribe(CHAT, ([text], kw, event) => addItem("chat", text, event.publisher_authid, event.position), {
    recover: true, onRecovered: (result) => recovered("chat", result), options: { get_retained: false } });
  const topic = `app.user.${me.authid}.notifications`;
  $("notifications-topic").textContent = topic;
  openList("notifications", topic);
  client.subscribe(topic, ([text], kw, event) => addItem("notifications", text, null, event.position), {
    recover: true, onRecovered: (result) => recovered("notifications", result) });
  online = new Set();
  showOnline();
  client.subscribe(PRESENCE_TOPIC_PREFIX + CHAT, (args, change) => {
    if (!presenceEvents.answered) presenceEvents.push(change); // applied after the answer
    else {
      applyPresence(change);
      showOnline();
    }
  });
}

let presenceEvents = Object.assign([], { answered: false });

// Subscriptions of the session itself (made again in every onSession): the public feed.
function subscribe(s) {
  s.subscribe("app.public.feed", ([text]) => append("public-feed", text));
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
  start();
});

$("logout").addEventListener("click", async () => {
  await post("/auth/logout");
  me = { authid: null, roles: [] };
  renderAccount();
  start(); // back to the anonymous, public-only view
});

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!client.session) return;
  client.session.publish("app.chat.lobby", [$("chat-text").value], {}, { acknowledge: true, exclude_me: false });
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
  await client.session.publish(`app.user.${$("notify-user").value}.notifications`, [$("notify-text").value], {},
                        { acknowledge: true });
  return "notification sent";
});
// The other path: the demo issuer (standing in for your backend) mints a `backend` token on the
// server and POSTs /publish; bob's page receives it like any event.
$("notify-backend").addEventListener("click", async () => {
  if (!$("notify-form").reportValidity()) return;
  const response = await post("/auth/backend-publish", { user: $("notify-user").value, text: $("notify-text").value });
  const body = await response.json();
  $("admin-result").textContent = response.ok
    ? `published from the backend (POST /publish, publication ${body.answer.id})`
    : `refused: ${body.answer ? `${body.status} ${body.answer.error}: ${body.answer.message}` : body.error}`;
});
adminAction("announce-form", async () => {
  await client.session.publish("app.public.feed", [$("announce-text").value], {}, { acknowledge: true, exclude_me: false });
  return "announced";
});
adminAction("revoke-form", async () => {
  const result = await client.session.call("authenticator.revoke", [], { authid: $("revoke-user").value });
  return `revoked; live sessions ended: ${result.sessions_ended}`;
});

(async () => {
  me = await (await fetch("/auth/me", { credentials: "same-origin" })).json();
  renderAccount();
  start();
})();
