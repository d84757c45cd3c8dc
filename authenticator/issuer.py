"""The demo token issuer: a Flask app that stands in for *your* web application's login.

Crossbar hosts it on the web transport (`"auth": {"type": "wsgi", ...}`), in a thread pool, so
the page and its token endpoint share an origin with the WebSocket. It signs with the same key
configuration as the authenticator.

    POST /auth/login   {"username", "password"} -> session cookie (HttpOnly, SameSite=Lax)
    POST /auth/logout
    GET  /auth/token   -> {"token", "exp"}: a short-lived JWT for the logged-in user, every call
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, jsonify, request, session
from werkzeug.security import check_password_hash

from .keys import load_hmac_secret
from .settings import component_extra, load_settings
from .tokens import user_claims

TOKEN_TTL_SECONDS = 60
# Checked against when a username is unknown, so both paths cost one hash check (no user probing).
_DUMMY_HASH = "scrypt:32768:8:1$0000000000000000$" + "0" * 128


def create_app(cbdir: Path) -> Flask:
    extra = component_extra(cbdir / "config.json")
    issuer_config = extra.pop("issuer", {})
    settings = load_settings(extra, cbdir)
    key = settings.keys.signing_key()
    users = json.loads((cbdir / issuer_config.get("users_file", "users.json")).read_text(encoding="utf-8"))
    ttl = int(issuer_config.get("token_ttl_seconds", TOKEN_TTL_SECONDS))
    cookie_name = settings.cookie.name if settings.cookie else None

    app = Flask(__name__)
    app.secret_key, _ = load_hmac_secret("ISSUER_SESSION_SECRET", cbdir / "issuer-session.key", generate=True)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="session")

    @app.post("/login")
    def login():
        body = request.get_json(silent=True) or {}
        username, password = body.get("username"), body.get("password")
        user = users.get(username) if isinstance(username, str) else None
        valid = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, str(password or ""))
        if not (user and valid):
            return jsonify(error="Wrong username or password. The demo users are in the README."), 401
        session.clear()
        session["authid"] = username
        return jsonify(authid=username, roles=user["roles"])

    @app.post("/logout")
    def logout():
        session.clear()
        response = jsonify(ok=True)
        if cookie_name:
            response.delete_cookie(cookie_name)
        return response

    @app.get("/me")
    def me():
        authid = session.get("authid")
        if authid not in users:
            return jsonify(authid=None, roles=[])
        return jsonify(authid=authid, roles=users[authid]["roles"])

    @app.get("/token")
    def token():
        authid = session.get("authid")
        if authid not in users:
            return jsonify(error="Not logged in: POST /auth/login first."), 401
        claims = user_claims(authid, users[authid]["roles"], ttl)
        encoded = key.sign(claims)
        response = jsonify(token=encoded, exp=claims["exp"])
        response.headers["Cache-Control"] = "no-store"
        if cookie_name:  # for clients that carry the token in the cookie instead of the ticket
            response.set_cookie(cookie_name, encoded, max_age=ttl, httponly=True, samesite="Strict")
        return response

    return app


# Crossbar imports `app` in the router worker, whose working directory is the node directory.
app = create_app(Path(os.environ.get("CROSSBAR_DIR") or Path.cwd()))
