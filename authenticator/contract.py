"""The wire names other programs rely on: one place for the router, the kits, the CLI and the
node-config checks. Changing one is a breaking change for deployed clients and configs;
tests/unit/test_contract.py keeps the JavaScript kit (web/crossbar-jwt/crossbar-jwt.js) in step.

Pure constants: the client kits import this module, so it imports nothing.
"""

# -- procedures the authenticator component registers (Crossbar calls the first three) --------
AUTHENTICATE = "authenticator.authenticate"  # ticket logins (the JWT is the ticket)
AUTHENTICATE_HEADERS = "authenticator.authenticate_headers"  # anonymous logins: Bearer header or cookie
AUTHORIZE = "authenticator.authorize"  # the dynamic authorizer of every client role
REFRESH = "authenticator.refresh"  # a live session hands over a fresh token
REVOKE = "authenticator.revoke"  # the admin role ends a user's or a token's sessions
HISTORY = "authenticator.history"  # a topic's kept events after a position (docs/recovery.md)
PRESENCE = "authenticator.presence"  # who is subscribed to a topic (docs/recovery.md#presence)
PROCEDURE_PREFIX = "authenticator."  # the URI space only the authenticator role may register

# -- recovery and presence (docs/recovery.md) ----------------------------------------------------
# The EVENT detail the router sets on every live event of a topic that keeps history: its
# position, {"offset": n, "epoch": "..."}, as authenticator.history returns them.
EVENT_POSITION_DETAIL = "x_position"
# Join/leave events of topic T are published on PRESENCE_TOPIC_PREFIX + T (exact subscriptions
# only, allowed where the policy grants `presence` on T): {"event": "join"|"leave", "authid": ...}.
PRESENCE_TOPIC_PREFIX = "authenticator.presence."
# authenticator.history's errors besides wamp.error.not_authorized / invalid_argument
NO_HISTORY = "authenticator.error.no_history"  # the topic keeps no history (no policy rule says so)
HISTORY_UNAVAILABLE = "authenticator.error.history_unavailable"  # the history store cannot be reached
PRESENCE_UNAVAILABLE = "authenticator.error.presence_unavailable"  # the shared presence store cannot be reached

# -- rejection reasons: ERROR_URI_PREFIX + the code of core.reasons.Reason ---------------------
ERROR_URI_PREFIX = "authenticator.error."
EXPIRED = ERROR_URI_PREFIX + "expired"
REVOKED = ERROR_URI_PREFIX + "revoked"
REFRESH_REFUSED = ERROR_URI_PREFIX + "refresh_refused"

# Reasons after which a kit stops instead of reconnecting: a fresh token from the same issuer is
# refused again (a wrong key, claim, role or configuration needs a person; a loop would only
# hammer the router), or the router ended the user's sessions on purpose (revoked: a freshly
# minted token would log them straight back in). Not final: expired, not_yet_valid, replayed (a
# fresh token fixes them), unknown_key (a key rotated at the identity provider: the router
# fetches its JWKS again), store_unavailable and internal_error (passing), refresh_refused (the
# token's roles changed: reconnecting with it gives the session the new roles).
FINAL_ROUTER_REASONS = frozenset(
    ERROR_URI_PREFIX + code
    for code in (
        "revoked",
        "unknown_role",
        "invalid_claim",
        "missing_claim",
        "origin_not_allowed",
        "missing_token",
        "malformed_token",
        "algorithm_not_allowed",
        "invalid_signature",
        "invalid_issuer",
        "invalid_audience",
        "wrong_realm",
        "lifetime_too_long",
        "grant_not_allowed",
    )
) | frozenset({"wamp.error.no_such_realm", "wamp.error.no_such_role", "wamp.error.no_auth_method"})

# -- the kits' own reasons (never sent by the router) ------------------------------------------
TOKEN_UNAVAILABLE = "crossbar-jwt.token_unavailable"  # noqa: S105 - a reason URI: get_token() failed
NO_TOKEN = "crossbar-jwt.no_token"  # noqa: S105 - a reason URI: get_token() returned None (no user)

# -- what a WELCOME's authextra and a refresh answer carry --------------------------------------
AUTHEXTRA_ROLES = "roles"  # every role of the token, most privileged first
AUTHEXTRA_EXP = "exp"  # the token's exp (Unix time), None for anonymous sessions
AUTHEXTRA_EXPIRES_IN = "expires_in"  # seconds left, by the router's clock (kits use it: clock skew)
AUTHEXTRA_LOGIN_KEY = "login"  # behind proxies: links a login to the router session it becomes

# -- what a node config names: Crossbar loads these Python objects -----------------------------
COMPONENT_CLASS = "authenticator.server.component.AuthenticatorComponent"
PUBLISH_RESOURCE = "authenticator.endpoints.publish.publish_resource"
METRICS_MODULE = "authenticator.endpoints.metrics"
ISSUER_MODULE = "authenticator.demo.issuer"
PROXY_HARDENING = "authenticator.patches.hardening.harden_proxy_worker"
# 0.1's dotted paths, still resolved for one release (CHANGELOG.md, authenticator/deprecated_paths.py):
# node configs and client code that name them keep working; `check` and the router's start name them.
DEPRECATED_PATHS = {
    "authenticator.component.AuthenticatorComponent": COMPONENT_CLASS,
    "authenticator.http_publish.publish_resource": PUBLISH_RESOURCE,
    "authenticator.metrics.app": METRICS_MODULE + ".app",
    "authenticator.issuer.app": ISSUER_MODULE + ".app",
    "authenticator.hardening.harden_proxy_worker": PROXY_HARDENING,
    "authenticator.client.Client": "authenticator.kit.twisted.Client",
    "authenticator.client_asyncio.Client": "authenticator.kit.asyncio.Client",
}
# The component's classnames a node config may name: the current one and its 0.1 path.
COMPONENT_CLASSES = frozenset(
    {COMPONENT_CLASS, *(old for old, new in DEPRECATED_PATHS.items() if new == COMPONENT_CLASS)}
)
