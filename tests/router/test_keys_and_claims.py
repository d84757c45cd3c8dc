"""Keys, algorithms and claim rules through a real router configured the way an identity-provider
setup would be: two rotating HMAC keys, RSA/EC/Ed25519 public keys, a JWKS URL, iss/aud/lifetime
rules and single-use tokens."""

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.support.keys import JwksServer, new_private_key, public_jwk, public_pem
from tests.support.router import RouterProcess
from tests.support.tokens import mint
from tests.support.wamp import Refused, connect, refusal

ISSUER = "https://login.example"
OLD_SECRET, NEW_SECRET = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
PRIVATE = {kind: new_private_key(kind) for kind in ("rsa", "ec", "ed")}
IDP_KEYS = {kid: new_private_key("rsa") for kid in ("idp-1", "idp-2")}


@pytest.fixture(scope="module")
def jwks():
    server = JwksServer()
    server.keys = [public_jwk(IDP_KEYS["idp-1"], "idp-1")]
    yield server
    server.close()


@pytest.fixture(scope="module")
def strict(tmp_path_factory, jwks):
    workdir = tmp_path_factory.mktemp("strict")
    keys_dir = workdir / ".crossbar" / "keys"
    keys_dir.mkdir(parents=True)
    for kind, private_key in PRIVATE.items():
        (keys_dir / f"{kind}.pem").write_bytes(public_pem(private_key))

    def configure(config):
        extra = config["workers"][0]["components"][0]["extra"]
        extra["keys"] = [
            {"kid": "hs-2025", "algorithms": ["HS256"], "secret_env": "JWT_SECRET_OLD"},
            {"kid": "hs-2026", "algorithms": ["HS512"], "secret_env": "JWT_SECRET"},
            {"kid": "rsa-1", "algorithms": ["RS256", "PS256"], "public_key_file": "keys/rsa.pem"},
            {"kid": "ec-1", "public_key_file": "keys/ec.pem"},
            {"kid": "ed-1", "public_key_file": "keys/ed.pem"},
            {"jwks_url": jwks.url, "algorithms": ["RS256"], "min_refetch_seconds": 1},
        ]
        extra["claims"].update(issuers=[ISSUER], audience="realm1", max_lifetime_seconds=3600)
        extra["single_use"] = True

    node = RouterProcess(workdir, env={"JWT_SECRET": NEW_SECRET, "JWT_SECRET_OLD": OLD_SECRET}, edit_config=configure)
    yield node.start()
    node.stop()


def strict_token(kid="hs-2026", key=NEW_SECRET, algorithm="HS512", **claims):
    claims = {"iss": ISSUER, "aud": "realm1", "jti": uuid.uuid4().hex, "ttl": 60, **claims}
    return mint(secret=key, algorithm=algorithm, headers={"kid": kid} if kid else None, **claims)


async def joins(node, token):
    client = await connect(node.url, token)
    client.leave()
    return client.details


