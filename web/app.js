// The demo page: one connection through the client kit (the npm package crossbar-jwt, in
// crossbar-jwt/; index.html's import map names it), which fetches a token from /auth/token on
// every (re)connect, refreshes it before exp and reconnects when it must.
// The chat and the notifications are the kit's recovering subscriptions: after a lost connection
// or a reload the page shows what it missed, once each and in order ("recovered N missed"). The
// page keeps what its lists show in sessionStorage (its own data; the kit keeps its positions
// there too), so a reload shows the earlier ones and the kit adds those it missed.
import { connect, PRESENCE_PROCEDURE, PRESENCE_TOPIC_PREFIX, refreshDelay } from "crossbar-jwt";

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

// -- documents shared with me: each in a WAMP session of its own, with a grant token ---------------
// The admin shares app.doc.<id> with one user for a while (POST /auth/shares). The demo issuer then
// mints that user a grant token for it (GET /auth/shares/<id>/token): their authid, the one role
// "document-reader" (none of their own rights), a `caps` claim naming that one topic (subscribe),
// and a login token's short exp, never past the share's end. The page opens a second session with
// it, only for the document, and refreshes that session with the next grant token before exp (the
// same role and caps: the router accepts it). Once the share has ended the issuer mints none, and
// the router ends the session at the last token's exp (authenticator.error.expired): the grant is
// gone with it. docs/authorization.md, "Demo: sharing a document".
const EXPIRED = "authenticator.error.expired";
const REFRESH = "authenticator.refresh";
const documents = new Map(); // doc id -> {item, connection, state, exp, timer, refreshed}

function documentEntry(doc) {
  let entry = documents.get(doc);
  if (!entry) {
    const item = document.createElement("li");
    item.dataset.doc = doc;
    const title = document.createElement("strong");
    title.textContent = `document ${doc}`;
    const status = document.createElement("p");
    status.className = "status";
    const messages = document.createElement("ul");
    messages.className = "log";
    item.append(title, " ", `app.doc.${doc}`, status, messages);
    $("documents").append(item);
    entry = { item, connection: null, state: null, exp: null, timer: null, refreshed: 0 };
    documents.set(doc, entry);
  }
  return entry;
}

function showDocument(entry, state, text) {
  entry.state = state;
  entry.item.dataset.state = state;
  entry.item.querySelector(".status").textContent = text;
}

const clock = (exp) => new Date(exp * 1000).toLocaleTimeString();
const grantUrl = (doc) => `/auth/shares/${encodeURIComponent(doc)}/token`;

function showOpen(entry, share, session) {
  const refreshed = entry.refreshed ? `, grant token refreshed ${entry.refreshed}×` : "";
  showDocument(entry, "open", `shared by ${share.by} until ${clock(share.exp)} (session ${session.id}${refreshed})`);
  entry.item.dataset.session = String(session.id);
  entry.item.dataset.refreshed = String(entry.refreshed);
}

// Before the grant token's exp: the next grant token, handed to authenticator.refresh. It carries
// the same role and caps, so the router accepts it and the session goes on. The page stops when
// the issuer answers 404 (the share has ended) or the next token would end no later than this one
// (it ends with the share): the router then ends the session at that exp. A refresh the router
// refuses stops it too; an issuer that does not answer is asked again a second later.
function refreshGrant(entry, connection, share, delay) {
  clearTimeout(entry.timer);
  entry.timer = setTimeout(async () => {
    const session = connection.session;
    if (entry.connection !== connection || !session || !session.isOpen) return;
    let next;
    try {
      const response = await fetch(grantUrl(share.doc), { credentials: "same-origin", cache: "no-store" });
      next = await response.json();
      if (response.status === 404) return; // the share has ended: no more grant tokens
      if (!response.ok) throw new Error(next.error || `${grantUrl(share.doc)} answered ${response.status}`);
    } catch {
      if (entry.exp > Date.now() / 1000) refreshGrant(entry, connection, share, 1);
      return;
    }
    if (entry.connection !== connection || !(next.exp > entry.exp)) return; // this token ends with the share
    try {
      const answer = await session.call(REFRESH, [next.token]);
      entry.exp = answer.exp;
      entry.refreshed += 1;
      showOpen(entry, share, session);
      refreshGrant(entry, connection, share, refreshDelay(answer.expires_in));
    } catch {
      // refused (say, by an older policy): the session ends at the current token's exp
    }
  }, delay * 1000);
}

