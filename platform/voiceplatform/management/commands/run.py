"""`make run`: the whole platform in the foreground on one machine."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from voiceplatform import demo
from voiceplatform.embedded import started_here, var_dir
from voiceplatform.processes import ProcessGroup, manage_command, python_module, state_path


def port_is_free(host: str, port: int, udp: bool = False) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
        if not udp:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(json.load(response).get("ok"))
    except (OSError, ValueError):  # refused, 503 (HTTPError), not JSON yet
        return False


class Command(BaseCommand):
    help = ("Migrate, ensure the demo tenant, carrier and agent, and run the whole platform (web, Celery, "
            "the gateway pool, the call recorder, the demo carrier and agent) until Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HTTP_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("HTTP_PORT", "8000")))
        parser.add_argument("--workers", type=int, default=int(os.environ.get("CELERY_CONCURRENCY", "8")))
        parser.add_argument("--gateways", type=int, default=int(os.environ.get("GATEWAY_PROCESSES", "2")))
        parser.add_argument("--demo-carrier-port", type=int, default=int(os.environ.get("DEMO_CARRIER_PORT", "5090")))
        parser.add_argument("--demo-agent-port", type=int, default=int(os.environ.get("DEMO_AGENT_PORT", "8765")))

    def handle(self, *args, host, port, workers, gateways, demo_carrier_port, demo_agent_port, **options):
        for what, variable, number, udp in (("HTTP", "HTTP_PORT", port, False),
                                            ("demo carrier", "DEMO_CARRIER_PORT", demo_carrier_port, True),
                                            ("demo agent", "DEMO_AGENT_PORT", demo_agent_port, False)):
            if not port_is_free(host if what == "HTTP" else "127.0.0.1", number, udp):
                raise CommandError(f"port {number} ({what}) is already in use; stop what uses it or set {variable}")
        call_command("migrate_schemas", interactive=False, verbosity=0)
        credentials = demo.ensure_demo_setup()
        demo.ensure_demo_telephony(demo_carrier_port, demo_agent_port)

        # Children (web, workers, API) tell gateways and agents where daphne listens for media streams.
        local_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        os.environ.setdefault("MEDIA_RELAY_URL", f"ws://{local_host}:{port}")
        os.environ.setdefault("PUBLIC_BASE_URL", f"http://localhost:{port}")
        group = ProcessGroup(
            [
                python_module("web", "daphne", "-b", host, "-p", str(port), "voiceplatform.asgi:application",
                              DATABASE_POOL_SIZE=os.environ.get("DATABASE_POOL_SIZE", "20")),
                python_module(
                    "worker", "celery", "-A", "voiceplatform", "worker", "-l", "INFO", "-Q", "celery",
                    "--pool", "threads", "--concurrency", str(workers), "-n", f"worker-{os.getpid()}@%h",
                ),
                python_module(
                    "webhooks", "celery", "-A", "voiceplatform", "worker", "-l", "INFO", "-Q", "webhooks",
                    "--pool", "threads", "--concurrency", "16", "-n", f"webhooks-{os.getpid()}@%h",
                ),
                manage_command("recorder", "record_calls"),
                python_module("gateways", "telephony.gateway.supervisor", "--processes", str(gateways),
                              "--bind", "127.0.0.1", "--public-ip", "127.0.0.1"),
                python_module("carrier", "telephony.demo_carrier", "--host", "127.0.0.1",
                              "--port", str(demo_carrier_port)),
                python_module("agent", "media.demo_agent", "--host", "127.0.0.1", "--port", str(demo_agent_port)),
                python_module(
                    "beat", "celery", "-A", "voiceplatform", "beat", "-l", "INFO",
                    "-s", str(var_dir() / "celerybeat-schedule"),
                ),
            ],
            # the embedded PostgreSQL and Redis this command started (manage.py, before Django loaded)
            watched=started_here(),
            state_path=state_path(),
        )
        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        group.start()
        base = f"http://localhost:{port}"
        health_url, announce_by, announced = f"http://{host}:{port}/healthz", time.monotonic() + 60, False
        try:
            while not stopping:
                group.supervise()
                if not announced and is_healthy(health_url):
                    self.stdout.write(demo.banner(base, port, credentials, demo_agent_port))
                    announced = True
                elif not announced and time.monotonic() > announce_by:
                    self.stderr.write(f"platform did not become healthy; see {base}/healthz and the logs above")
                    announced = True
                time.sleep(0.3)
        finally:
            self.stdout.write("stopping…")
            group.stop()
