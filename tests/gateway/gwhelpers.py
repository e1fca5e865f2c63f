"""Helpers for the gateway tests (SIPp and gateway processes, event waits)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core import keys
from telephony.gateway import events as ev
from tests.support import free_media_port, free_udp_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'platform'}{os.pathsep}{ROOT}")


wait_for = wait_until


def call_events(r, call_id: str) -> list[dict]:
    return [e for _, e in ev.decode_entries(r.xrange(keys.EVENTS_STREAM)) if e.get("call_id") == call_id]


def wait_event(r, call_id: str, type_: str, timeout: float = 15.0) -> dict:
    def find():
        return next((e for e in call_events(r, call_id) if e["type"] == type_), None)
    return wait_for(find, timeout, what=f"{type_} event of {call_id}")


def wait_final(r, call_id: str, timeout: float = 15.0) -> list[dict]:
    def done():
        evs = call_events(r, call_id)
        return evs if any(ev.is_final(e) for e in evs) else None
    return wait_for(done, timeout, what=f"final event of {call_id}")


class Sipp:
    """One SIPp process on 127.0.0.1:port (UAS carrier or UAC caller)."""

    def __init__(self, workdir: Path, scenario: str, port: int, args=(), subst: dict | None = None):
        self.port = port
        self.workdir = workdir
        if scenario.startswith("@"):  # SIPp built-in scenario, e.g. "@uac"
            path = None
        else:
            path = SCENARIOS / scenario
        if subst:  # SIPp validates some fields at load time: write a filled-in copy
            text = path.read_text()
            for k, v in subst.items():
                text = text.replace(f"@{k}@", str(v))
            path = workdir / f"{path.stem}_{port}.xml"
            path.write_text(text)
        self.scenario = path
        cmd = [SIPP, *(["-sn", scenario[1:]] if path is None else ["-sf", str(path)]), "-i", "127.0.0.1", "-p", str(port), "-nostdin",
               "-trace_msg", "-message_file", str(workdir / f"sipp_{port}_messages.log"),
               "-trace_err", "-error_file", str(workdir / f"sipp_{port}_errors.log"),
               "-mp", str(free_media_port()), *map(str, args)]
        self.proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.15)
        if self.proc.poll() is not None:
            raise RuntimeError(f"sipp failed: {self.proc.stderr.read().decode()[-2000:]}")

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages(self) -> str:
        p = self.workdir / f"sipp_{self.port}_messages.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SupervisorProc:
    """A supervised pool (``telephony.gateway.supervisor``) on this Redis; ``stop`` asserts a clean exit."""

    def __init__(self, redis_url: str, log_path: Path, args=()):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telephony.gateway.supervisor", "--redis-url", redis_url, "--bind", "127.0.0.1",
             "--public-ip", "127.0.0.1", *args],
            cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM, wait for the workers' clean exit, return the pool's output."""
        self.proc.terminate()
        try:
            rc = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()
        assert rc == 0, self.text()[-3000:]
        return self.text()


class MediaHostProc:
    """A media host process (media.host) on a Unix socket in ``workdir``."""

    def __init__(self, workdir: Path, name: str = "media"):
        self.socket_path = str(workdir / f"{name}.sock")
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "media.host", "--socket", self.socket_path, "--name", name],
            cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"media host exited: {self.log_path.read_text()[-3000:]}")
            return os.path.exists(self.socket_path)
        wait_for(listening, 15, what=f"media host {name} socket")

    @property
    def worker_args(self) -> list[str]:
        return ["--media-host", self.socket_path]

    def stop(self, timeout: float = 20.0) -> int:
        code = stop_process(self.proc, timeout)
        self.log.close()
        return code


class GatewayProc:
    def __init__(self, redis_url: str, gateway_id: str, log_path: Path, extra=()):
        self.gateway_id = gateway_id
        self.sip_port = free_udp_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telephony.gateway.worker", "--gateway-id", gateway_id,
             "--redis-url", redis_url, "--sip-port", str(self.sip_port), "--bind", "127.0.0.1",
             "--public-ip", "127.0.0.1", "--rtp-port", str(30000 + (self.sip_port % 200) * 100),
             "--rtp-port-range", "100", *extra],
            cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_alive(self, r, timeout: float = 15.0) -> None:
        def alive():
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            return r.exists(keys.gw_alive_key(self.gateway_id))
        wait_for(alive, timeout, what=f"gateway {self.gateway_id} heartbeat")

    def stop(self, timeout: float = 20.0) -> int:
        code = stop_process(self.proc, timeout)
        self.log.close()
        return code


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def leg(uri_host: str, carrier_id: str, number: str = "+15550002222", **kw) -> dict:
    return {"carrier_id": carrier_id, "uri": f"sip:{number}@{uri_host}", "username": None,
            "password": None, "from_domain": None, **kw}


def dumps(events) -> str:
    return json.dumps(events, indent=1)
