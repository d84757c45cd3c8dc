"""Key material from files and the environment: PEM public keys, and the HMAC secret (from its
environment variable, else its 0600 file, else generated into that file at the first start)."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from authenticator.core.keys import GENERATED_SECRET_BYTES, MIN_HMAC_SECRET_BYTES, KeyConfigError, VerificationKey, bind


def load_public_key_file(path: Path, kid: str | None, wanted: Iterable[str] | None, where: str) -> VerificationKey:
    try:
        public_key = load_pem_public_key(path.read_bytes())
    except FileNotFoundError as error:
        raise KeyConfigError(f"{where}: {path} does not exist") from error
    except ValueError as error:
        raise KeyConfigError(f"{where}: {path} is not a PEM public key ({error})") from error
    return VerificationKey(kid=kid, algorithms=bind(public_key, wanted, where), material=public_key, source=str(path))


def load_hmac_secret(
    env_name: str | None, secret_file: Path | None, *, generate: bool | None
) -> tuple[bytes, str, bool]:
    """The secret from the environment, else from its file, else a new one written to that file
    (generate=None: a new one for a check, not written).

    Returns (secret, source, generated). The secret is used exactly as given (its text bytes), the way
    PHP, Node and Python JWT libraries use a string secret, so one JWT_SECRET serves them all.
    """
    if env_name and os.environ.get(env_name):
        source = f"environment variable {env_name}"
        return _checked(os.environ[env_name].encode(), source), source, False
    if secret_file is None:
        raise KeyConfigError(f"environment variable {env_name} is not set and no secret_file is configured")
    if secret_file.exists():
        _refuse_loose_permissions(secret_file)
        text = secret_file.read_text(encoding="utf-8").strip()
        return _checked(text.encode(), str(secret_file)), str(secret_file), False
    if generate is None:  # a check: the file a first start would create, without creating it
        secret = base64.urlsafe_b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).rstrip(b"=")
        return secret, f"{secret_file} (not there yet: the router's first start generates it)", True
    if not generate:
        raise KeyConfigError(f"set {env_name} or create {secret_file} (mode 0600) holding the shared secret")
    secret = base64.urlsafe_b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).rstrip(b"=")
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two processes starting at once must not overwrite each other's secret.
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)  # exactly the secret: an application reading the file verbatim gets the same bytes
    return secret, f"{secret_file} (generated at this start)", True


def _checked(secret: bytes, source: str) -> bytes:
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise KeyConfigError(
            f"the HMAC secret from {source} is {len(secret)} bytes; at least {MIN_HMAC_SECRET_BYTES} are "
            "needed. Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return secret


def _refuse_loose_permissions(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyConfigError(f"{path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}")
