"""The pure verifier: one test per rejection reason, plus the happy path (injected clock)."""

import base64
import json

import jwt
import pytest

from authenticator.core.reasons import Reason, Rejected
from tests.support.tokens import TEST_SECRET, mint
from tests.unit.conftest import NOW


def token(**kwargs):
    kwargs.setdefault("now", NOW)
    return mint(**kwargs)


def reason_of(verifier, value):
    with pytest.raises(Rejected) as caught:
        verifier.verify(value)
    return caught.value


def b64(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_good_token_gives_its_subject_role_and_expiry(verifier):
    identity = verifier.verify(token(sub="alice", roles=["user"], ttl=60))
    assert (identity.authid, identity.role, identity.roles) == ("alice", "user", ("user",))
    assert identity.expires_at == int(NOW + 60)
    assert identity.authextra() == {"roles": ["user"], "exp": int(NOW + 60)}


def test_a_single_role_string_is_accepted(verifier):
    assert verifier.verify(token(roles=None, role="admin")).role == "admin"


def test_the_most_privileged_role_is_the_session_role_and_all_go_to_authextra(verifier):
    identity = verifier.verify(token(roles=["user", "admin"]))
    assert identity.role == "admin"
    assert identity.roles == ("user", "admin")


def test_unknown_roles_are_ignored_when_a_known_one_remains(verifier):
    identity = verifier.verify(token(roles=["billing", "user"]))
    assert (identity.role, identity.roles) == ("user", ("user",))


@pytest.mark.parametrize("value", [None, ""])
def test_no_token_is_missing_token(verifier, value):
    assert reason_of(verifier, value).reason is Reason.MISSING_TOKEN


@pytest.mark.parametrize(
    "value",
    ["not-a-jwt", "a.b", "a.b.c.d", "!!!.###.$$$", b64(b"[1]") + ".e30.x", 42],
)
def test_garbage_is_malformed_token(verifier, value):
    assert reason_of(verifier, value).reason is Reason.MALFORMED_TOKEN


def test_an_oversized_token_is_refused_before_it_is_parsed(verifier):
    rejection = reason_of(verifier, "a" * 9000 + ".b.c")
    assert rejection.reason is Reason.MALFORMED_TOKEN
    assert "8192 bytes" in rejection.message


def test_the_size_limit_counts_utf8_bytes_not_characters(verifier):
    # 5,000 characters, but 10,004 bytes on the wire: over the 8192-byte limit.
    rejection = reason_of(verifier, "é" * 5000 + ".b.c")
    assert rejection.reason is Reason.MALFORMED_TOKEN
    assert "8192 bytes" in rejection.message
    # A lone surrogate cannot be encoded as UTF-8: still a clean refusal, never an internal error.
    assert reason_of(verifier, "\ud800" * 5000 + ".b.c").reason is Reason.MALFORMED_TOKEN


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", "HS512", "RS256"])
def test_algorithms_outside_the_allow_list_are_refused(verifier, alg):
    forged = b64({"alg": alg, "typ": "JWT"}) + "." + b64({"sub": "alice", "roles": ["admin"], "exp": NOW + 60}) + "."
    assert reason_of(verifier, forged).reason is Reason.ALGORITHM_NOT_ALLOWED


def test_a_token_signed_with_another_secret_is_invalid_signature(verifier):
    other = token(secret="another-secret-that-is-long-enough-0123456789")
    assert reason_of(verifier, other).reason is Reason.INVALID_SIGNATURE


def test_a_token_with_its_signature_cut_off_is_invalid_signature(verifier):
    header, payload, _ = token().split(".")
    assert reason_of(verifier, f"{header}.{payload}.").reason is Reason.INVALID_SIGNATURE


def test_a_tampered_payload_is_invalid_signature(verifier):
    header, _, signature = token(roles=["user"]).split(".")
    tampered = ".".join((header, b64({"sub": "alice", "roles": ["admin"], "exp": NOW + 60}), signature))
    assert reason_of(verifier, tampered).reason is Reason.INVALID_SIGNATURE


def test_a_kid_no_key_has_is_unknown_key(verifier):
    assert reason_of(verifier, token(headers={"kid": "2019"})).reason is Reason.UNKNOWN_KEY


def test_an_expired_token_is_expired(verifier):
    rejection = reason_of(verifier, token(now=NOW - 100, ttl=60))
    assert rejection.reason is Reason.EXPIRED
    assert "40 s ago" in rejection.message


def test_expiry_within_the_leeway_is_still_accepted(verifier):
    verifier.verify(token(now=NOW - 65, ttl=60))  # 5 s past exp, leeway is 10 s


def test_a_token_used_before_nbf_is_not_yet_valid(verifier):
    assert reason_of(verifier, token(nbf=int(NOW + 120))).reason is Reason.NOT_YET_VALID


def test_a_token_issued_in_the_future_is_not_yet_valid(verifier):
    assert reason_of(verifier, token(now=NOW + 300)).reason is Reason.NOT_YET_VALID


def test_a_token_without_exp_is_missing_claim(verifier):
    rejection = reason_of(verifier, token(exp=None))
    assert rejection.reason is Reason.MISSING_CLAIM
    assert "'exp'" in rejection.message


def test_a_token_without_subject_is_missing_claim(verifier):
    assert reason_of(verifier, token(sub=None)).reason is Reason.MISSING_CLAIM


def test_a_token_without_roles_is_missing_claim(verifier):
    assert reason_of(verifier, token(roles=None)).reason is Reason.MISSING_CLAIM


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "tomorrow"},
        {"exp": True},
        {"roles": {"admin": True}},
        {"roles": ["user", 7]},
        {"sub": 42},
    ],
)
def test_claims_of_the_wrong_type_are_invalid_claim(verifier, claims):
    assert reason_of(verifier, token(**claims)).reason is Reason.INVALID_CLAIM


