"""The JavaScript kit's recovering subscriptions (client.subscribe(topic, handler, {recover: true}))
under node, on the real AutobahnJS 22.11.1 (bench/node_modules/autobahn): its Session runs over an
in-process transport to a scripted router that numbers events, answers authenticator.history by
the router's read rule (core/history.answer: all after `since`, or recovered false and nothing),
and can lose the connection, leave an event out, send one twice, race a live event against the
history answer, or start a new epoch. So the kit's EVENT tap is exercised on the very AutobahnJS
code it was verified against, and each merge rule on its own: every event once, in order, the
missed ones before the live ones. The browser tests (tests/web/test_recovery.py) run the same kit
against the real router."""

import json
import shutil
import subprocess

import pytest

from authenticator import contract
from tests.support.router import REPO

KIT = REPO / "web" / "crossbar-jwt" / "crossbar-jwt.js"
NODE_MODULES = REPO / "bench" / "node_modules"

# The scripted router and a client of the kit on it; SCENARIO (below) is each test's body.
HARNESS = r"""
import autobahn from "autobahn";
import * as kit from "./crossbar-jwt.mjs";

const HISTORY = %(history)s;
const POSITION = %(position)s;
const tick = () => new Promise((resolve) => setImmediate(resolve));
const until = async (condition, what, ms = 3000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

class Router {
  constructor() {
    this.streams = new Map();
    this.calls = []; // the `since` and `limit` of every history call
    this.transport = null; // the open one
    this.down = false;
    this.subscriptions = new Map(); // topic -> id on the open transport
    this.beforeAnswer = null; // runs between a history CALL and its RESULT (the race)
    this.beforeRead = null; // runs before a history CALL is read
    this.afterAnswer = null; // runs once its RESULT was sent
    this.historyError = null;
    this.publication = 100;
  }
  stream(topic) {
    if (!this.streams.has(topic)) this.streams.set(topic, { epoch: "e1", top: 0, events: [] });
    return this.streams.get(topic);
  }
  newEpoch(topic) { this.streams.set(topic, { epoch: "e2", top: 0, events: [] }); }
  // Keep an event; send it to the subscriber unless {live: false}; without its position if {position: false}.
  publish(topic, args, { live = true, position = true } = {}) {
    const stream = this.stream(topic);
    stream.top += 1;
    const kept = { position: { offset: stream.top, epoch: stream.epoch }, args, kwargs: {} };
    stream.events.push(kept);
    kept.publication = ++this.publication;
    if (live) this.send(topic, kept, position);
    return kept;
  }
  send(topic, kept, position = true) {
    const id = this.subscriptions.get(topic);
    if (this.transport && id !== undefined) {
      const details = position ? { [POSITION]: kept.position } : {};
      this.transport.deliver([36, id, kept.publication, details, kept.args, kept.kwargs]);
    }
  }
  history(topic, since, limit) {
    const stream = this.stream(topic);
    const position = { offset: stream.top, epoch: stream.epoch };
    if (since === null) return { events: stream.events.slice(-limit), position, recovered: false };
    if (since.epoch !== stream.epoch || since.offset > stream.top) return { events: [], position, recovered: false };
    const after = stream.events.filter((e) => e.position.offset > since.offset);
    if (since.offset < stream.top && (!after.length || after[0].position.offset !== since.offset + 1)) {
      return { events: [], position, recovered: false };
    }
    return { events: after.slice(0, limit).map(({ position, args, kwargs }) => ({ position, args, kwargs })),
             position, recovered: true };
  }
  async receive(transport, msg) {
    const [type] = msg;
    const welcome = { authid: "alice", authrole: "user", roles: { broker: {}, dealer: {} } };
    if (type === 1) transport.deliver([2, 4711, welcome]);
    else if (type === 32) {
      const id = 9000 + this.subscriptions.size;
      this.subscriptions.set(msg[3], id);
      transport.deliver([33, msg[1], id]);
    } else if (type === 34) transport.deliver([35, msg[1]]);
    else if (type === 48) {
      const [, request, , procedure, args, kwargs] = msg;
      if (procedure !== HISTORY) return transport.deliver([8, 48, request, {}, "wamp.error.no_such_procedure", []]);
      if (Object.keys(kwargs).sort().join() !== "limit,since"
          || (kwargs.since !== null && Object.keys(kwargs.since).sort().join() !== "epoch,offset")) {
        return transport.deliver([8, 48, request, {}, "wamp.error.invalid_argument", [JSON.stringify(kwargs)]]);
      }
      this.calls.push({ topic: args[0], since: kwargs.since, limit: kwargs.limit });
      if (kwargs.since && kwargs.since.epoch.length > 64) { // as the router refuses one
        return transport.deliver([8, 48, request, {}, "wamp.error.invalid_argument", ["since.epoch"]]);
      }
      if (this.beforeRead && this.beforeRead()) this.beforeRead = null;
      const answer = this.history(args[0], kwargs.since, kwargs.limit); // read now ...
      if (this.beforeAnswer) { const run = this.beforeAnswer; this.beforeAnswer = null; await run(); }
      if (this.historyError) return transport.deliver([8, 48, request, {}, this.historyError, []]);
      transport.deliver([50, request, {}, [answer]]); // ... answered after what happened meanwhile
      if (this.afterAnswer) { const run = this.afterAnswer; this.afterAnswer = null; run(); }
    } else if (type === 6) {
      transport.deliver([6, {}, "wamp.close.goodbye_and_out"]);
      transport.lose(true);
    }
  }
  lose() { if (this.transport) this.transport.lose(false); }
}

const router = new Router();

// AutobahnJS's transport "websocket", replaced by one to the router above.
function Factory(options) { this._options = options; }
Factory.prototype.type = "websocket";
Factory.prototype.create = function () {
  const info = { type: "websocket", url: this._options.url, protocol: "wamp.2.json" };
  const transport = { protocol: "wamp.2.json", info };
  let open = true;
  transport.send = (msg) => { if (open) setImmediate(() => router.receive(transport, msg)); };
  transport.deliver = (msg) => setImmediate(() => { if (open) transport.onmessage(msg); });
  transport.lose = (clean) => {
    if (!open) return;
    open = false;
    if (router.transport === transport) { router.transport = null; router.subscriptions = new Map(); }
    setImmediate(() => transport.onclose({ wasClean: clean, code: clean ? 1000 : 1006, reason: "" }));
  };
  transport.close = () => transport.lose(true);
  setImmediate(() => {
    if (router.down) { transport.lose(false); return; }
    router.transport = transport;
    transport.onopen();
  });
  return transport;
};
autobahn.transports.register("websocket", Factory);

const seen = [];
const recoveries = [];
const errors = [];
function start(topic, { ab = autobahn, pageSize = 100 } = {}) {
  const client = kit.connect({
    url: "ws://scripted/ws", realm: "realm1", autobahn: ab, initialRetryDelay: 0.01, maxRetryDelay: 0.02,
    historyPageSize: pageSize,
  });
  const subscription = client.subscribe(topic, ([n], kwargs, details) => seen.push({ n, missed: details.missed,
    offset: details.position && details.position.offset }), {
    recover: true,
    onRecovered: (result) => recoveries.push(result),
    onError: (error) => errors.push(error.error || String(error)),
  });
  return { client, subscription };
}
const subscribed = (topic) => until(() => router.subscriptions.has(topic), `a subscription to ${topic}`);
const numbers = () => seen.map((e) => e.n);
const finish = (result) => { console.log(JSON.stringify(result)); process.exit(0); };

try {
%(scenario)s
} catch (error) {
  finish({ error: String(error && error.stack || error), seen, recoveries, calls: router.calls });
}
"""


