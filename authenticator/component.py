"""The Autobahn component that wires the pure core to the router.

It runs inside the router worker (a router component), so its procedures are registered before
the transports open. Every handler here is CPU-only and short: nothing blocks the reactor.
"""

from __future__ import annotations

from pathlib import Path

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError

from .reasons import Reason, Rejected
from .settings import ConfigError, load_settings
from .tokens import TokenVerifier

AUTHENTICATE = "authenticator.authenticate"
AUTHORIZE = "authenticator.authorize"


class AuthenticatorComponent(ApplicationSession):
    def __init__(self, config=None):
        super().__init__(config)
        extra = dict(config.extra or {})
        cbdir = Path(extra.pop("cbdir", "."))
        # Read once and validated: a bad configuration stops the router's start with its message.
        try:
            self.settings = load_settings(extra, cbdir)
        except ConfigError as error:
            raise ConfigError(f"authenticator extra in {cbdir / 'config.json'}: {error}") from None
        self.verifier = TokenVerifier(self.settings)
        for key in self.settings.keys.keys:
            self.log.info(
                "authenticator: key kid={kid} for {algs} from {source}",
                kid=key.kid,
                algs=",".join(sorted(key.algorithms)),
                source=key.source,
            )

    async def onJoin(self, details):
        await self.register(self.authenticate, AUTHENTICATE)
        await self.register(self.authorize, AUTHORIZE)
        self.log.info("authenticator: ready ({procs})", procs=", ".join((AUTHENTICATE, AUTHORIZE)))

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, realm, authid, details):
        peer = (details.get("transport") or {}).get("peer")
        try:
            identity = self.verifier.verify(details.get("ticket"))
        except Rejected as rejection:
            self._log_refusal(rejection, peer)
            raise ApplicationError(rejection.reason.uri, rejection.message) from None
        except Exception as error:  # noqa: BLE001 - any failure must become a clean refusal
            # The type only: a message or traceback could quote the token.
            rejection = Rejected(Reason.INTERNAL_ERROR, type(error).__name__)
            self._log_refusal(rejection, peer)
            raise ApplicationError(rejection.reason.uri, Rejected(Reason.INTERNAL_ERROR).message) from None
        self.log.info(
            "authentication accepted: authid={authid} role={role} peer={peer} jti={jti}",
            authid=identity.authid,
            role=identity.role,
            peer=peer,
            jti=identity.jti,
        )
        return {"authid": identity.authid, "role": identity.role, "extra": identity.authextra()}

    def _log_refusal(self, rejection: Rejected, peer) -> None:
        self.log.info(
            "authentication refused: reason={reason} detail={detail} authid={authid} peer={peer} jti={jti}",
            reason=rejection.reason.code,
            detail=rejection.detail or "-",
            authid=rejection.authid,
            peer=peer,
            jti=rejection.jti,
        )

    # -- authorization -----------------------------------------------------------------------

    def authorize(self, session, uri, action, options):
        decision = self.settings.policy.decide(
            authrole=session.get("authrole"),
            authid=session.get("authid"),
            action=action,
            uri=uri,
            match=(options or {}).get("match", "exact"),
            session_roles=_verified_roles(session),
        )
        if not decision.allow:
            self.log.info(
                "authorization denied: {action} {uri} authid={authid} role={role} reason={reason}",
                action=action,
                uri=uri,
                authid=session.get("authid"),
                role=session.get("authrole"),
                reason=decision.reason,
            )
        return decision.as_crossbar_answer()


def _verified_roles(session: dict) -> list:
    """The token roles this component put in the session's authextra, or none.

    Only a dynamic-ticket session's authextra is ours: for anonymous (and static) sessions
    Crossbar passes on the authextra the *client* sent in HELLO, so trusting it there would let
    any visitor claim {"roles": ["admin"]}. Such a session gets exactly its authrole's rules.
    """
    if session.get("authmethod") != "ticket" or session.get("authprovider") != "dynamic":
        return []
    roles = (session.get("authextra") or {}).get("roles")
    return roles if isinstance(roles, list) else []
