"""Patch 'rlink-events': what a router link relays, and what the receiving node's subscribers learn.

Crossbar 26.10's router links (crossbar/worker/rlink.py, ``BridgeSession._setup_event_forwarding``)
mirror each subscription of this node on the other node and publish here what arrives. Measured on
three nodes (tests/router/test_cluster.py), they:

1. mirror every subscription as an *exact* one on its URI, and republish to that URI: a prefix or
   wildcard subscription received nothing published on another node (only what an exact
   subscription to the same topic happened to pull in), and the subscriptions made before a
   link (re)connected were mirrored for exact ones only;
2. assert that the publisher is disclosed: an event whose publisher the policy does not disclose
   (an admin's notification to a user) never crossed, with an AssertionError in the log. Disclosing
   it for the link's sake shows the admin's identity to every subscriber on every node;
3. once patterns are mirrored, an event that matches several subscriptions of this node (exact and
   prefix on one topic) reaches the link once per subscription: it must be relayed once;
4. mirror the subscriptions that another node's link made here (its mirrors): node 1's mirror on
   node 2 and node 2's mirror on node 1 kept each other alive after the last real subscriber left,
   so any client could grow every node's subscriptions without bound;
5. mirror presence topics (``authenticator.presence.``), which every node already relays from
   Redis to its own subscribers: each join arrived once per node.

This module replaces ``_setup_event_forwarding`` (the same bookkeeping, in the same places) so that
a link mirrors a subscription while a session of this node that is not a link (the link roles,
``link_roles``) is subscribed to it (``on_subscribe``/``on_unsubscribe`` followed, not only
create/delete), never a ``wamp.`` or presence topic, with its match policy; it republishes to the
event's own topic, once per publication, and never out on another link (``exclude_authrole``: one hop, whatever the
disclosure). An undisclosed event crosses without a publisher: its ``forward_for`` names no one
(``UNDISCLOSED``) and the receiving router is told not to disclose it (``Router.authorize`` for the
link's own session, role ``trusted``, gives ``disclose: false``), so subscribers there see what
subscribers on the publishing node see: no publisher. A disclosed event keeps Crossbar's behaviour
(the original publisher, through ``forward_for``). A relayed event of a history topic carries the
position the other node sent it with, so subscribers here get its
``x_position`` as there.

A relay does not carry a publication's eligible/exclude options (Crossbar's does not either): the
authorizer refuses them on a realm with router links (``LINKED_FILTER_REASON``,
authenticator/core/policy.py). Loops are broken by role, not by content: a hand-written mesh must
give every node's links one role (docs/scaling.md).
"""

from __future__ import annotations

from collections import OrderedDict

from authenticator.config.cluster import LINK_ROLE
from authenticator.contract import PRESENCE_TOPIC_PREFIX
from authenticator.core.logtext import clip
from authenticator.patches.event_positions import RELAYED_POSITION, from_the_router, install_event_details, position_of

# The authid and authrole of the forward_for entry of a relayed event whose publisher was not
# disclosed (its session: 0, which no session has).
UNDISCLOSED = "crossbar-jwt.undisclosed"
# Publications a link leg remembers having relayed: an event that reaches it through two
# subscriptions (exact and prefix on one topic) arrives in the same dispatch, well within it.
KEEP_RELAYED = 4096


def install() -> None:
    from crossbar.router.router import Router
    from crossbar.worker.rlink import BridgeSession, RLinkRemoteSession

    # The EVENTs a link receives from the other node's router carry their position: recorded at
    # parse (as a proxy worker does), only on the links' connections, never from what a client
    # sends, so that the relay carries it on (RELAYED_POSITION) and subscribers here get it too.
    install_event_details(passthrough=True)
    if getattr(BridgeSession, "_crossbar_jwt_rlink_events", False):
        return
    open_link = RLinkRemoteSession.onOpen

    def on_open(self, transport):
        serializer = getattr(transport, "_serializer", None)
        if serializer is not None:
            serializer.unserialize = from_the_router(serializer.unserialize)
        return open_link(self, transport)

    RLinkRemoteSession.onOpen = on_open
    BridgeSession._setup_event_forwarding = _setup_event_forwarding
    BridgeSession._crossbar_jwt_rlink_events = True
    authorize = Router.authorize

    def authorize_undisclosed_relays(self, session, uri, action, options=None):
        answer = authorize(self, session, uri, action, options)
        if action == "publish" and getattr(session, "_authrole", None) == "trusted" and _undisclosed(options):
            answer.addCallback(lambda a: {**a, "disclose": False} if isinstance(a, dict) else a)
        return answer

    Router.authorize = authorize_undisclosed_relays


