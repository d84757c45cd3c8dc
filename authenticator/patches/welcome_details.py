"""Patch 'welcome-details': a client's WELCOME carries what the authenticator returned, not
Crossbar's additions (host name, pid, the client's own HTTP headers)."""

from __future__ import annotations


def keep_crossbar_details_out_of_welcome() -> None:
    """What a client's WELCOME may carry: what the authenticator returned, not Crossbar's additions.

    Crossbar 26 puts ``x_cb_node`` (the host name unless the node config names the node),
    ``x_cb_worker``, ``x_cb_peer`` and ``x_cb_pid`` into every WELCOME twice: as top-level details
    (the message's custom attributes) and in ``authextra`` (router/session.py, welcome()); proxy
    workers add ``x_cb_proxy_*`` to authextra, and behind proxies the router's session gets
    ``transport``: the frontend connection's details with **every HTTP header the client sent**,
    so a page's script could read its own HttpOnly token cookie back from WELCOME. Crossbar has no
    option to leave them out. They stay in the router's own view of the session (meta API,
    authorizer); only the WELCOME message on the wire leaves them out.

    The filter does not depend on the message's layout: every dict of the marshalled message, at
    any depth, loses its ``x_cb_*`` and ``transport`` keys (copies: the message shares its dicts
    with the router's session). Every serializer the ``ws`` paths offer (JSON; CBOR between proxy
    and router) goes through ``marshal``.
    """
    from autobahn.wamp.message import Welcome

    if getattr(Welcome.marshal, "_crossbar_jwt_keeps_details_out", False):
        return
    marshal = Welcome.marshal

    def left_out(value):
        if isinstance(value, dict):
            return {key: left_out(item) for key, item in value.items() if not _crossbar_detail(key)}
        if isinstance(value, list | tuple):
            return type(value)(left_out(item) for item in value)
        return value

    def marshal_for_the_client(self):
        return left_out(marshal(self))

    marshal_for_the_client._crossbar_jwt_keeps_details_out = True
    Welcome.marshal = marshal_for_the_client


def _crossbar_detail(key: object) -> bool:
    return key == "transport" or (isinstance(key, str) and key.startswith("x_cb_"))
