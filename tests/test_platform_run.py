"""`make run` as a new user meets it: nothing configured, the platform starts its own PostgreSQL and
Redis, comes up healthy, says clearly when something it needs is missing, and stops cleanly."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import redis

from tests.support import ROOT, free_udp_port, project_env, run_manage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


@pytest.fixture
def embedded_env(tmp_path):
    env = project_env(VOICEPLATFORM_VAR_DIR=str(tmp_path / "var"))
    env.pop("DATABASE_URL")
    env.pop("REDIS_URL")
    return env


def test_run_starts_everything_embedded_reports_health_and_stops_on_ctrl_c(embedded_env, tmp_path):
    port = free_port()
    log = open(tmp_path / "run.log", "w+")
    run = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--port", str(port), "--demo-carrier-port", str(free_udp_port()),
         "--demo-agent-port", str(free_port())],
        cwd=ROOT, env=embedded_env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        status, report = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(get_health(port)), 120)
        assert report["ok"] is True
        assert set(report["services"]) == {"postgres", "redis", "channel_layer", "celery"}

        credentials = json.loads((tmp_path / "var" / "demo-credentials.json").read_text())
        demo = credentials["demo_tenant"]
        assert demo["domain"] == "demo.localhost"
        wait_for(lambda: "Voice platform is up." in (tmp_path / "run.log").read_text(), 10)
        assert demo["api_key"] in (tmp_path / "run.log").read_text()

        # With Redis gone the platform says so: 503 and which services are down.
        redis.Redis(unix_socket_path=str(tmp_path / "var" / "redis" / "redis.sock")).shutdown(nosave=True)
        status, report = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get_health(port)), 30)
        assert report["ok"] is False
        assert report["services"]["redis"]["ok"] is False
        assert report["services"]["postgres"]["ok"] is True
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(60)
        log.seek(0)
        output = log.read()
    assert "stopping" in output
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"


def test_a_busy_port_is_one_clear_line(embedded_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_manage("run", "--port", str(port), env=embedded_env)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "variable, url, named",
    [
        ("DATABASE_URL", "postgresql://nobody@127.0.0.1:{port}/none", "PostgreSQL"),
        ("REDIS_URL", "redis://127.0.0.1:{port}/0", "Redis"),
    ],
)
def test_an_unreachable_server_is_one_clear_line(variable, url, named):
    env = project_env(**{variable: url.format(port=free_port())})
    result = run_manage("check", env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and variable in lines[0]


def test_the_project_folder_does_not_shadow_the_standard_platform_module():
    result = subprocess.run(
        [sys.executable, "-c", "import platform, sys; print(platform.__file__); print(platform.python_version())"],
        cwd=ROOT, env=project_env(), capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(sys.base_prefix) or "python3.11/platform.py" in result.stdout
    assert not os.path.isfile(ROOT / "platform" / "__init__.py")
