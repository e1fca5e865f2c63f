import pytest

from telephony.secrets import DecryptionError, decrypt, encrypt, rotate

SECRET = "django-insecure-test-secret-key-0123456789"


def test_round_trip():
    token = encrypt("s3cr3t-digest-pw", SECRET)
    assert isinstance(token, str) and "s3cr3t" not in token
    assert decrypt(token, SECRET) == "s3cr3t-digest-pw"
    assert decrypt(encrypt("", SECRET), SECRET) == ""
    assert decrypt(encrypt("pässwörd ✓", SECRET), SECRET) == "pässwörd ✓"


def test_tokens_are_randomized():
    assert encrypt("same", SECRET) != encrypt("same", SECRET)


def test_wrong_secret_or_tampered_token_fails_clearly():
    token = encrypt("pw", SECRET)
    with pytest.raises(DecryptionError, match="wrong secret or corrupted"):
        decrypt(token, "another secret")
    with pytest.raises(DecryptionError):
        decrypt(token[:-4] + "AAAA", SECRET)
    with pytest.raises(ValueError):  # DecryptionError is a ValueError
        decrypt("not a token", SECRET)


def test_rotation():
    old = encrypt("pw", "old-secret")
    assert decrypt(old, ["new-secret", "old-secret"]) == "pw"
    new = rotate(old, ["new-secret", "old-secret"])
    assert decrypt(new, "new-secret") == "pw"
    with pytest.raises(DecryptionError):
        decrypt(new, "old-secret")


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        encrypt("pw", "")
    with pytest.raises(ValueError):
        encrypt("pw", [])
    with pytest.raises(TypeError):
        encrypt(b"bytes", SECRET)
