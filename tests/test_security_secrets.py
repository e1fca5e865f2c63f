"""No usable default secret: a fresh install makes its own keys (kept private in its var directory and
shared by all its processes), the old public development key opens nothing, production refuses to start
without strong keys from the environment and passes Django's deployment checks, and the carrier-password
key can be rotated."""
import json
import os
import stat

import pytest
from django.core.management import call_command
from django.test import override_settings

from telephony import secrets
from telephony.calls import stream_access
from telephony.models import Carrier
from tenants import auth_token
from tenants.models import Tenant
from tests.support import project_env, run_manage

OLD_PUBLIC_KEY = "dev-insecure-change-me-in-production"
STRONG = "k" * 10 + "Zq3-Vb8_pW1xL5mN7cR2tY9uE4oI6aS0dF2gH8jK1lQ3wE5rT7yU"


def settings_of_a_process(var_dir, **env) -> dict:
    """SECRET_KEY, FIELD_ENCRYPTION_KEY and DEBUG as a new process of the platform sees them."""
    environment = project_env(VOICEPLATFORM_VAR_DIR=str(var_dir), **env)
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DEBUG", "PRODUCTION"):
        if name not in env:
            environment.pop(name, None)
    result = run_manage("shell", "-c", "from django.conf import settings; import json; print(json.dumps("
                        "[settings.SECRET_KEY, settings.FIELD_ENCRYPTION_KEY, settings.DEBUG]))", env=environment)
    assert result.returncode == 0, result.stderr
    secret_key, field_keys, debug = json.loads(result.stdout.strip().splitlines()[-1])
    return {"SECRET_KEY": secret_key, "FIELD_ENCRYPTION_KEY": field_keys, "DEBUG": debug}


def test_a_stream_token_signed_with_the_old_development_key_is_refused():
    with override_settings(SECRET_KEY=OLD_PUBLIC_KEY):
        forged = stream_access.agent_token("acme", "CAfeed")
    with pytest.raises(stream_access.StreamAccessDenied, match="bad token"):
        stream_access.check_agent_token(forged, "CAfeed")


def test_a_fresh_install_makes_strong_private_keys_that_all_its_processes_share(tmp_path):
    first = settings_of_a_process(tmp_path)
    second = settings_of_a_process(tmp_path)
    assert first == second  # daphne, Celery and manage.py agree
    assert len(first["SECRET_KEY"]) >= 50 and first["SECRET_KEY"] != OLD_PUBLIC_KEY
    assert len(first["FIELD_ENCRYPTION_KEY"][0]) >= 32 and first["FIELD_ENCRYPTION_KEY"][0] != first["SECRET_KEY"]
    assert stat.S_IMODE(os.stat(tmp_path / "secret-keys.json").st_mode) == 0o600
    assert first["DEBUG"] is False  # and debug pages are off unless asked for
    other_install = settings_of_a_process(tmp_path / "other")
    assert other_install["SECRET_KEY"] != first["SECRET_KEY"]


@pytest.mark.parametrize("env, complaint", [
    ({}, "SECRET_KEY is not set"),
    ({"SECRET_KEY": OLD_PUBLIC_KEY, "FIELD_ENCRYPTION_KEY": STRONG}, "SECRET_KEY is shorter than 50"),
    ({"SECRET_KEY": STRONG, "FIELD_ENCRYPTION_KEY": "short"}, "FIELD_ENCRYPTION_KEY is shorter than 32"),
    ({"SECRET_KEY": "a" * 60, "FIELD_ENCRYPTION_KEY": STRONG}, "SECRET_KEY is not random"),
])
def test_production_refuses_to_start_without_strong_keys(tmp_path, env, complaint):
    environment = project_env(VOICEPLATFORM_VAR_DIR=str(tmp_path), PRODUCTION="true", **env)
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY"):
        if name not in env:
            environment.pop(name, None)
    result = run_manage("check", env=environment)
    assert result.returncode != 0 and complaint in result.stderr
    assert not (tmp_path / "secret-keys.json").exists()