def run_scenario(tmp_path, scenario: str) -> dict:
    if shutil.which("node") is None or not (NODE_MODULES / "autobahn").exists():
        pytest.fail("node and bench/node_modules are missing: make test installs them")
    script = HARNESS % {
        "history": json.dumps(contract.HISTORY),
        "position": json.dumps(contract.EVENT_POSITION_DETAIL),
        "scenario": scenario,
    }
    (tmp_path / "scenario.mjs").write_text(script)
    shutil.copy(KIT, tmp_path / "crossbar-jwt.mjs")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    out = subprocess.run(["node", "scenario.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    result["stderr"] = out.stderr
    return result


def test_live_events_are_delivered_once_in_order_and_a_duplicate_is_dropped(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  start("app.chat.t");
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  const one = router.publish("app.chat.t", [1]);
  router.publish("app.chat.t", [2]);
  router.send("app.chat.t", one); // once more: the same offset
  router.publish("app.chat.t", [3]);
  await until(() => seen.length >= 3, "three events");
  router.publish("app.chat.t", [4]); // the marker: everything before it was handled
  await until(() => seen.length >= 4, "the marker");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert [e["n"] for e in result["seen"]] == [1, 2, 3, 4]
    assert [e["offset"] for e in result["seen"]] == [1, 2, 3, 4]
    assert not any(e["missed"] for e in result["seen"])
    # the first subscribe reads the stream's position before subscribing, then the history after
    # it once subscribed: nothing to recover, nothing reported
    assert result["calls"] == [
        {"topic": "app.chat.t", "since": None, "limit": 1},
        {"topic": "app.chat.t", "since": {"offset": 0, "epoch": "e1"}, "limit": 100},
    ]
    assert result["recoveries"] == []


def test_an_event_kept_just_before_the_first_read_but_sent_live_after_it_is_delivered(tmp_path):
    """The router keeps an event before it sends its EVENTs: a read can count an event whose EVENT
    comes after the read's answer. The first subscription's position is read before subscribing,
    so such an event (published once subscribed) is read from the history and delivered once."""
    result = run_scenario(
        tmp_path,
        """
  let late = null;
  router.beforeRead = () => { // the first read once subscribed: an event is kept, its EVENT not yet sent
    if (!router.subscriptions.has("app.chat.t")) return false;
    late = router.publish("app.chat.t", ["kept first, sent late"], { live: false });
    router.afterAnswer = () => router.send("app.chat.t", late);
    return true;
  };
  start("app.chat.t");
  await until(() => late !== null, "the event kept before the read");
  await until(() => router.calls.length >= 1 && !router.afterAnswer, "the answer");
  await tick(); await tick(); await tick();
  router.publish("app.chat.t", ["marker"]);
  await until(() => seen.some((e) => e.n === "marker"), "the marker");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert [e["n"] for e in result["seen"]] == ["kept first, sent late", "marker"]
    assert result["recoveries"] == []  # a first subscription: nothing announced


def test_a_gap_in_live_events_is_filled_from_the_history_before_the_later_event(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  start("app.chat.t");
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.chat.t", [1]);
  router.publish("app.chat.t", [2], { live: false }); // never sent live
  router.publish("app.chat.t", [3]);
  await until(() => seen.length >= 3, "three events");
  router.publish("app.chat.t", [4]);
  await until(() => seen.length >= 4, "the marker");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    # 3, which came live after the gap, is in the history read then too: delivered once, as it came
    assert [(e["n"], e["missed"]) for e in result["seen"]] == [(1, False), (2, True), (3, False), (4, False)]
    assert result["recoveries"] == [{"recovered": True, "missed": 1}]
    assert result["calls"][2]["since"] == {"offset": 1, "epoch": "e1"}


def test_after_a_lost_connection_the_missed_events_come_first_then_live_ones_each_once(tmp_path):
    """While the history is read after the reconnect, the router sends a live event already in
    the answer (4) and one after it (6): 3, 4, 5 come from the history, then 6, each once."""
    result = run_scenario(
        tmp_path,
        """
  const { client } = start("app.user.alice.notifications");
  await subscribed("app.user.alice.notifications");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.user.alice.notifications", [1]);
  router.publish("app.user.alice.notifications", [2]);
  await until(() => seen.length === 2, "two events");
  router.down = true;
  router.lose();
  await until(() => client.state === "reconnecting", "reconnecting");
  router.publish("app.user.alice.notifications", [3]);
  router.publish("app.user.alice.notifications", [4]);
  router.publish("app.user.alice.notifications", [5]);
  router.beforeAnswer = async () => { // the history was read at 5; then, before its answer:
    router.send("app.user.alice.notifications", router.stream("app.user.alice.notifications").events[3]);
    router.publish("app.user.alice.notifications", [6]);
    await tick(); await tick();
  };
  router.down = false;
  await until(() => seen.length >= 6, "six events");
  router.publish("app.user.alice.notifications", [7]);
  await until(() => seen.length >= 7, "the marker");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    # 4 came live too (during the read): once, as it came; missed are 3 and 5
    assert [(e["n"], e["missed"]) for e in result["seen"]] == [
        (1, False), (2, False), (3, True), (4, False), (5, True), (6, False), (7, False),
    ]  # fmt: skip
    assert result["recoveries"] == [{"recovered": True, "missed": 2}]
    assert result["calls"][2]["since"] == {"offset": 2, "epoch": "e1"}


def test_more_missed_events_than_a_page_are_read_page_after_page(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  const { client } = start("app.chat.t", { pageSize: 2 });
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.chat.t", [1]);
  await until(() => seen.length === 1, "one event");
  router.down = true;
  router.lose();
  await until(() => client.state === "reconnecting", "reconnecting");
  for (let n = 2; n <= 6; n += 1) router.publish("app.chat.t", [n]);
  router.down = false;
  await until(() => recoveries.length === 1, "the recovery");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert [e["n"] for e in result["seen"]] == [1, 2, 3, 4, 5, 6]
    assert result["recoveries"] == [{"recovered": True, "missed": 5}]
    assert [c["since"]["offset"] for c in result["calls"][2:]] == [1, 3, 5]
    assert {c["limit"] for c in result["calls"][2:]} == {2}


def test_a_lost_stream_is_announced_then_its_new_epoch_is_delivered_from_its_start(tmp_path):
    """The router restarted while the page was away: its memory history is gone (another epoch).
    The kit says recovered false first (the application reloads), then delivers all of the new
    stream, which came after the loss."""
    result = run_scenario(
        tmp_path,
        """
  const { client } = start("app.chat.t");
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.chat.t", [1]);
  await until(() => seen.length === 1, "one event");
  router.down = true;
  router.lose();
  await until(() => client.state === "reconnecting", "reconnecting");
  router.newEpoch("app.chat.t"); // the router restarted: its memory history is gone
  router.publish("app.chat.t", [2], { live: false });
  router.down = false;
  await until(() => recoveries.length === 1, "the recovery");
  router.publish("app.chat.t", [3]);
  await until(() => seen.length >= 3, "the live event");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert result["recoveries"] == [{"recovered": False, "missed": 1}]
    assert [(e["n"], e["missed"], e["offset"]) for e in result["seen"]] == [(1, False, 1), (2, True, 1), (3, False, 2)]
    assert result["calls"][-1]["since"] == {"offset": 0, "epoch": "e2"}


def test_a_live_event_of_another_epoch_reads_the_history_and_says_recovered_false(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  start("app.chat.t");
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.chat.t", [1]);
  await until(() => seen.length === 1, "one event");
  router.newEpoch("app.chat.t");
  router.publish("app.chat.t", [2]);
  await until(() => recoveries.length === 1, "the recovery");
  router.publish("app.chat.t", [3]);
  await until(() => seen.length >= 3, "the live events");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    # announced (the stream was lost), then the new stream from its start: 2 came live, then 3
    assert result["recoveries"] == [{"recovered": False, "missed": 0}]
    assert [(e["n"], e["offset"]) for e in result["seen"]] == [(1, 1), (2, 1), (3, 2)]


def test_an_event_without_a_position_is_delivered_once_and_the_history_checked_after_it(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  start("app.chat.t");
  await subscribed("app.chat.t");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.chat.t", [1]);
  router.publish("app.chat.t", [2], { live: false }); // missed
  router.publish("app.chat.t", [3], { position: false }); // delivered without its position
  await until(() => recoveries.length === 1, "the check");
  router.publish("app.chat.t", [4]);
  await until(() => seen.length >= 4, "the marker");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert [(e["n"], e["missed"]) for e in result["seen"]] == [(1, False), (3, False), (2, True), (4, False)]
    assert result["recoveries"] == [{"recovered": True, "missed": 1}]
    assert result["calls"][2]["since"] == {"offset": 1, "epoch": "e1"}


def test_a_new_page_recovers_from_the_position_kept_in_session_storage(tmp_path):
    """A reload: the first client saw 1 and 2 and is gone; a second one (same realm and topic,
    same sessionStorage) gets 3 and 4, missed, and nothing twice."""
    result = run_scenario(
        tmp_path,
        """
  const kept = new Map();
  globalThis.sessionStorage = { getItem: (k) => kept.get(k) ?? null, setItem: (k, v) => kept.set(k, String(v)) };
  const first = start("app.user.alice.notifications");
  await subscribed("app.user.alice.notifications");
  await until(() => router.calls.length === 2, "the first history reads");
  router.publish("app.user.alice.notifications", [1]);
  router.publish("app.user.alice.notifications", [2]);
  await until(() => seen.length === 2, "two events");
  first.client.close();
  await until(() => !router.transport, "the first page gone");
  router.publish("app.user.alice.notifications", [3], { live: false });
  router.publish("app.user.alice.notifications", [4], { live: false });
  start("app.user.alice.notifications");
  await until(() => recoveries.length === 1, "the recovery");
  finish({ seen, recoveries, calls: router.calls, keys: [...kept.keys()], stored: [...kept.values()] });
""",
    )
    assert [(e["n"], e["missed"]) for e in result["seen"]] == [(1, False), (2, False), (3, True), (4, True)]
    assert result["recoveries"] == [{"recovered": True, "missed": 2}]
    assert result["keys"] == ["crossbar-jwt.position realm1 app.user.alice.notifications"]
    assert json.loads(result["stored"][0]) == {"offset": 4, "epoch": "e1"}


def test_another_autobahn_version_is_refused_loudly_and_each_resubscribe_says_recovered_false(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  const other = { ...autobahn, version: "22.12.0" };
  const { client } = start("app.chat.t", { ab: other });
  await subscribed("app.chat.t");
  router.publish("app.chat.t", [1]);
  await until(() => seen.length === 1, "one event");
  router.lose();
  await until(() => recoveries.length === 1, "the resubscribe");
  finish({ seen, recoveries, calls: router.calls });
""",
    )
    assert "AutobahnJS 22.12.0 is not 22.11.1" in result["stderr"]
    assert result["recoveries"] == [{"recovered": False, "missed": 0}]
    assert result["calls"] == []  # no merge it could vouch for: no history read
    assert result["seen"] == [{"n": 1, "missed": False, "offset": None}]


def test_a_topic_without_history_is_reported_and_its_events_still_delivered(tmp_path):
    result = run_scenario(
        tmp_path,
        """
  router.historyError = "authenticator.error.no_history";
  const kept = new Map();
  globalThis.sessionStorage = { getItem: () => JSON.stringify({ offset: 3, epoch: "e1" }), setItem: () => {} };
  start("app.public.feed");
  await until(() => recoveries.length === 1, "the refusal");
  router.publish("app.public.feed", [1]);
  await until(() => seen.length === 1, "the live event");
  finish({ seen, recoveries, calls: router.calls, errors });
""",
    )
    assert result["recoveries"] == [{"recovered": False, "missed": 0, "error": "authenticator.error.no_history"}]
    assert [e["n"] for e in result["seen"]] == [1]
    assert result["errors"] == ["authenticator.error.no_history"]


def test_a_kept_position_the_router_refuses_is_replaced_not_refused_at_every_join(tmp_path):
    """A position in sessionStorage that the router does not take (altered, or another router's):
    announced as lost once, the kit goes on from the stream's position and keeps that one."""
    result = run_scenario(
        tmp_path,
        """
  const altered = JSON.stringify({ offset: 3, epoch: "x".repeat(65) });
  const kept = new Map([["crossbar-jwt.position realm1 app.chat.t", altered]]);
  globalThis.sessionStorage = { getItem: (k) => kept.get(k) ?? null, setItem: (k, v) => kept.set(k, String(v)) };
  router.publish("app.chat.t", [1], { live: false });
  const { client } = start("app.chat.t");
  await until(() => recoveries.length === 1, "the announcement");
  router.publish("app.chat.t", [2]);
  await until(() => seen.length === 1, "the live event");
  router.lose();
  await until(() => recoveries.length === 2, "the recovery after the reconnect");
  finish({ seen, recoveries, stored: kept.get("crossbar-jwt.position realm1 app.chat.t") });
""",
    )
    assert result["recoveries"] == [{"recovered": False, "missed": 0}, {"recovered": True, "missed": 0}]
    assert [e["n"] for e in result["seen"]] == [2]
    assert json.loads(result["stored"]) == {"offset": 2, "epoch": "e1"}
