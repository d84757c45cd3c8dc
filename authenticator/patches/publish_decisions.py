"""Patch 'session-publish-decisions': a client session's repeated publications to a topic reuse the
decision its first one got, instead of one authorizer round trip each.

Crossbar caches an authorizer's answer per (realm, authrole, uri, action) -- without the authid or
the request's options -- so the policy never lets it cache a publish (a cached ALLOW would let a
later PUBLISH with ``forward_for`` or ``retain`` through unchecked, and a per-user ALLOW would be
handed to every session of the role). Every publication therefore cost a WAMP call to the
authorizer: ~8 % of the fan-out rate (issue 23).

This wraps the router's ``authorize``: a decision is kept on the session it was made for, per
topic, when the session's role is decided by this project's authorizer (the policy is fixed for a
process, and a session's authid, token roles and grants never change: a refresh with other roles
or other grants is refused). It is reused only for a PUBLISH whose options no decision reads
(core.policy.publish_decision_reusable): one with ``forward_for``, ``retain``, ``eligible``/
``exclude`` or any option this code does not know is decided afresh, before any reuse. Only
allows are kept (a denial is decided, logged and counted each time), at most
:data:`TOPICS_PER_SESSION` topics per session; the decisions go with the WAMP session they were
made for (its session id: a new HELLO on the same connection starts with none).

Installed first on the router (before the HTTP publisher's decision hook and the history tap), so
that both still see every publication, and only sessions of client connections
(``crossbar.router.session.RouterSession``) are considered: the HTTP publisher's pooled sessions
carry a decision per request and never reach this wrapper's store.
"""

from __future__ import annotations

import txaio

TOPICS_PER_SESSION = 32
# On the RouterSession: (the WAMP session id they were made for, {topic: Crossbar answer}). Crossbar
# keeps the RouterSession across a GOODBYE and a new HELLO on the same connection ("WAMP allows to
# reattach a session"), with a new session id, authid and role: decisions never outlive their id.
_DECISIONS = "_crossbar_jwt_kept_publish_decisions"


def install(router, authorizer_procedure: str) -> None:
    from crossbar.router.role import RouterRoleDynamicAuth
    from crossbar.router.session import RouterSession

    from authenticator.core.policy import publish_decision_reusable

    if getattr(router, "_crossbar_jwt_publish_decisions", False):
        return
    original = router.authorize

    def decided_by_us(session) -> bool:
        role = router._roles.get(session._authrole)
        return isinstance(role, RouterRoleDynamicAuth) and role._authorizer == authorizer_procedure

    def authorize(session, uri, action, options=None):
        if action != "publish" or not isinstance(session, RouterSession) or not publish_decision_reusable(options):
            return original(session, uri, action, options)
        joined_as = session._session_id  # a GOODBYE and a new HELLO keep the RouterSession, not the id
        kept_for, kept = session.__dict__.get(_DECISIONS, (None, None))
        if joined_as is not None and kept_for == joined_as and uri in kept:
            return txaio.create_future_success(dict(kept[uri]))
        if joined_as is None or not decided_by_us(session):
            return original(session, uri, action, options)

        def keep(answer):
            if isinstance(answer, dict) and answer.get("allow") is True and session._session_id == joined_as:
                kept_for, decisions = session.__dict__.get(_DECISIONS, (None, None))
                if kept_for != joined_as:
                    decisions = {}
                    session.__dict__[_DECISIONS] = (joined_as, decisions)
                if len(decisions) < TOPICS_PER_SESSION:
                    decisions[uri] = dict(answer)
            return answer

        return original(session, uri, action, options).addCallback(keep)

    router.authorize = authorize
    router._crossbar_jwt_publish_decisions = True