def test_production_mode_passes_djangos_deployment_checks(tmp_path):
    environment = project_env(VOICEPLATFORM_VAR_DIR=str(tmp_path), PRODUCTION="true", SECRET_KEY=STRONG,
                              FIELD_ENCRYPTION_KEY=STRONG[::-1], METRICS_TOKEN="scrape-me",
                              ALLOWED_HOSTS="voice.example.com,.voice.example.com")
    environment.pop("DEBUG", None)
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_metrics_need_their_token_in_production(client):
    with override_settings(PRODUCTION=True, METRICS_TOKEN=""):
        assert client.get("/metrics").status_code == 401
    with override_settings(PRODUCTION=True, METRICS_TOKEN="scrape-me"):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


@pytest.mark.django_db
def test_the_generated_field_key_is_rotated_and_carrier_passwords_reencrypted(tmp_path, monkeypatch, settings):
    from voiceplatform import secret_keys

    old_keys = list(settings.FIELD_ENCRYPTION_KEY)
    secret_keys.write_file(tmp_path, {"SECRET_KEY": settings.SECRET_KEY, "FIELD_ENCRYPTION_KEY": old_keys})
    monkeypatch.setenv("VOICEPLATFORM_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("FIELD_ENCRYPTION_KEY", raising=False)
    carrier = Carrier(name="Rotated trunk", host="sip.example.com")
    carrier.set_password("digest-secret")
    carrier.save()

    call_command("rotate_field_encryption_key", stdout=open(os.devnull, "w"))

    new_keys = secret_keys.read_file(tmp_path)["FIELD_ENCRYPTION_KEY"]
    assert len(new_keys) == 1 and new_keys[0] not in old_keys
    carrier.refresh_from_db()
    assert secrets.decrypt(carrier.password_encrypted, new_keys) == "digest-secret"
    with pytest.raises(secrets.DecryptionError):
        secrets.decrypt(carrier.password_encrypted, old_keys)


@pytest.mark.django_db
def test_keys_from_the_environment_rotate_with_the_old_one_still_accepted_meanwhile(monkeypatch, settings, tenant_a):
    # `old`: the key the platform has run with (tenants' auth tokens were encrypted with it).
    old, new = settings.FIELD_ENCRYPTION_KEY[0], STRONG[::-1]
    carrier = Carrier(name="Env trunk", host="sip.example.com")
    carrier.set_password("digest-secret")
    carrier.save()
    # The operator sets FIELD_ENCRYPTION_KEY=new,old everywhere: old passwords still open.
    monkeypatch.setenv("FIELD_ENCRYPTION_KEY", f"{new},{old}")
    settings.FIELD_ENCRYPTION_KEY = [new, old]
    assert Carrier.objects.get(pk=carrier.pk).password() == "digest-secret"
    token_before = auth_token.current(Tenant.objects.get(schema_name="acme"))

    call_command("rotate_field_encryption_key", stdout=open(os.devnull, "w"))

    carrier.refresh_from_db()
    assert secrets.decrypt(carrier.password_encrypted, [new]) == "digest-secret"
    # Tenants' auth tokens too: the new key alone opens them, and they are the same tokens.
    settings.FIELD_ENCRYPTION_KEY = [new]
    acme = Tenant.objects.get(schema_name="acme")
    assert auth_token.current(acme) == token_before



@pytest.mark.django_db
def test_an_upgrade_reencrypts_passwords_made_with_the_old_default_key(tmp_path, monkeypatch, settings):
    from voiceplatform import secret_keys

    secret_keys.write_file(tmp_path, {"SECRET_KEY": settings.SECRET_KEY,
                                      "FIELD_ENCRYPTION_KEY": list(settings.FIELD_ENCRYPTION_KEY)})
    monkeypatch.setenv("VOICEPLATFORM_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("FIELD_ENCRYPTION_KEY", raising=False)
    carrier = Carrier.objects.create(name="Old trunk", host="sip.example.com",
                                     password_encrypted=secrets.encrypt("digest-secret", OLD_PUBLIC_KEY))

    call_command("rotate_field_encryption_key", "--old-key", OLD_PUBLIC_KEY, stdout=open(os.devnull, "w"))

    carrier.refresh_from_db()
    assert secrets.decrypt(carrier.password_encrypted, secret_keys.read_file(tmp_path)["FIELD_ENCRYPTION_KEY"]) \
        == "digest-secret"
