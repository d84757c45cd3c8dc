"""Verification cost per token in the pure core (TokenVerifier.verify, no network, no router)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import jwt

from authenticator.config.node_config import component_extra
from authenticator.config.settings import load_settings
from authenticator.core.minting import user_claims
from authenticator.core.tokens import TokenVerifier
from tests.support.keys import new_private_key, public_pem
from tests.support.router import REPO

ALGORITHMS = {"HS256": None, "RS256": "rsa", "ES256": "ec", "EdDSA": "ed"}
TOKENS_PER_ROUND = 2000


def _verifier_and_tokens(algorithm: str, kind: str | None, cbdir: Path) -> tuple[TokenVerifier, list[str]]:
    if kind is None:
        signing_key = "bench-" + "k" * 40
        key_spec = {"kid": "k", "algorithms": [algorithm], "secret_env": "BENCH_UNSET", "secret_file": "hs.key"}
        (cbdir / "hs.key").write_text(signing_key)
        (cbdir / "hs.key").chmod(0o600)
    else:
        signing_key = new_private_key(kind)
        (cbdir / f"{kind}.pem").write_bytes(public_pem(signing_key))
        key_spec = {"kid": "k", "algorithms": [algorithm], "public_key_file": f"{kind}.pem"}
    # The shipped claim rules and policy; only the key differs.
    extra = {**component_extra(REPO / ".crossbar" / "config.json"), "keys": [key_spec], "store": {}}
    settings = load_settings(extra, cbdir, generate_secret=False)
    tokens = [
        jwt.encode(user_claims(f"user{i}", ["user"], 3600), signing_key, algorithm=algorithm, headers={"kid": "k"})
        for i in range(TOKENS_PER_ROUND)
    ]
    return TokenVerifier(settings), tokens


def verification_cost(rounds: int) -> dict:
    """Microseconds per verify, per algorithm: median and spread over rounds, algorithms alternated."""
    with tempfile.TemporaryDirectory() as tmp:
        setups = {alg: _verifier_and_tokens(alg, kind, Path(tmp)) for alg, kind in ALGORITHMS.items()}
        samples: dict[str, list[float]] = {alg: [] for alg in ALGORITHMS}
        for _ in range(rounds):
            for alg, (verifier, tokens) in setups.items():
                start = time.perf_counter()
                for token in tokens:
                    verifier.verify(token)
                samples[alg].append((time.perf_counter() - start) / len(tokens) * 1e6)
    for alg, values in samples.items():
        print(f"  {alg:6s} {statistics.median(values):7.1f} µs/token", flush=True)
    return samples