def _undisclosed(options) -> bool:
    forward_for = (options or {}).get("forward_for") or ()
    return bool(forward_for) and isinstance(forward_for[0], dict) and forward_for[0].get("authrole") == UNDISCLOSED


def relay_forward_for(details) -> list[dict]:
    """The forward_for a link publishes a relayed event with: its publisher, or no one."""
    if details.publisher is None:
        return [{"session": 0, "authid": UNDISCLOSED, "authrole": UNDISCLOSED}]
    return [{"session": details.publisher, "authid": details.publisher_authid or "",
             "authrole": details.publisher_authrole or ""}]  # fmt: skip


def _setup_event_forwarding(self, other):
    """Crossbar's BridgeSession._setup_event_forwarding, with the changes the module names."""
    from autobahn.wamp.exception import ApplicationError, TransportLost
    from autobahn.wamp.types import PublishOptions, SubscribeOptions
    from twisted.internet.defer import inlineCallbacks

    relayed: OrderedDict[int, None] = OrderedDict()

    def link_roles() -> list[str]:
        # cluster-config's link role, and the role this link was given on the other node: in a
        # hand-written symmetric mesh, the other nodes' links have that role here
        joined_as = None if self.IS_REMOTE_LEG else getattr(other, "_authrole", None)
        return [LINK_ROLE] if joined_as in (None, LINK_ROLE) else [LINK_ROLE, joined_as]

    def relay(uri: str, args, kwargs, details):
        if details.forward_for:  # relayed already by another node: one hop (Crossbar's rule)
            return None
        if details.publication in relayed:  # the same publication through a second subscription
            return None
        relayed[details.publication] = None
        if len(relayed) > KEEP_RELAYED:
            relayed.popitem(last=False)
        forward_for = relay_forward_for(details)
        position = position_of(details.publication)  # a history topic's, as the other node sent it
        if position is not None:
            forward_for[0][RELAYED_POSITION] = position  # taken out by the history tap here
        options = PublishOptions(
            acknowledge=True, exclude_me=True, exclude_authid=self._exclude_authid,
            exclude_authrole=[*link_roles(), *(self._exclude_authrole or [])],  # never out on another link
            forward_for=forward_for,
        )  # fmt: skip
        topic = details.topic or uri  # a pattern subscription's event names its own topic
        published = self.publish(topic, *args, options=options, **kwargs)

        def failed(failure):
            if not failure.check(TransportLost):
                error = failure.value.error if failure.check(ApplicationError) else type(failure.value).__name__
                self.log.warn("authenticator: a router link could not relay an event of {topic}: {error}",
                              topic=clip(topic, 200), error=clip(str(error), 200))  # fmt: skip

        published.addErrback(failed)
        return None

    router = getattr(getattr(self, "_transport", None), "_router", None)  # the local leg's, in this process

    @inlineCallbacks
    def is_link(session_id):
        """Whether a session of this node is another node's link: its mirrors are never mirrored back
        (two links would keep each other's mirror alive for ever)."""
        if router is not None:
            session = router._session_id_to_session.get(session_id)
            role = getattr(session, "_authrole", None) if session is not None else None
        else:
            try:
                role = (yield self.call("wamp.session.get", session_id)).get("authrole")
            except ApplicationError:
                role = None
        # gone already (meta events come after): not a link, and its unsubscribe follows
        return role is not None and role in link_roles()

    def mirrored_topic(uri: str) -> bool:
        # the meta API, and presence: every node relays the presence announcements of Redis to its
        # own subscribers already (a mirror would deliver each one once per node)
        return not uri.startswith(("wamp.", PRESENCE_TOPIC_PREFIX))

    @inlineCallbacks
    def mirror(sub_id, sub_details, user):
        """Mirror subscription sub_id on the other node for its subscriber `user` (a session of this
        node that is not a link), unless mirrored already."""
        uri = sub_details["uri"]
        entry = self._subs.get(sub_id)
        if entry is None:
            entry = self._subs[sub_id] = {**sub_details, "sub": None, "users": set(), "pending": False}
        entry["users"].add(user)
        if entry["sub"] is not None or entry["pending"]:
            return  # mirrored already (or being mirrored: a link that reconnected part-way)
        entry["pending"] = True

        def on_event(*args, **kwargs):
            details = kwargs.pop("details")
            return relay(uri, args, kwargs, details)

        match = sub_details.get("match") or "exact"
        try:
            sub = yield other.subscribe(on_event, uri, options=SubscribeOptions(match=match, details=True))
        except TransportLost:
            entry["pending"] = False
            return
        entry["pending"] = False
        if self._subs.get(sub_id) is not entry or not entry["users"]:  # unsubscribed here meanwhile
            try:
                yield sub.unsubscribe()
            except TransportLost:
                pass
        else:
            entry["sub"] = sub

    @inlineCallbacks
    def drop(sub_id):
        mirrored = self._subs.pop(sub_id, None)
        if mirrored and mirrored["sub"] is not None and mirrored["sub"].active:
            try:
                yield mirrored["sub"].unsubscribe()
            except TransportLost:
                pass

    @inlineCallbacks
    def on_subscription_create(session_id, sub_details, details=None):
        if not mirrored_topic(sub_details["uri"]):
            return
        if not (yield is_link(session_id)):
            yield mirror(sub_details["id"], sub_details, session_id)

    @inlineCallbacks
    def on_subscription_subscribe(session_id, sub_id, details=None):
        # a subscription made by a link (a mirror of another node's) that a user of this node joins
        entry = self._subs.get(sub_id)
        if entry is not None and session_id in entry["users"]:
            return
        if (yield is_link(session_id)):
            return
        if entry is None:
            try:
                entry = yield self.call("wamp.subscription.get", sub_id)
            except ApplicationError:
                return  # gone meanwhile
            if not mirrored_topic(entry["uri"]):
                return
        yield mirror(sub_id, entry, session_id)

    def on_subscription_unsubscribe(session_id, sub_id, details=None):
        entry = self._subs.get(sub_id)
        if entry is None:
            return None
        entry["users"].discard(session_id)
        # only links remain subscribed (their mirrors of other nodes' subscriptions): drop ours
        return drop(sub_id) if not entry["users"] else None

    def on_subscription_delete(session_id, sub_id, details=None):
        return drop(sub_id)

    @inlineCallbacks
    def forward_current_subs():
        subs = yield self.call("wamp.subscription.list")
        for match in ("exact", "prefix", "wildcard"):  # Crossbar mirrored "exact" only
            for sub_id in subs.get(match, []):
                try:
                    sub = yield self.call("wamp.subscription.get", sub_id)
                    sessions = yield self.call("wamp.subscription.list_subscribers", sub_id)
                except ApplicationError:
                    continue  # gone meanwhile
                if not mirrored_topic(sub["uri"]):
                    continue
                for session_id in sessions or ():
                    if not (yield is_link(session_id)):
                        yield mirror(sub_id, sub, session_id)

    @inlineCallbacks
    def on_remote_join(_session, _details):
        yield forward_current_subs()

    def on_remote_leave(_session, _details):
        self._subs = {}  # mirrored again at the next join (crossbar issue #1909)

    @inlineCallbacks
    def setup():
        if self.IS_REMOTE_LEG:
            yield forward_current_subs()
        else:
            other.on("join", on_remote_join)
            other.on("leave", on_remote_leave)
        yield self.subscribe(on_subscription_create, "wamp.subscription.on_create",
                             options=SubscribeOptions(details_arg="details"))  # fmt: skip
        yield self.subscribe(on_subscription_subscribe, "wamp.subscription.on_subscribe",
                             options=SubscribeOptions(details_arg="details"))  # fmt: skip
        yield self.subscribe(on_subscription_unsubscribe, "wamp.subscription.on_unsubscribe",
                             options=SubscribeOptions(details_arg="details"))  # fmt: skip
        yield self.subscribe(on_subscription_delete, "wamp.subscription.on_delete",
                             options=SubscribeOptions(details_arg="details"))  # fmt: skip

    return setup()
