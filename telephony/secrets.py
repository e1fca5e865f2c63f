"""Encryption at rest for carrier digest passwords (they must be recoverable to answer SIP auth
challenges, so they cannot be hashed).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from an application secret by PBKDF2-SHA256:
the app passes settings.FIELD_ENCRYPTION_KEY (a list). Several secrets enable key rotation: encrypt
with the first, decrypt with any (re-encrypt with `rotate`; manage.py rotate_field_encryption_key).

(The name does not shadow the standard library: it is only ever imported as `telephony.secrets`.)
"""
from __future__ import annotations

import base64
import functools
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

# Fixed salt: the derived key must be the same on every node for the same secret. The secret is a
# server-side high-entropy string; the iterations only slow down guessing a weak one.
_SALT = b"voiceplatform.telephony.carrier-password.v1"
_ITERATIONS = 200_000


class DecryptionError(ValueError):
    """The token was not made with (any of) the given secret(s), or it is corrupted."""


@functools.lru_cache(maxsize=16)
def _fernet(secret: str) -> Fernet:
    if not isinstance(secret, str) or not secret:
        raise ValueError("encryption secret is empty")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=_SALT, iterations=_ITERATIONS)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret.encode())))


def _secrets(secret: str | Sequence[str]) -> list[str]:
    secrets_ = [secret] if isinstance(secret, str) else list(secret)
    if not secrets_:
        raise ValueError("no encryption secret given")
    return secrets_


def encrypt(plaintext: str, secret: str | Sequence[str]) -> str:
    """Encrypt `plaintext` with the (first) secret; returns an ASCII token safe for a text column."""
    if not isinstance(plaintext, str):
        raise TypeError(f"plaintext must be str, not {type(plaintext).__name__}")
    return _fernet(_secrets(secret)[0]).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str, secret: str | Sequence[str]) -> str:
    """Decrypt a token from `encrypt`; with several secrets any of them may have made it."""
    fernet = MultiFernet([_fernet(s) for s in _secrets(secret)])
    try:
        return fernet.decrypt(token.encode("ascii") if isinstance(token, str) else token).decode("utf-8")
    except (InvalidToken, UnicodeError, TypeError, ValueError):
        raise DecryptionError("cannot decrypt the carrier password: wrong secret or corrupted value") from None


def rotate(token: str, secrets: Sequence[str]) -> str:
    """Re-encrypt a token made with any of `secrets` under the first one."""
    return encrypt(decrypt(token, secrets), secrets[0])
