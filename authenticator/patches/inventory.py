"""The inventory: every symbol of Crossbar, Autobahn or Twisted that this project replaces or wraps.

A patch is verified on the exact versions of the distributions it touches: an upgrade can rename
a target (the install fails: loud) or keep the name and change what it does (the patch keeps
"working" and protects nothing: silent). The guard (:mod:`.guard`) refuses both before the worker
takes a client. To verify a new version: run the test named in each entry against it, then add
the version here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The versions the whole suite ran on (constraints.txt pins them).
CROSSBAR = ("26.10.1",)
AUTOBAHN = ("26.10.2",)
TWISTED = ("26.10.0",)


@dataclass(frozen=True)
class Patch:
    name: str  # short, stable: it names the patch in the log and in the guard's refusal
    targets: tuple[str, ...]  # "module:Qualified.name" of each replaced or wrapped symbol ("module:Class#attr":
    # an attribute Class.__init__ sets on each instance)
    installed_by: str  # "module:function" in this package's tree
    why: str
    verified: tuple[tuple[str, tuple[str, ...]], ...]  # (distribution, versions) it was verified on
    test: str  # the test that fails when the patch does not hold


PATCHES: tuple[Patch, ...] = (
    Patch(
        name="log-values",
        targets=(
            "crossbar._logging:make_JSON_observer",
            "twisted.logger:globalLogPublisher.addObserver",
            "twisted.logger:globalLogPublisher.removeObserver",
            "twisted.logger:formatEvent",
        ),
        installed_by="authenticator.patches.log_values:bound_log_values",
        why="Crossbar's worker writes log events to the controller verbatim: client text could be any length, "
        "carry tokens or cookies, or start a fake line. The observer is wrapped: values are bounded, tokens "
        "redacted, control characters escaped.",
        verified=(("crossbar", CROSSBAR), ("twisted", TWISTED)),
        test="tests/router/test_log_injection.py::test_a_hello_realm_with_a_fake_line_is_one_escaped_warn_line",
    ),
    Patch(
        name="welcome-details",
        targets=("autobahn.wamp.message:Welcome.marshal",),
        installed_by="authenticator.patches.welcome_details:keep_crossbar_details_out_of_welcome",
        why="Crossbar adds the host name, pid, worker and peer (x_cb_*) and, behind proxies, the client's "
        "upgrade headers to every WELCOME; a client must not read them.",
        verified=(("autobahn", AUTOBAHN), ("crossbar", CROSSBAR)),
        test="tests/router/test_hostile_clients.py::test_a_welcome_on_the_wire_carries_no_crossbar_detail_at_any_level",
    ),
    Patch(
        name="forwarded-yields",
        targets=("crossbar.router.dealer:Dealer.processYield",),
        installed_by="authenticator.patches.forwarded_yields:drop_forwarded_yields",
        why="A YIELD is never authorized and Crossbar discloses the callee its forward_for names: any callee "
        "could answer as root/admin.",
        verified=(("crossbar", CROSSBAR),),
        test="tests/router/test_custom_policy.py::test_a_callee_cannot_answer_as_another_user",
    ),
    Patch(
        name="hello-timeout",
        targets=(
            "crossbar.router.protocol:WampWebSocketServerProtocol.onOpen",
            "crossbar.router.protocol:WampWebSocketServerProtocol.onClose",
            "autobahn.websocket.protocol:WebSocketProtocol.sendCloseFrame",
        ),
        installed_by="authenticator.patches.hello_timeout:install_hello_timeout",
        why="Crossbar has no deadline from the WebSocket upgrade to WELCOME: idle sockets could lock every "
        "other client out.",
        verified=(("crossbar", CROSSBAR), ("autobahn", AUTOBAHN)),
        test="tests/router/test_idle_connections.py",
    ),
    Patch(
        name="request-bodies",
        targets=(
            "twisted.web.server:Request.gotLength",
            "twisted.web.server:Request.handleContentChunk",
            "twisted.web.server:Request.process",
            # what the bound reads to route the path as Twisted will, before the body arrives
            "twisted.web.server:Site.getResourceFor",
            "twisted.web.server:unquote",
            "twisted.web.http:HTTPChannel.allHeadersReceived",
            "twisted.web.wsgi:WSGIResource",
            "autobahn.twisted.resource:WebSocketResource",
        ),
        installed_by="authenticator.patches.body_limit:install",
        why="Twisted Web buffers a request's whole body, with no limit, before any resource sees it, and "
        "Autobahn's WebSocket resource and Crossbar's reverseproxy then read it into memory: every body of every "
        "path is bounded while it arrives, by the path as Twisted routes it.",
        verified=(("twisted", TWISTED), ("autobahn", AUTOBAHN)),
        test="tests/router/test_request_bodies.py",
    ),
    Patch(
        name="publisher-decisions",
        targets=("crossbar.router.router:Router.authorize",),
        installed_by="authenticator.patches.publisher_decisions:install_decision_hook",
        why="POST /publish has decided already; the embedded publisher session is answered with that decision "
        "for that one topic, once, and denied everything else (no second authorizer round trip).",
        verified=(("crossbar", CROSSBAR),),
        test="tests/component/test_publisher_sessions.py",
    ),
    Patch(
        name="debug-formatting",
        targets=(
            "crossbar.router.session:pformat",
            "crossbar.router.router:pformat",
            "crossbar.worker.proxy:pformat",
            "autobahn.websocket.protocol:pformat",
            "crossbar.worker.proxy:ProxyRoute.__str__",
            "crossbar.worker.proxy:ProxyConnection.__str__",
            "autobahn.websocket.protocol:Timings.__str__",
        ),
        installed_by="authenticator.patches.debug_formatting:install",
        why="Crossbar and Autobahn pretty-print debug log arguments (authextra, configs) before the logger drops "
        "the line: ~8 % of a router worker's CPU per login, ~24 % behind proxies. The values are formatted only "
        "when a line is written.",
        verified=(("crossbar", CROSSBAR), ("autobahn", AUTOBAHN)),
        test="tests/component/test_debug_formatting.py",
    ),
    Patch(
        name="meta-events-in-process",
        targets=(
            "crossbar.router.service:RouterServiceAgent.publish",
            "crossbar.worker.types:RouterRealm#session",
            "crossbar.router.router:Router#_realm",
        ),
        installed_by="authenticator.patches.meta_events:install",
        why="The component followed sessions and subscriptions through subscribed meta events: two events "
        "dispatched and delivered per login, ~9 % of the login rate. The realm's service session hands their "
        "arguments to the component as it publishes them, then publishes them as before.",
        verified=(("crossbar", CROSSBAR),),
        test="tests/router/test_lifecycle.py",
    ),
    Patch(
        name="session-publish-decisions",
        targets=(
            "crossbar.router.router:Router.authorize",
            "crossbar.router.router:Router#_roles",
            "crossbar.router.role:RouterRoleDynamicAuth#_authorizer",
            "crossbar.router.session:RouterSession",
        ),
        installed_by="authenticator.patches.publish_decisions:install",
        why="Crossbar's authorization cache ignores the authid and the options, so publishes were never cached: "
        "one authorizer round trip per publication (~8 % of fan-out). A client session reuses its own ALLOW for "
        "a topic when the publication carries only options no decision reads; forward_for, retain, "
        "eligible/exclude and unknown options are decided afresh; a new HELLO on the connection starts with none.",
        verified=(("crossbar", CROSSBAR),),
        test="tests/router/test_custom_policy.py::test_a_session_asks_once_per_topic_and_keeps_at_most_32_topics",
    ),
    Patch(
        name="event-positions",
        targets=(
            "autobahn.wamp.message:Event.marshal",
            "autobahn.wamp.message:Event.parse",
            "crossbar.worker.proxy:ProxyBackendSession.onOpen",
        ),
        installed_by="authenticator.patches.event_positions:install_event_details",
        why="A live event of a history topic must carry its position (x_position) so that a kit can tell it "
        "missed one; Autobahn's Event has no free detail, and a proxy worker re-marshals the router's EVENTs "
        "without the details it does not know (kept only from what its router worker sends).",
        verified=(("autobahn", AUTOBAHN), ("crossbar", CROSSBAR)),
        test="tests/router/test_history.py::test_every_live_event_of_a_history_topic_carries_its_position",
    ),
    Patch(
        name="kit-event-positions",
        targets=(
            "autobahn.wamp.serializer:Serializer.MESSAGE_TYPE_MAP",  # unserialize looks it up on the instance
            "autobahn.wamp.serializer:Serializer.unserialize",
            "autobahn.wamp.message:Event.parse",
            "autobahn.wamp.websocket:WampWebSocketFactory#_serializers",  # copied per connection (copy.copy)
        ),
        installed_by="authenticator.kit.event_positions:keep_positions",
        why="The Python kits' recovery places each live event by its x_position, which Event.parse drops: the "
        "serializers of the kit's own factory (one connection) get an EVENT entry that parses with Event.parse "
        "and notes the detail aside for the kit's handler. Runs in the application's process, without the "
        "router's guard: the kit checks the autobahn version itself (VERIFIED_AUTOBAHN in the module) and on "
        "another one warns and reads every live event from the history instead.",
        verified=(("autobahn", AUTOBAHN),),
        test="tests/unit/test_kit_event_positions.py::test_every_serializer_of_a_kit_factory_hands_over_the_position",
    ),
    Patch(
        name="history-tap",
        targets=(
            "crossbar.router.router:Router.authorize",
            "crossbar.router.broker:Broker.processPublish",
            "crossbar.router.observation:UriObservationMap.add_observer",
            "crossbar.router.broker:Broker#_event_store",
        ),
        installed_by="authenticator.patches.event_positions:install_history_tap",
        why="The tap is the broker's event store (its _event_store, an observer of every history topic). An "
        "event of a history topic is kept once, whether or not anyone is subscribed, before any EVENT of "
        "it is sent (Crossbar's own event history keeps it per receiver, only when someone receives it, with "
        "the publisher's identity even when undisclosed, and serves it by role only).",
        verified=(("crossbar", CROSSBAR),),
        test="tests/router/test_history.py::test_an_event_published_while_nobody_listens_is_kept_once",
    ),
    Patch(
        name="proxy-node-key",
        targets=("crossbar.worker.proxy:_read_node_key",),
        installed_by="authenticator.patches.proxy_node_key:install",
        why="A proxy worker parsed the node key file and rendered it as a QR code twice per client session "
        "(~18 ms a session): the scale-out node ran ~10 x slower per core than one router worker.",
        verified=(("crossbar", CROSSBAR),),
        test="tests/component/test_proxy_node_key.py",
    ),
    Patch(
        name="rlink-events",
        targets=(
            "crossbar.worker.rlink:BridgeSession._setup_event_forwarding",
            "crossbar.router.router:Router.authorize",  # the receiving node's disclosure of an undisclosed relay
            "crossbar.worker.rlink:RLinkRemoteSession.onOpen",  # a relayed event's position, read from the link
        ),
        installed_by="authenticator.patches.rlink_events:install",
        why="Router links mirrored every subscription as an exact one (a prefix or wildcard subscription received "
        "nothing from other nodes), asserted that the publisher was disclosed (an admin's notification never crossed, "
        "or crossed showing the admin to every subscriber), and pulled an event in twice through overlapping "
        "subscriptions: a link mirrors the match, relays each publication once, one hop, undisclosed when it was.",
        verified=(("crossbar", CROSSBAR), ("autobahn", AUTOBAHN)),
        test="tests/router/test_cluster.py",
    ),
    Patch(
        name="protocol-errors",
        targets=("autobahn.wamp.websocket:WampWebSocketProtocol.onMessage",),
        installed_by="authenticator.patches.protocol_errors:install",
        why="Autobahn logs every error of a client's message with its full traceback (~4.2 KB, the client's "
        "words verbatim) and an invalid URI as an internal error: a client's fault becomes one bounded warn "
        "line without traceback, at most a few per window, the rest counted.",
        verified=(("autobahn", AUTOBAHN), ("crossbar", CROSSBAR)),
        test="tests/router/test_log_injection.py::test_a_flood_of_invalid_messages_gives_a_bounded_number_of_lines",
    ),
    Patch(
        name="proxy-protocol-errors",
        targets=("crossbar.worker.proxy:ProxyFrontendSession.onMessage",),
        installed_by="authenticator.patches.protocol_errors:install_proxy_frontend",
        why="Behind proxies, a message out of place (GOODBYE or PUBLISH before WELCOME, a second HELLO) fails the "
        "proxy frontend's own Deferred with a ProtocolError, outside the protocol-errors patch: Twisted logged "
        "'Unhandled error in Deferred' with a traceback per connection, no token needed, and the connection "
        "stayed open. It becomes the same bounded warn line (the same budget) and a close 1002 with the reason.",
        verified=(("crossbar", CROSSBAR), ("autobahn", AUTOBAHN)),
        test="tests/router/test_proxy_protocol_errors.py::test_a_flood_of_messages_out_of_place_gives_a_bounded_number_"
        "of_lines_without_traceback",
    ),
    Patch(
        name="finite-json",
        targets=(
            "autobahn.wamp.serializer:_WAMPJsonDecoder",
            "autobahn.wamp.serializer:_WAMPJsonEncoder",
            "autobahn.wamp.websocket:WampWebSocketProtocol.send",
            "autobahn.twisted.rawsocket:WampRawSocketProtocol.send",
        ),
        installed_by="authenticator.patches.finite_json:install",
        why="Python's JSON reads NaN/Infinity and Autobahn wrote them back bare, which is not JSON: one "
        "publication of [NaN] left every Node AutobahnJS subscriber of the topic deaf. Refused on the way in "
        "(the sender's connection closes with the reason); never written on the way out (the message is not "
        "sent to that JSON peer, one warn line).",
        verified=(("autobahn", AUTOBAHN), ("crossbar", CROSSBAR)),  # Crossbar sends through transport.send
        test="tests/router/test_non_finite_numbers.py::test_a_wamp_message_with_nan_or_infinity_closes_its_sender_"
        "with_the_reason_and_node_subscribers_keep_receiving",
    ),
    Patch(
        name="server-identity",
        targets=(
            "crossbar.worker.transport",  # imported first: its module-level Server version never runs after ours
            "twisted.web.server:version",
            "twisted.web.server:Request.process",  # writes the Server header from that global
            "autobahn.websocket.protocol:WebSocketServerFactory.setSessionParameters",  # stores factory.server
            "autobahn.websocket.protocol:WebSocketServerProtocol.succeedHandshake",  # writes it into the 101
            "crossbar.webservice.base:Resource404.render",
        ),
        installed_by="authenticator.patches.server_identity:install",
        why="Every HTTP answer said Server: Crossbar/<version> (Crossbar sets Twisted's global), the WebSocket "
        "101 Server: Crossbar, and a static path's 404 page showed the client's address, the worker's pid, "
        "Crossbar's version and the directory served: the Server header is 'crossbar-jwt' everywhere and "
        "every such 404 is Twisted's plain page.",
        verified=(("crossbar", CROSSBAR), ("autobahn", AUTOBAHN), ("twisted", TWISTED)),
        test="tests/router/test_host_details.py",
    ),
)


def by_name(name: str) -> Patch:
    for patch in PATCHES:
        if patch.name == name:
            return patch
    raise KeyError(f"no patch named {name!r} in the inventory (authenticator/patches/inventory.py)")
