"""Python (PyJWT + the standard library, e.g. in a Django view or a Celery task): publish an event.

Mints a short-lived token with the `backend` role and POSTs one publication to the router. While
the router cannot be reached (connection refused or dropped, no answer) or answers 503, it tries
again, at most 5 attempts, waiting the 503's Retry-After or 0.5, 1, 2, 4 s; every attempt carries
the same Idempotency-Key, so the router publishes it once however many attempts reach it.
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

ATTEMPTS = 5
MAX_WAIT_SECONDS = 30


def backend_token(ttl: int = 60) -> str:
    now = int(time.time())
    claims = {"sub": "billing", "roles": ["backend"], "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, os.environ["JWT_SECRET"], algorithm="HS256")


def publish(topic: str, *args, **kwargs) -> dict:
    body = json.dumps({"topic": topic, "args": list(args), "kwargs": kwargs}).encode()
    key = str(uuid.uuid4())  # one key per publication, the same on every attempt
    for attempt in range(1, ATTEMPTS + 1):
        request = urllib.request.Request(
            os.environ.get("PUBLISH_URL", "http://127.0.0.1:8080/publish"),
            data=body,
            headers={"Authorization": f"Bearer {backend_token()}", "Content-Type": "application/json",
                     "Idempotency-Key": key},  # fmt: skip
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)  # {"id": <publication id>}, the same for every attempt
        except urllib.error.HTTPError as error:  # 400/401/403/413/422: the body says why; retrying will not help
            if error.code != 503 or attempt == ATTEMPTS:
                raise SystemExit(f"{error.code}: {json.load(error)}") from None
            after = error.headers.get("Retry-After", "")
            wait = min(int(after), MAX_WAIT_SECONDS) if after.isdigit() else 0.5 * 2 ** (attempt - 1)
            why = "503"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:  # refused, dropped, no answer
            if attempt == ATTEMPTS:
                raise SystemExit(f"publish: no answer after {ATTEMPTS} attempts: {error}") from None
            wait, why = 0.5 * 2 ** (attempt - 1), type(getattr(error, "reason", error)).__name__
        print(f"publish: attempt {attempt} failed ({why}); retrying in {wait:g} s", file=sys.stderr)
        time.sleep(wait)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    print(json.dumps(publish(sys.argv[1], *sys.argv[2:])))