@pytest.mark.parametrize(
    ("kid", "key", "algorithm"),
    [
        ("hs-2025", OLD_SECRET, "HS256"),
        ("hs-2026", NEW_SECRET, "HS512"),
        ("rsa-1", PRIVATE["rsa"], "RS256"),
        ("rsa-1", PRIVATE["rsa"], "PS256"),
        ("ec-1", PRIVATE["ec"], "ES256"),
        ("ed-1", PRIVATE["ed"], "EdDSA"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 10 else "key",  # never a secret in an id
)
@pytest_twisted.ensureDeferred
async def test_every_configured_key_verifies_its_own_tokens(strict, kid, key, algorithm):
    details = await joins(strict, strict_token(kid, key, algorithm, sub=f"user-{kid}"))
    assert details.authid == f"user-{kid}"


@pytest_twisted.ensureDeferred
async def test_a_key_only_verifies_the_algorithms_it_is_bound_to(strict):
    refused = await refusal(strict.url, strict_token("hs-2025", OLD_SECRET, "HS512"))
    assert refused.reason == "authenticator.error.algorithm_not_allowed"


def hs256_with(secret: bytes, header: dict, payload: dict) -> str:
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


@pytest_twisted.ensureDeferred
async def test_an_hs256_token_signed_with_the_rsa_public_key_as_secret_is_refused(strict):
    payload = {"sub": "mallory", "roles": ["admin"], "iss": ISSUER, "aud": "realm1", "jti": "x",
               "iat": int(time.time()), "exp": int(time.time()) + 60}  # fmt: skip
    forged = hs256_with(public_pem(PRIVATE["rsa"]), {"alg": "HS256", "kid": "rsa-1"}, payload)
    refused = await refusal(strict.url, forged)
    assert refused.reason == "authenticator.error.algorithm_not_allowed"


@pytest_twisted.ensureDeferred
async def test_jku_and_embedded_jwk_headers_are_never_followed(strict):
    attacker_key = new_private_key("rsa")
    attacker = JwksServer()
    attacker.keys = [public_jwk(attacker_key, "evil")]
    try:
        headers = {"kid": "evil", "jku": attacker.url, "jwk": public_jwk(attacker_key, "evil"), "x5u": attacker.url}
        token = mint(secret=attacker_key, algorithm="RS256", headers=headers, iss=ISSUER, aud="realm1", jti="j")
        refused = await refusal(strict.url, token)
        assert refused.reason == "authenticator.error.unknown_key"
        assert attacker.requests == 0
    finally:
        attacker.close()


@pytest_twisted.ensureDeferred
async def test_jwks_keys_work_and_a_key_rotated_at_the_provider_is_fetched_on_first_use(strict, jwks):
    assert (await joins(strict, strict_token("idp-1", IDP_KEYS["idp-1"], "RS256", sub="idp-user"))).authid
    jwks.keys = [public_jwk(IDP_KEYS["idp-2"], "idp-2")]  # the provider rotates: idp-1 out, idp-2 in
    # Within min_refetch_seconds (1 s) of the last fetch an unknown kid is refused without a fetch;
    # the first login after that fetches the new key set.
    deadline = time.monotonic() + 3
    while True:
        try:
            details = await joins(strict, strict_token("idp-2", IDP_KEYS["idp-2"], "RS256", sub="idp-user"))
            break
        except Refused as refused:
            assert refused.reason == "authenticator.error.unknown_key"
            assert time.monotonic() < deadline, "the rotated key was not fetched within 3 s"
            await task.deferLater(reactor, 0.1, lambda: None)
    assert details.authid == "idp-user"
    refused = await refusal(strict.url, strict_token("idp-1", IDP_KEYS["idp-1"], "RS256"))
    assert refused.reason == "authenticator.error.unknown_key"


@pytest_twisted.ensureDeferred
async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(strict, jwks):
    stranger = new_private_key("rsa")
    await refusal(strict.url, strict_token("nobody-1", stranger, "RS256"))  # may refetch once
    before = jwks.requests
    for i in range(5):
        refused = await refusal(strict.url, strict_token(f"nobody-{i}", stranger, "RS256"))
        assert refused.reason == "authenticator.error.unknown_key"
    assert jwks.requests - before <= 1


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example"}, "invalid_issuer"),
        ({"iss": None}, "missing_claim"),
        ({"aud": "another-realm"}, "invalid_audience"),
        ({"aud": None}, "missing_claim"),
        ({"ttl": 7200}, "lifetime_too_long"),
        ({"jti": None}, "missing_claim"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_claim_rules_refuse_with_their_reason(strict, claims, reason):
    refused = await refusal(strict.url, strict_token(**claims))
    assert refused.reason == f"authenticator.error.{reason}"


@pytest_twisted.ensureDeferred
async def test_a_single_use_token_is_refused_the_second_time_even_after_a_restart(strict):
    token, other = strict_token(sub="once"), strict_token(sub="once")
    await joins(strict, token)
    assert (await refusal(strict.url, token)).reason == "authenticator.error.replayed"
    await joins(strict, other)
    strict.restart()
    assert (await refusal(strict.url, other)).reason == "authenticator.error.replayed"
    await joins(strict, strict_token(sub="once"))
