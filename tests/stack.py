"""The platform's own processes, started for a test as `make run` starts them: the gateway pool,
the call recorder, Celery workers and beat, each against this test run's PostgreSQL and Redis."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import (
    ROOT,
    free_media_port,
    free_tcp_port,
    free_udp_port,
    project_env,
    stop_process,
    wait_until,
)

GATEWAY_SCENARIOS = ROOT / "tests" / "gateway" / "scenarios"


class Process:
    def __init__(self, name: str, argv: list[str], log_dir: Path, **env):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=project_env(**env), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout: float = 20) -> None:
        stop_process(self.proc, timeout)
        self.log.close()


def gateway_pool(log_dir: Path, processes: int = 2) -> Process:
    return Process("gateways", [sys.executable, "-m", "telephony.gateway.supervisor", "--processes", str(processes),
                                "--bind", "127.0.0.1", "--public-ip", "127.0.0.1",
                                "--base-rtp-port", str(30000 + free_udp_port() % 20000)], log_dir)


def web(log_dir: Path) -> tuple[Process, int]:
    """daphne serving HTTP and WebSockets on a free port, up when this returns."""
    import socket

    port = free_tcp_port()
    process = Process("web", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                              "voiceplatform.asgi:application"], log_dir)

    def listening():
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, 60, 0.1, what="daphne to listen")
    return process, port


def recorder(log_dir: Path) -> Process:
    return Process("recorder", [sys.executable, "manage.py", "record_calls"], log_dir)


def celery_worker(log_dir: Path, name: str, queue: str = "celery", concurrency: int = 4, **env) -> Process:
    """A Celery worker on one queue: `celery` (dialer, carrier health) or `webhooks` (status callbacks)."""
    return Process(name, [sys.executable, "-m", "celery", "-A", "voiceplatform", "worker", "-Q", queue,
                          "--pool", "threads", "--concurrency", str(concurrency), "-l", "WARNING",
                          "-n", f"{name}@%h"],
                   log_dir, **env)


def celery_beat(log_dir: Path) -> Process:
    """Beat without carrier health checks: SIPp scenarios here answer INVITEs, not OPTIONS."""
    return Process("beat", [sys.executable, "-m", "celery", "-A", "voiceplatform", "beat", "-l", "WARNING",
                            "-s", str(log_dir / "beat-schedule")], log_dir, CARRIER_HEALTH_INTERVAL="3600")


def sipp_carrier(log_dir: Path, scenario: str = "uas_answer_bye.xml", *args: str) -> tuple[Process, int]:
    """SIPp as a carrier on 127.0.0.1: answers every call (and, by default, hangs up after -d ms)."""
    port = free_udp_port()
    argv = [shutil.which("sipp"), "-sf", str(GATEWAY_SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
            "-nostdin", "-mp", str(free_media_port()), *args]
    return Process(f"sipp-{port}", argv, log_dir), port


def media_carrier(log_dir: Path, play_pcap: Path | None = None, rtp_port: int | None = None) -> tuple[Process, int]:
    """SIPp as a carrier whose callee answers with audio (scenarios/uas_media.xml, PCMU and
    telephone-event 101): playing ``play_pcap`` once answered, and/or with its SDP pointing our RTP
    at ``rtp_port`` (a socket of the test standing in for the callee's phone line)."""
    text = (GATEWAY_SCENARIOS / "uas_media.xml").read_text().replace("@CODEC_PT@", "0").replace("@CODEC@", "PCMU")
    text = text.replace("@PLAY@", f'<nop><action><exec play_pcap_audio="{play_pcap}"/></action></nop>'
                        if play_pcap else "")
    if rtp_port:
        text = text.replace("m=audio [media_port]", f"m=audio {rtp_port}")
    scenario = log_dir / f"uas_media_{free_udp_port()}.xml"
    scenario.write_text(text)
    return sipp_carrier(log_dir, str(scenario))


@contextmanager
def media_trunk(log_dir: Path, name: str, priority: int = 1, play_pcap: Path | None = None,
                rtp_port: int | None = None) -> Iterator:
    """A platform Carrier named ``name`` whose far end is a media_carrier SIPp; both gone on exit."""
    from telephony.models import Carrier

    sipp, port = media_carrier(log_dir, play_pcap=play_pcap, rtp_port=rtp_port)
    carrier = Carrier.objects.create(name=name, host="127.0.0.1", port=port, priority=priority)
    try:
        yield carrier
    finally:
        sipp.stop()
        carrier.delete()


def final_call(schema_name: str, sid: str, processes: list[Process], timeout: float = 40):
    """The call record once it is final; on a timeout, the platform's process logs tell why."""
    from django_tenants.utils import schema_context

    from telephony.calls.models import Call

    def final():
        with schema_context(schema_name):
            call = Call.objects.get(sid=sid)
            return call if call.is_final else None

    try:
        return wait_until(final, timeout, what=f"call {sid} to be final")
    except AssertionError:
        raise AssertionError("\n".join(p.tail() for p in processes)) from None