// The live shares with me (GET /auth/shares): each one not open yet is opened. Called at login and
// whenever a notification says something was shared with me.
async function refreshShares(mine) {
  let body;
  try {
    const response = await fetch("/auth/shares", { credentials: "same-origin", cache: "no-store" });
    body = await response.json();
    if (!response.ok) throw new Error(body.error || `/auth/shares answered ${response.status}`);
  } catch (error) {
    $("documents-error").textContent = `could not list the documents shared with you: ${error.message}`;
    return;
  }
  if (mine !== generation) return;
  $("documents-error").textContent = "";
  $("share-minutes").min = String(body.min_seconds / 60);
  $("share-minutes").max = String(body.max_seconds / 60);
  for (const share of body.shares) openDocument(share, mine);
}

async function openDocument(share, mine) {
  const entry = documentEntry(share.doc);
  if (entry.state === "opening" || entry.state === "open") return;
  showDocument(entry, "opening", `shared by ${share.by} until ${clock(share.exp)}: opening…`);
  const response = await fetch(grantUrl(share.doc), { credentials: "same-origin", cache: "no-store" }); // never kept by a cache
  const grant = await response.json();
  if (mine !== generation) return;
  if (!response.ok) {
    showDocument(entry, "refused", grant.error || `/auth/shares answered ${response.status}`);
    return;
  }
  // Plain AutobahnJS, not the kit: this session lives as long as the share (refreshGrant) and is
  // never reconnected (a new session would need a new share, or a reload while it lasts).
  entry.exp = grant.exp;
  entry.refreshed = 0;
  const connection = new autobahn.Connection({
    url: WS_URL, realm: "realm1", authmethods: ["ticket"], onchallenge: () => grant.token, max_retries: 0,
  });
  entry.connection = connection;
  connection.onopen = async (session) => {
    if (entry.connection !== connection) { connection.close(); return; } // logged out meanwhile
    try {
      await session.subscribe(grant.topic, ([text], kw, event) => {
        const line = document.createElement("li");
        const who = document.createElement("strong");
        who.textContent = event.publisher_authid || "";
        line.append(who, " ", String(text));
        entry.item.querySelector(".log").append(line);
      });
      showOpen(entry, share, session);
      refreshGrant(entry, connection, share, refreshDelay(grant.expires_in));
    } catch (error) {
      showDocument(entry, "refused", `the router refused the subscription: ${error.error}. Ask the admin to share it again.`);
      connection.close();
    }
  };
  connection.onclose = (reason, details) => {
    if (entry.connection !== connection) return true;
    entry.connection = null;
    clearTimeout(entry.timer);
    if (details && details.reason === EXPIRED) {
      showDocument(entry, "expired", `grant expired at ${clock(entry.exp)}: the router ended its session `
        + `(${EXPIRED}). Ask the admin to share the document again.`);
    } else if (entry.state !== "refused") {
      const why = details && details.reason ? `${details.reason}: ${details.message || ""}` : reason;
      showDocument(entry, "closed", `the document's session ended (${why}). Reload the page to open it again `
        + "while the share lasts.");
    }
    return true; // no reconnect: the grant token was for this one session
  };
  connection.open();
}

function closeDocuments() {
  for (const entry of documents.values()) {
    const connection = entry.connection;
    entry.connection = null;
    clearTimeout(entry.timer);
    if (connection && connection.isOpen) connection.close();
  }
  documents.clear();
  $("documents").replaceChildren();
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
  closeDocuments();
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
  client.subscribe(topic, ([text], kw, event) => {
    addItem("notifications", text, null, event.position);
    if (kw && kw.share) refreshShares(mine); // "root shared document 42 with you"
  }, { recover: true, onRecovered: (result) => recovered("notifications", result) });
  refreshShares(mine);
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
  $("documents-panel").hidden = !loggedIn;
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
      $("admin-result").textContent = `refused: ${error.error || error.message || error}`;
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

// Share a document: the demo issuer records the share (POST /auth/shares, as the logged-in admin),
// then this page tells the user on their notifications topic; their page fetches its grant token.
adminAction("share-form", async () => {
  const [doc, user] = [$("share-doc").value, $("share-user").value];
  const response = await post("/auth/shares", { doc, user, seconds: Math.round(Number($("share-minutes").value) * 60) });
  const share = await response.json();
  if (!response.ok) throw new Error(share.error);
  await client.session.publish(`app.user.${user}.notifications`,
    [`${me.authid} shared document ${doc} with you until ${clock(share.exp)}`], { share: doc }, { acknowledge: true });
  return `shared document ${doc} (${share.topic}) with ${user} until ${clock(share.exp)}`;
});
adminAction("write-form", async () => {
  const doc = $("write-doc").value;
  await client.session.publish(`app.doc.${doc}`, [$("write-text").value], {}, { acknowledge: true });
  return `written to app.doc.${doc}`;
});

(async () => {
  me = await (await fetch("/auth/me", { credentials: "same-origin" })).json();
  renderAccount();
  start();
})();
