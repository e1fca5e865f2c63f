"""The platform's two secrets: Django's SECRET_KEY (sessions, CSRF, agent stream tokens, relay keys) and
FIELD_ENCRYPTION_KEY (carrier passwords at rest).

From the environment when set. Otherwise they are generated on first start and kept in
``<VOICEPLATFORM_VAR_DIR>/secret-keys.json`` (mode 0600), like the embedded database: every process
that shares the var directory (daphne, Celery, the recorder, manage.py) reads the same keys. In
production (PRODUCTION=true) both must come from the environment and be strong.

FIELD_ENCRYPTION_KEY may be a comma-separated list: the first key encrypts, any of them decrypts
(``manage.py rotate_field_encryption_key`` re-encrypts under the first).
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

FILE_NAME = "secret-keys.json"
# Django's own check (security.W009) asks for 50 characters and 5 distinct ones.
MIN_SECRET_KEY_LENGTH = 50
MIN_FIELD_KEY_LENGTH = 32


class WeakKeyError(ValueError):
    """A key that must not be used in production; the message names it and the fix."""


def new_key() -> str:
    return secrets.token_urlsafe(48)  # 64 characters, 384 bits


def split_keys(value: str) -> list[str]:
    return [key.strip() for key in value.split(",") if key.strip()]


def _weakness(key: str, min_length: int) -> str:
    if len(key) < min_length:
        return f"shorter than {min_length} characters"
    if len(set(key)) < 5 or key.startswith("django-insecure") or "insecure" in key:
        return "not random"
    return ""


def check_production(secret_key: str, field_keys: list[str]) -> None:
    for name, keys, min_length in (("SECRET_KEY", [secret_key] if secret_key else [], MIN_SECRET_KEY_LENGTH),
                                   ("FIELD_ENCRYPTION_KEY", field_keys, MIN_FIELD_KEY_LENGTH)):
        if not keys:
            raise WeakKeyError(f"{name} is not set; in production set it to a random string "
                               f"(python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        for key in keys:
            if why := _weakness(key, min_length):
                raise WeakKeyError(f"{name} is {why}; in production set it to a random string of at least "
                                   f"{min_length} characters")


def key_file(var_dir: Path) -> Path:
    return var_dir / FILE_NAME


def read_file(var_dir: Path) -> dict:
    return json.loads(key_file(var_dir).read_text())


def write_file(var_dir: Path, keys: dict) -> None:
    """Replace the key file atomically (readers see the old or the new one, never half)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = key_file(var_dir)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keys, out)
    os.replace(tmp, path)


def load_or_create(var_dir: Path) -> dict:
    """The var directory's keys, created on first use. Processes starting together agree: the first to
    link its file in place wins, the others read that one."""
    path = key_file(var_dir)
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"SECRET_KEY": new_key(), "FIELD_ENCRYPTION_KEY": [new_key()]}, out)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read_file(var_dir)


def resolve(environ, var_dir: Path, production: bool) -> tuple[str, list[str]]:
    """(SECRET_KEY, FIELD_ENCRYPTION_KEY list) for this process."""
    secret_key = environ.get("SECRET_KEY", "").strip()
    field_keys = split_keys(environ.get("FIELD_ENCRYPTION_KEY", ""))
    if production:
        check_production(secret_key, field_keys)
        return secret_key, field_keys
    if not secret_key or not field_keys:
        stored = load_or_create(var_dir)
        secret_key = secret_key or stored["SECRET_KEY"]
        field_keys = field_keys or stored["FIELD_ENCRYPTION_KEY"]
    return secret_key, field_keys
