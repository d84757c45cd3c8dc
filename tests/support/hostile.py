"""A generated corpus of malicious and malformed tokens, each with the reason it must be refused.

Built for the router's test configuration (HS256 with TEST_SECRET, no kid, exp required, no
audience configured, authid at most 64 characters). Deterministic: the same corpus every run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import jwt

from tests.support.keys import new_private_key, public_pem
from tests.support.tokens import TEST_SECRET

ATTACKER_SECRET = "attacker-" + "x" * 40


@dataclass(frozen=True)
class Hostile:
    label: str
    ticket: str
    reason: str  # authenticator.error.<reason>


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value) -> str:
    """A header or payload segment from a dict (JSON) or from raw text/bytes."""
    return b64(json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value)


def hs256(signing_input: str, secret: str = TEST_SECRET) -> str:
    return b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())


def signed(header, payload, secret: str = TEST_SECRET) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    return f"{signing_input}.{hs256(signing_input, secret)}"


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"sub": "mallory", "roles": ["user"], "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()
HS = {"alg": "HS256", "typ": "JWT"}


def corpus() -> list[Hostile]:
    items: list[Hostile] = []
    add = lambda label, ticket, reason: items.append(Hostile(label, ticket, reason))  # noqa: E731
    good = signed(HS, claims())
    head, body, sig = good.split(".")

    # alg none in every spelling, with no, garbage and a real HMAC signature
    for alg in ["none", "None", "NONE", "nOnE", "NoNe", "none ", " none", "none\x00", "non\u0435", "", "null",
                None, 0, 1, True, ["none"], {"alg": "none"}, "HS256 ", "hs256", "Hs256", "HS-256",
                "HS256\x00"]:  # fmt: skip
        header = {"alg": alg, "typ": "JWT"}
        unsigned = f"{segment(header)}.{body}"
        for name, signature in (("empty", ""), ("garbage", "c2lnbmF0dXJl"), ("hmac", hs256(unsigned))):
            add(f"alg {alg!r}, {name} signature", f"{unsigned}.{signature}", "algorithm_not_allowed")
    add("no alg at all", signed({"typ": "JWT"}, claims()), "algorithm_not_allowed")

    # algorithm confusion: asymmetric and other HMAC algorithms, signed with the secret or keys
    rsa = new_private_key("rsa")
    for alg in ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "ES256K",
                "EdDSA", "HS384", "HS512"]:  # fmt: skip
        add(f"{alg} header, HMAC(secret) signature", signed({"alg": alg}, claims()), "algorithm_not_allowed")
    add("RS256 by an attacker key", jwt.encode(claims(), rsa, algorithm="RS256"), "algorithm_not_allowed")
    add("HS256 with a public key as the HMAC secret", signed(HS, claims(), public_pem(rsa).decode()),
        "invalid_signature")  # fmt: skip
    add("HS256 with the attacker's secret", signed(HS, claims(), ATTACKER_SECRET), "invalid_signature")
    add("another token's signature", f"{head}.{body}.{signed(HS, claims(sub='x')).split('.')[2]}", "invalid_signature")
    add("HS256 with an empty secret", signed(HS, claims(), ""), "invalid_signature")
    add("empty signature", f"{head}.{body}.", "invalid_signature")
    add("empty payload", f"{head}..{sig}", "invalid_signature")
    for guess in ["secret", "password", "changeme", "jwt", "key", "123456", "your-256-bit-secret", TEST_SECRET[:-1],
                  TEST_SECRET + "x", TEST_SECRET.upper(), TEST_SECRET[::-1], " " + TEST_SECRET, "null", "undefined",
                  b64(TEST_SECRET)]:  # fmt: skip
        add(f"guessed secret {guess[:12]!r}...", signed(HS, claims(), guess), "invalid_signature")

    # shape: parts, dots, emptiness, size
    for label, ticket in [("one part", head), ("two parts", f"{head}.{body}"), ("four parts", f"{good}.{sig}"),
                          ("five parts", f"{good}.a.b"), ("only dots", ".."), ("one dot", "."), ("four dots", "...."),
                          ("trailing dot", f"{good}."), ("leading dot", f".{good}"),
                          ("empty header", f".{body}.{sig}"),
                          ("dot inside the payload", f"{head}.{body[:5]}.{body[5:]}.{sig}"),
                          ("spaces around", f" {good} "), ("newline at the end", f"{good}\n"),
                          ("a word", "admin"), ("a URL", "https://attacker.example/token"),
                          ("a JSON object", json.dumps(claims())), ("Bearer prefix", f"Bearer {good}")]:  # fmt: skip
        add(label, ticket, "malformed_token")
    add("8 KiB + 1", signed(HS, claims(pad="p" * 6200)), "malformed_token")
    # 60 KB: through the router a larger ticket never reaches us (the transport closes it, 1009).
    add("60 KB token", signed(HS, claims(pad="p" * 44_000)), "malformed_token")
    add("10,000-character kid", signed({**HS, "kid": "k" * 10_000}, claims()), "malformed_token")

    # truncated segments
    for cut in range(1, 7):
        add(f"header cut by {cut}", f"{head[:-cut]}.{body}.{sig}", "malformed_token")
        # PyJWT refuses non-canonical base64url as malformed; a canonical remainder fails the signature.
        add(f"payload cut by {cut}", f"{head}.{body[:-cut]}.{sig}", _cut_reason(body[:-cut]))
        add(f"signature cut by {cut}", f"{head}.{body}.{sig[:-cut]}", _cut_reason(sig[:-cut]))

    # characters outside base64url, in each segment
    for char in ["!", " ", "+", "/", '"', "\\", "é", "\u202e", "\x00", "%", "*", "$", "=", "\t"]:
        add(f"{char!r} in the header", f"{head[:4]}{char}{head[4:]}.{body}.{sig}", "malformed_token")
        add(f"{char!r} in the payload", f"{head}.{body[:4]}{char}{body[4:]}.{sig}", "malformed_token")
        add(f"{char!r} in the signature", f"{head}.{body}.{sig[:4]}{char}{sig[4:]}", "malformed_token")

    # not JSON, not an object, not UTF-8, NaN, duplicates, deep nesting
    for label, raw in [("not JSON", "not json"), ("a JSON list", "[1,2]"), ("JSON null", "null"),
                       ("a JSON string", '"HS256"'), ("an open brace", "{"), ("a number", "42"),
                       ("invalid UTF-8", b"\xff\xfe{}"), ("NaN", '{"alg":NaN}'),
                       ("duplicate alg", '{"alg":"none","alg":"HS256"}'),
                       ("duplicate alg, other order", '{"alg":"HS256","alg":"none"}'),
                       ("nested 2,000 deep", '{"alg":"HS256","x":' + "[" * 2000 + "]" * 2000 + "}")]:  # fmt: skip
        header_segment = segment(raw)
        unsigned = f"{header_segment}.{body}"
        add(f"header: {label}", f"{unsigned}.{hs256(unsigned)}", "malformed_token")
    now = int(time.time())
    for label, raw in [("not JSON", "not json"), ("a JSON list", '["sub","alice"]'), ("JSON null", "null"),
                       ("a JSON string", '"alice"'), ("truncated JSON", '{"sub":"alice"'),
                       ("invalid UTF-8", b'{"sub":"\xff"}'),
                       ("duplicate sub", f'{{"sub":"mallory","sub":"root","roles":["user"],"exp":{now + 300}}}'),
                       ("duplicate roles", f'{{"sub":"mallory","roles":["user"],"roles":["admin"],"exp":{now + 300}}}'),
                       ("duplicate exp", f'{{"sub":"mallory","roles":["user"],"exp":0,"exp":{now + 300}}}'),
                       ("NaN exp", '{"sub":"mallory","roles":["user"],"exp":NaN}'),
                       ("Infinity exp", '{"sub":"mallory","roles":["user"],"exp":Infinity}'),
                       ("nested 2,000 deep", '{"sub":"mallory","x":' + "[" * 2000 + "]" * 2000 + "}"),
                       ("nested objects 1,500 deep", '{"a":' * 1500 + "1" + "}" * 1500)]:  # fmt: skip
        add(f"payload: {label}", signed(HS, raw), "malformed_token")

    # claims of the wrong type or value (validly signed)
    for label, overrides, reason in [
        ("exp as a string", {"exp": str(now + 300)}, "invalid_claim"),
        ("exp as true", {"exp": True}, "invalid_claim"),
        ("exp as a list", {"exp": [now + 300]}, "invalid_claim"),
        ("exp as an object", {"exp": {"$date": now + 300}}, "invalid_claim"),
        ("exp 1e400 (infinite)", {"exp": _RawNumber("1e400")}, "invalid_claim"),
        ("exp missing", {"exp": _DROP}, "missing_claim"),
        ("exp null", {"exp": None}, "missing_claim"),
        ("exp 0", {"exp": 0}, "expired"),
        ("exp negative", {"exp": -1}, "expired"),
        ("exp an hour ago", {"exp": now - 3600}, "expired"),
        ("nbf in an hour", {"nbf": now + 3600}, "not_yet_valid"),
        ("iat in an hour", {"iat": now + 3600}, "not_yet_valid"),
        ("nbf as a string", {"nbf": "0"}, "invalid_claim"),
        ("iat as a string", {"iat": "now"}, "invalid_claim"),
        ("iat as false", {"iat": False}, "invalid_claim"),
        ("sub as a number", {"sub": 1}, "invalid_claim"),
        ("sub as a list", {"sub": ["root"]}, "invalid_claim"),
        ("sub as an object", {"sub": {"id": "root"}}, "invalid_claim"),
        ("sub as true", {"sub": True}, "invalid_claim"),
        ("sub empty", {"sub": ""}, "invalid_claim"),
        ("sub missing", {"sub": _DROP}, "missing_claim"),
        ("sub null", {"sub": None}, "missing_claim"),
        ("roles as an object", {"roles": {"admin": True}}, "invalid_claim"),
        ("roles as a number", {"roles": 1}, "invalid_claim"),
        ("roles with a number", {"roles": ["user", 1]}, "invalid_claim"),
        ("roles nested", {"roles": [["admin"]]}, "invalid_claim"),
        ("roles empty", {"roles": []}, "unknown_role"),
        ("roles unknown", {"roles": ["superuser"]}, "unknown_role"),
        ("roles empty string", {"roles": ""}, "unknown_role"),
        ("roles missing", {"roles": _DROP}, "missing_claim"),
        ("the component's own role", {"roles": ["authenticator"]}, "unknown_role"),
        ("the proxies' role", {"roles": ["proxy-authenticator"]}, "unknown_role"),
        ("a Crossbar-internal role", {"roles": ["trusted"]}, "unknown_role"),
        ("admin with a trailing space", {"roles": ["admin "]}, "unknown_role"),
        ("ADMIN in capitals", {"roles": ["ADMIN"]}, "unknown_role"),
        ("admin with a NUL", {"roles": ["admin\x00"]}, "unknown_role"),
        ("admin in Cyrillic", {"roles": ["\u0430dmin"]}, "unknown_role"),
        ("role as an object", {"roles": _DROP, "role": {"name": "admin"}}, "invalid_claim"),
        ("aud empty list", {"aud": []}, "invalid_audience"),
        ("aud null in a list", {"aud": [None]}, "invalid_claim"),
        ("aud as an object", {"aud": {"a": 1}}, "invalid_claim"),
        ("aud as a number", {"aud": 1}, "invalid_claim"),
        ("aud not for us", {"aud": "https://other.example"}, "invalid_audience"),
        ("aud list not for us", {"aud": ["a", "b"]}, "invalid_audience"),
        ("jti as a number", {"jti": 1}, "invalid_claim"),
        ("jti as an object", {"jti": {"id": 1}}, "invalid_claim"),
        ("jti empty", {"jti": ""}, "invalid_claim"),
    ]:  # fmt: skip
        add(f"claim: {label}", signed(HS, _json_with_raw_numbers(claims(**overrides))), reason)

    # authids meant to deceive or to widen {authid} rules
    for authid in ["\u202eadmin", "ali\x00ce", "alice\n", "alice bob", "alice\t", "alice.notifications", "a.b.c",
                   "*", "alice*", "#", "alice#", "\u200balice", "\ufeffalice", "alice\u2028", "alice\u00a0",
                   "\u2066alice\u2069", "x" * 65, "\x7f", "\ud800" if False else "\ue000private"]:  # fmt: skip
        add(f"authid {authid[:20]!r}", signed(HS, claims(sub=authid)), "invalid_claim")

    # kid: traversal, injection, URLs, wrong types
    for kid in ["../../etc/passwd", "/dev/zero", "..\\..\\windows\\win.ini", "file:///etc/passwd",
                "http://attacker.example/key", "k' OR '1'='1", "\x00", "", "|cat /etc/passwd", "%2e%2e%2f",
                "kid\u202e"]:  # fmt: skip
        add(f"kid {kid!r}", signed({**HS, "kid": kid}, claims()), "unknown_key")
    for kid in [1, ["a"], {"a": 1}, True]:
        add(f"kid of type {type(kid).__name__}", signed({**HS, "kid": kid}, claims()), "malformed_token")

    # header parameters that change how the token is read
    nested = signed(HS, claims(sub="root", roles=["admin"]))
    add("nested JWT (cty JWT) as the payload", signed({**HS, "cty": "JWT"}, nested), "malformed_token")
    for crit in (["exp"], ["b64"], ["unknown"], "exp", [], [1]):
        add(f"crit {crit!r}", signed({**HS, "crit": crit}, claims()), "malformed_token")
    add("b64 false (unencoded payload)", signed({**HS, "b64": False}, claims()), "malformed_token")
    add("zip DEF (compressed payload)", signed({**HS, "zip": "DEF"}, claims()), "malformed_token")
    add("enc (a JWE header)", signed({**HS, "enc": "A256GCM"}, claims()), "malformed_token")

    # keys offered by the token itself: never fetched, never trusted
    for name, value in [("jku", "http://127.0.0.1:9/jwks.json"), ("x5u", "http://127.0.0.1:9/cert.pem"),
                        ("jwk", {"kty": "oct", "k": b64(ATTACKER_SECRET)}), ("x5c", ["MIIB..."])]:  # fmt: skip
        attacker_signed = signed({**HS, name: value}, claims(), ATTACKER_SECRET)
        add(f"{name} header, attacker HMAC", attacker_signed, "invalid_signature")
        add(f"{name} header, attacker RSA",
            jwt.encode(claims(), rsa, algorithm="RS256", headers={name: value}), "algorithm_not_allowed")  # fmt: skip
    return items


def _cut_reason(remainder: str) -> str:
    padded = remainder + "=" * (-len(remainder) % 4)
    try:
        canonical = b64(base64.urlsafe_b64decode(padded)) == remainder
    except ValueError:
        canonical = False
    return "invalid_signature" if canonical else "malformed_token"


class _RawNumber(str):
    """A number literal JSON cannot otherwise express from Python (e.g. 1e400)."""


def _json_with_raw_numbers(value: dict) -> str:
    text = json.dumps({k: (f"@@{v}@@" if isinstance(v, _RawNumber) else v) for k, v in value.items()},
                      separators=(",", ":"))  # fmt: skip
    for v in value.values():
        if isinstance(v, _RawNumber):
            text = text.replace(f'"@@{v}@@"', str(v))
    return text
