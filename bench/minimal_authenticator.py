"""The `minimal` system's component: a dynamic ticket authenticator that verifies the JWT with PyJWT
and does nothing else (no revocation, no expiry timers, no limits, no logging; static permissions
authorize). What anyone would write in ten lines: the floor crossbar-jwt's login is measured against."""

from __future__ import annotations

import os

import jwt
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError

PROCEDURE = "bench.minimal.authenticate"


class MinimalAuthenticator(ApplicationSession):
    async def onJoin(self, details):
        secret = os.environ["JWT_SECRET"]

        def authenticate(realm, authid, details):
            try:
                claims = jwt.decode(details["ticket"], secret, algorithms=["HS256"])
            except jwt.InvalidTokenError as error:
                raise ApplicationError("bench.minimal.invalid_token", str(error)) from None
            return {"authid": claims["sub"], "role": claims["roles"][0]}

        await self.register(authenticate, PROCEDURE)


class MinimalAuthenticatorWithoutDebugFormatting(MinimalAuthenticator):
    """The same, in a worker with crossbar-jwt's 'debug-formatting' patch (Crossbar's eager pformat of
    debug log arguments removed): what login costs the product over PyJWT alone, Crossbar's waste
    taken out of both sides."""

    def __init__(self, config=None):
        from authenticator.patches.debug_formatting import install

        install()
        super().__init__(config)
