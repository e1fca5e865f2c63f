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
def embedded_env(server_dir):
    env = project_env(VOICEPLATFORM_VAR_DIR=str(server_dir / "var"))
    env.pop("DATABASE_URL")
    env.pop("REDIS_URL")
    return env


CHILDREN = {"web", "web-2", "worker", "webhooks", "beat", "recorder", "gateways", "carrier", "agent"}


def healthy_after_restart(port: int, *names: str):
    """The health report once every part is up again and each of names was restarted."""
    def check():
        status, report = get_health(port)
        processes = report["services"]["runner"].get("processes", {})
        restarted = all(processes[name]["restarts"] >= 1 and processes[name]["alive"] for name in names)
        return report if status == 200 and restarted else None

    return check


def test_run_starts_everything_embedded_heals_what_is_killed_and_stops_on_ctrl_c(embedded_env, server_dir, tmp_path):
    port = free_port()
    log = open(tmp_path / "run.log", "w+")
    run = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--port", str(port), "--demo-carrier-port", str(free_udp_port()),
         "--demo-agent-port", str(free_port()), "--gateways", "1"],
        cwd=ROOT, env=embedded_env, stdout=log, stderr=subprocess.STDOUT,
    )
    state_file = server_dir / "var" / "processes.json"

    def pid_of(name: str) -> int:
        return json.loads(state_file.read_text())["processes"][name]["pid"]

    try:
        status, report = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(get_health(port)), 120)
        assert report["ok"] is True
        assert set(report["services"]) == {"postgres", "redis", "channel_layer", "dialer", "webhooks", "recorder",
                                           "gateways", "media_hosts", "runner"}
        assert set(report["services"]["runner"]["processes"]) == CHILDREN | {"postgres", "redis"}

        credentials = json.loads((server_dir / "var" / "demo-credentials.json").read_text())
        demo = credentials["demo_tenant"]
        assert demo["domain"] == "demo.localhost"
        wait_for(lambda: "Voice platform is up." in (tmp_path / "run.log").read_text(), 10)
        assert demo["api_key"] in (tmp_path / "run.log").read_text()

        # Every child killed at once: each is started again, and the platform is healthy again.
        for name in CHILDREN:
            os.kill(pid_of(name), signal.SIGKILL)
        wait_for(healthy_after_restart(port, *CHILDREN), 180)

        # The embedded Redis, then PostgreSQL, killed: started again on the same socket, and every
        # process finds it again.
        for server in ("redis", "postgres"):
            os.kill(pid_of(server), signal.SIGKILL)
            report = wait_for(healthy_after_restart(port, server), 120)
        assert report["services"]["runner"]["processes"]["web"]["restarts"] == 1
        output = (tmp_path / "run.log").read_text()
        assert "exited with code -9; restarting in 1 s" in output and "is down; restarting in 1 s" in output
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(60)
        log.seek(0)
        output = log.read()
    assert "stopping" in output
    leftovers = subprocess.run(["pgrep", "-f", str(server_dir)], capture_output=True, text=True).stdout.split()
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