@pytest.mark.parametrize("authid", ["", "al.ice", "al*", "a#b", "al ice", "al\tice", "a\x00b", "x" * 65])
def test_authids_that_could_change_a_uri_are_invalid_claim(verifier, authid):
    assert reason_of(verifier, token(sub=authid)).reason is Reason.INVALID_CLAIM


def test_a_token_with_only_undefined_roles_is_unknown_role(verifier):
    rejection = reason_of(verifier, token(roles=["superuser", "root"]))
    assert rejection.reason is Reason.UNKNOWN_ROLE
    assert rejection.authid == "alice"


def test_the_authid_can_come_from_a_nested_claim(shipped_extra, monkeypatch, tmp_path):
    from authenticator.config.settings import load_settings
    from authenticator.core.tokens import TokenVerifier

    monkeypatch.setenv("JWT_SECRET", TEST_SECRET)
    shipped_extra["claims"] = {**shipped_extra["claims"], "authid": "user.username", "required": ["exp"]}
    verifier = TokenVerifier(load_settings(shipped_extra, tmp_path), clock=lambda: NOW)
    assert verifier.verify(token(sub=None, user={"username": "carol"})).authid == "carol"


def test_no_message_ever_contains_the_token_or_the_secret(verifier):
    samples = [token(now=NOW - 999), token(exp=None), token(roles=["root"]), token(secret="x" * 40), "a.b.c"]
    for sample in samples:
        rejection = reason_of(verifier, sample)
        for text in (rejection.message, str(rejection), rejection.detail):
            assert sample not in text and TEST_SECRET not in text
            assert sample.split(".")[-1] not in text or sample == "a.b.c"


def test_every_reason_has_a_stable_uri_and_a_message_that_says_what_to_do():
    codes = [reason.code for reason in Reason]
    assert len(codes) == len(set(codes))
    for reason in Reason:
        assert reason.uri == f"authenticator.error.{reason.code}"
        assert reason.what and reason.todo.endswith(".")


def test_pyjwt_agrees_the_minted_test_tokens_are_valid():
    # guards the helper itself: a broken minting helper would make the refusal tests vacuous
    claims = jwt.decode(mint(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"


def test_an_unknown_role_refusal_names_the_tokens_roles_and_the_defined_ones(verifier):
    with pytest.raises(Rejected) as caught:
        verifier.verify(token(roles=["superuser", "x" * 100]))
    assert caught.value.reason is Reason.UNKNOWN_ROLE
    assert "'superuser', '" + "x" * 32 + "'" in caught.value.message and "x" * 33 not in caught.value.message
    assert f"this realm defines {', '.join(verifier.settings.policy.roles)}" in caught.value.message


def test_an_email_address_as_authid_is_refused_with_what_to_do_instead(verifier):
    with pytest.raises(Rejected) as caught:
        verifier.verify(token(sub="alice@example.com"))
    assert caught.value.reason is Reason.INVALID_CLAIM
    assert "e-mail address" in caught.value.message and "claims.authid" in caught.value.message


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16", "utf-32"])
def test_claims_in_another_encoding_than_utf8_are_malformed_even_when_signed(verifier, encoding):
    """RFC 7519 has UTF-8 only. json.loads would read UTF-16/32 bytes, where "\u2200" is the byte
    pair 00 22: a quote to a byte scan, which then missed the nesting after it (a nesting 20 deep
    was accepted)."""
    claims = {"sub": "alice", "roles": ["user"], "iat": NOW, "exp": NOW + 300, "x": "\u2200"}
    nested: object = 1
    for _ in range(20):
        nested = [nested]
    claims["deep"] = nested
    payload = json.dumps(claims, ensure_ascii=False).encode(encoding)
    signed = jwt.api_jws.encode(payload, TEST_SECRET, algorithm="HS256")
    refused = reason_of(verifier, signed)
    # UTF-16 of ASCII is valid UTF-8 (with NULs), and then not JSON; else it is not UTF-8
    assert refused.reason is Reason.MALFORMED_TOKEN, refused
    assert refused.detail.endswith(("(not UTF-8)", "(not JSON)")), refused.detail


def test_each_hmac_secret_is_prepared_once_and_tokens_verify_as_before(verifier, monkeypatch):
    """PyJWT prepares the key per token; ours keeps the preparation per secret (core/tokens.py)."""
    from jwt.algorithms import HMACAlgorithm

    tokens = [mint(f"user{n}", ["user"], now=NOW) for n in range(5)]  # minting prepares keys too
    prepared = []
    original = HMACAlgorithm.prepare_key
    monkeypatch.setattr(HMACAlgorithm, "prepare_key", lambda self, key: prepared.append(key) or original(self, key))
    for n, token in enumerate(tokens):
        assert verifier.verify(token).authid == f"user{n}"
    assert len(prepared) <= 1  # 0 when an earlier test of this process prepared the secret already
    forged = mint("mallory", ["user"], now=NOW, secret="another-secret-another-secret-0123")
    with pytest.raises(Rejected) as refused:
        verifier.verify(forged)
    assert refused.value.reason is Reason.INVALID_SIGNATURE


def test_a_public_key_is_still_refused_as_an_hmac_secret_every_time():
    """The check PyJWT's preparation makes (an asymmetric key is not an HMAC secret) holds for each
    token: a refused preparation is not kept."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from authenticator.core.tokens import _JWS

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            _JWS._algorithms["HS256"].prepare_key(pem)
