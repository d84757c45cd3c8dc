"""Patch 'publisher-decisions': a publication made for POST /publish was authorized already, by
the endpoint, for the token's user; the router asks its authorizer again per publication. This
router's ``authorize`` answers those sessions with the decision they carry (once, for that URI),
everything else as before."""

from __future__ import annotations

import txaio

DENIED = {"allow": False, "cache": False, "disclose": False}


def install_decision_hook(router, publisher_session: type) -> None:
    """Wrap this router's ``authorize`` so that sessions of `publisher_session` (the HTTP publish
    endpoint's, authenticator/endpoints/publisher_pool.py) are answered by the decision they carry."""
    if getattr(router, "_crossbar_jwt_decisions", False):
        return
    original = router.authorize

    def authorize(session, uri, action, options=None):
        if not isinstance(session, publisher_session):
            return original(session, uri, action, options)
        decided, session.decision = session.decision, None
        if decided is not None and action == "publish" and decided[0] == uri:
            return txaio.create_future_success(decided[1])
        return txaio.create_future_success(dict(DENIED))

    router.authorize = authorize
    router._crossbar_jwt_decisions = True
