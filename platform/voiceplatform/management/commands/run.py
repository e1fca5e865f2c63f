"""`make run`: the whole platform in the foreground on one machine."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from voiceplatform import demo
from voiceplatform.embedded import started_here, var_dir
from voiceplatform.processes import (
    PortInUse,
    ProcessGroup,
    ProcessSpec,
    manage_command,
    python_module,
    shared_listening_socket,
    state_path,
)

ROLES = ("web", "worker", "webhooks", "recorder", "gateways", "beat")
NODE_ROLES = ("web", "worker", "webhooks", "recorder", "gateways")  # beat: one node of the cluster asks for it


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
        parser.add_argument("--web-processes", type=int, default=int(os.environ.get("WEB_PROCESSES", "2")),
                            help="daphne processes sharing the HTTP port (each uses at most one core)")
        parser.add_argument("--demo-carrier-port", type=int, default=int(os.environ.get("DEMO_CARRIER_PORT", "5090")))
        parser.add_argument("--demo-agent-port", type=int, default=int(os.environ.get("DEMO_AGENT_PORT", "8765")))
        parser.add_argument(
            "--role", default=None,
            help=f"run one cluster node: a comma-separated subset of {','.join(ROLES)} or 'node' "
                 f"(= {','.join(NODE_ROLES)}), against DATABASE_URL/REDIS_URL, without the demo tenant, "
                 "carrier and agent, and without migrating (run migrate_schemas once per cluster)")
        parser.add_argument("--public-ip", default=os.environ.get("NODE_PUBLIC_IP", "127.0.0.1"),
                            help="this node's address for SIP and RTP (also the gateways' bind address)")
        parser.add_argument("--region", default=os.environ.get("NODE_REGION", ""),
                            help="this node's region: its gateways place the calls of that region's carriers")
        parser.add_argument("--node", default=os.environ.get("NODE_NAME", ""),
                            help="node name in gateway and Celery worker names (default: the host name)")

    def handle(self, *args, role, **options):
        if role:
            return self.run_node(role, **options)
        return self.run_all(**options)

    def run_node(self, role, *, host, port, workers, gateways, web_processes, public_ip, region, node, **options):
        roles = NODE_ROLES if role == "node" else tuple(r.strip() for r in role.split(",") if r.strip())
        unknown = sorted(set(roles) - set(ROLES))
        if unknown or not roles:
            raise CommandError(f"unknown role {', '.join(map(repr, unknown)) or repr(role)}; "
                               f"roles: {', '.join(ROLES)} or node")
        self.web = self.web_socket(host, port) if "web" in roles else None
        node = node or socket.gethostname().split(".")[0]
        processes = node_processes(self.web, web_processes, workers, gateways, public_ip, region, node)
        specs = [spec for name in roles for spec in processes[name]]
        self.supervise(ProcessGroup(specs, watched=started_here(), state_path=state_path()),
                       f"http://{host}:{port}/healthz" if "web" in roles else None,
                       lambda: self.stdout.write(f"node {node} is up: {', '.join(spec.name for spec in specs)}"))

    def run_all(self, *, host, port, workers, gateways, web_processes, demo_carrier_port, demo_agent_port,
                **options):
        for what, variable, number, udp in (("demo carrier", "DEMO_CARRIER_PORT", demo_carrier_port, True),
                                            ("demo agent", "DEMO_AGENT_PORT", demo_agent_port, False)):
            if not port_is_free("127.0.0.1", number, udp):
                raise CommandError(f"port {number} ({what}) is already in use; stop what uses it or set {variable}")
        self.web = self.web_socket(host, port)
        call_command("migrate_schemas", interactive=False, verbosity=0)
        credentials = demo.ensure_demo_setup()
        demo.ensure_demo_telephony(demo_carrier_port, demo_agent_port)

        # Children (web, workers, API) tell gateways and agents where daphne listens for media streams.
        local_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        os.environ.setdefault("MEDIA_RELAY_URL", f"ws://{local_host}:{port}")
        os.environ.setdefault("PUBLIC_BASE_URL", f"http://localhost:{port}")
        # The outbound guard lets the demo reach exactly its own agent and carrier on this machine.
        demo_targets = [f"127.0.0.1:{demo_agent_port}", f"127.0.0.1:{demo_carrier_port}"]
        os.environ["OUTBOUND_ALLOW"] = ",".join([*settings.OUTBOUND_ALLOW, *demo_targets])
        processes = node_processes(self.web, web_processes, workers, gateways, "127.0.0.1", "", "")
        group = ProcessGroup(
            [
                *(spec for name in ("web", "worker", "webhooks", "recorder", "gateways") for spec in processes[name]),
                python_module("carrier", "demo.carrier", "--host", "127.0.0.1",
                              "--port", str(demo_carrier_port)),
                python_module("agent", "demo.agent", "--host", "127.0.0.1", "--port", str(demo_agent_port)),
                *processes["beat"],
            ],
            # the embedded PostgreSQL and Redis this command started (manage.py, before Django loaded)
            watched=started_here(),
            state_path=state_path(),
        )
        base = f"http://localhost:{port}"
        self.supervise(group, f"http://{host}:{port}/healthz",
                       lambda: self.stdout.write(demo.banner(base, port, credentials, demo_agent_port)))

    @staticmethod
    def web_socket(host: str, port: int) -> socket.socket:
        try:
            return shared_listening_socket(host, port)
        except PortInUse as exc:
            raise CommandError(f"port {port} (HTTP) is already in use; stop what uses it or set HTTP_PORT") from exc

    def supervise(self, group: ProcessGroup, health_url: str | None, announce) -> None:
        """Run the group until SIGINT/SIGTERM; announce once /healthz is green (at once without web)."""
        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        group.start()
        announce_by, announced = time.monotonic() + 60, False
        try:
            while not stopping:
                group.supervise()
                if not announced and (health_url is None or is_healthy(health_url)):
                    announce()
                    announced = True
                elif not announced and time.monotonic() > announce_by:
                    self.stderr.write(f"platform did not become healthy; see {health_url} and the logs above")
                    announced = True
                time.sleep(0.3)
        finally:
            self.stdout.write("stopping…")
            group.stop()


def node_processes(web: socket.socket | None, web_processes: int, workers: int, gateways: int, public_ip: str,
                   region: str, node: str) -> dict[str, list[ProcessSpec]]:
    """One node's processes by role; `web` is the HTTP port's socket (None: no web role here), which
    `web_processes` daphnes share (named web, web-2, …); `node` names its Celery workers and gateways
    (empty: the runner's pid names the Celery workers, the host name the gateways)."""
    gateway_args = ["--processes", str(gateways), "--bind", public_ip, "--public-ip", public_ip]
    if region:
        gateway_args += ["--region", region]
    if node:
        gateway_args += ["--node", node]
    node = node or str(os.getpid())
    # web: its request threads share a pool of DATABASE_POOL_SIZE connections (voiceplatform/sync_handler.py)
    web_specs = [] if web is None else [
        dataclasses.replace(
            python_module("web" if n == 1 else f"web-{n}", "daphne", "--fd", str(web.fileno()),
                          "voiceplatform.asgi:application", DATABASE_POOL_SIZE=os.environ.get("DATABASE_POOL_SIZE", "20")),
            pass_fds=(web.fileno(),))
        for n in range(1, max(1, web_processes) + 1)
    ]
    return {
        "web": web_specs,
        "worker": [python_module(
            "worker", "celery", "-A", "voiceplatform", "worker", "-l", "INFO", "-Q", "celery",
            "--pool", "threads", "--concurrency", str(workers), "-n", f"worker-{node}@%h",
        )],
        "webhooks": [python_module(
            "webhooks", "celery", "-A", "voiceplatform", "worker", "-l", "INFO", "-Q", "webhooks",
            "--pool", "threads", "--concurrency", "16", "-n", f"webhooks-{node}@%h",
        )],
        "recorder": [manage_command("recorder", "record_calls")],
        "gateways": [python_module("gateways", "telephony.gateway.supervisor", *gateway_args)],
        "beat": [python_module("beat", "celery", "-A", "voiceplatform", "beat", "-l", "INFO",
                               "-s", str(var_dir() / "celerybeat-schedule"))],
    }
