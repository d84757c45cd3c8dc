"""Python (PyJWT, e.g. in a Django view): mint a token for the router.

Usage: JWT_SECRET=... python mint_token.py alice user
"""

import os
import sys
import time
import uuid

import jwt


def mint(sub: str, roles: list[str], ttl: int = 60) -> str:
    now = int(time.time())
    claims = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, os.environ["JWT_SECRET"], algorithm="HS256")


if __name__ == "__main__":
    print(mint(sys.argv[1], sys.argv[2:]))
