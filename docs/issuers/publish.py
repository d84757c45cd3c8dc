"""Python (PyJWT + the standard library, e.g. in a Django view or a Celery task): publish an event.

Mints a short-lived token with the `backend` role and POSTs one publication to the router.
Usage: JWT_SECRET=... python publish.py app.user.bob.notifications "Your report is ready"
(PUBLISH_URL defaults to http://127.0.0.1:8080/publish)
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import jwt


def backend_token(ttl: int = 60) -> str:
    now = int(time.time())
    claims = {"sub": "billing", "roles": ["backend"], "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, os.environ["JWT_SECRET"], algorithm="HS256")


def publish(topic: str, *args, **kwargs) -> dict:
    request = urllib.request.Request(
        os.environ.get("PUBLISH_URL", "http://127.0.0.1:8080/publish"),
        data=json.dumps({"topic": topic, "args": list(args), "kwargs": kwargs}).encode(),
        headers={"Authorization": f"Bearer {backend_token()}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)  # {"id": <publication id>}
    except urllib.error.HTTPError as error:  # 400/401/403/413: the body says why
        raise SystemExit(f"{error.code}: {json.load(error)}") from None


if __name__ == "__main__":
    print(json.dumps(publish(sys.argv[1], *sys.argv[2:])))
