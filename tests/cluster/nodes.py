"""A test cluster: Debian's PostgreSQL and Redis in a folder of their own, nodes started with
`manage.py run --role …` on loopback aliases (127.0.0.2, .3, … bind without any setup)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support import ROOT, project_env, stop_process

if TYPE_CHECKING:
    from tests.cluster.netns import Namespace


class Cluster:
    def __init__(self, folder: Path, database_url: str, redis_url: str, namespace: Namespace | None = None,
                 **env: str):
        """namespace: where the servers are (the actions run there too); default the test's own."""
        self.folder, self.namespace = folder, namespace
        self.env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "CARRIER_HEALTH_INTERVAL": "3600",
                    **env}
        self.nodes: dict[str, Node] = {}

    def act(self, action: str, **arguments) -> dict:
        """A tenant's or operator's action (tests/cluster/actions.py) against the cluster's servers."""
        argv = [sys.executable, "-m", "tests.cluster.actions", action, json.dumps(arguments)]
        done = subprocess.run(self.namespace.run(argv) if self.namespace else argv,
                              cwd=ROOT, env=project_env(**self.env), capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise AssertionError(f"{action} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_node(self, name: str, address: str, region: str = "", roles: str = "worker,recorder,gateways",
                   gateways: int = 2, namespace: Namespace | None = None, **env: str) -> Node:
        """A node's processes, in a network namespace of its own if given."""
        node = Node(self, name, address, region, roles, gateways, namespace, env)
        self.nodes[name] = node
        return node

    def tails(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {n.name}\n{n.tail(chars)}" for n in self.nodes.values())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


class Node:
    """One node's processes under their runner, in a process group of their own (killed whole)."""

    def __init__(self, cluster: Cluster, name: str, address: str, region: str, roles: str, gateways: int,
                 namespace: Namespace | None, env: dict[str, str]):
        self.name, self.address, self.region = name, address, region
        var = cluster.folder / name
        var.mkdir(parents=True, exist_ok=True)
        self.log_path = var / "node.log"
        self.log = open(self.log_path, "wb")
        argv = [sys.executable, "manage.py", "run", "--role", roles, "--public-ip", address, "--node", name,
                "--region", region, "--gateways", str(gateways), "--workers", "4"]
        self.proc = subprocess.Popen(namespace.run(argv) if namespace else argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=project_env(**cluster.env, **env, VOICEPLATFORM_VAR_DIR=str(var)))

    def tail(self, chars: int = 2500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def processes(self) -> list[int]:
        """The runner and every process under it (children run in sessions of their own)."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo += [int(child) for child in task.read_text().split()]
                except OSError:
                    pass
        return pids

    def kill(self) -> None:
        """SIGKILL to every process of the node, as when the machine goes: all frozen first, so
        that no supervisor restarts anything meanwhile."""
        pids = self.processes()
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            pids = self.processes()
            stop_process(self.proc, 30)
            for pid in pids[1:]:  # what a runner killed on its timeout left behind
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()


class Balancer:
    """Kamailio in front of the gateways, configured by `manage.py kamailio_config --watch`."""

    def __init__(self, cluster: Cluster, address: str, port: int):
        self.folder = cluster.folder / "kamailio"
        self.folder.mkdir(exist_ok=True)
        self.address, self.port = address, port
        self.list_path = self.folder / "dispatcher.list"
        self.config_log = open(self.folder / "config.log", "wb")
        self.config = subprocess.Popen(
            [sys.executable, "manage.py", "kamailio_config", "--dir", str(self.folder), "--listen",
             f"{address}:{port}", "--watch", "1"],
            cwd=ROOT, env=project_env(**cluster.env), stdout=self.config_log, stderr=subprocess.STDOUT)
        self.kamailio: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = open(self.folder / "kamailio.log", "wb")
        self.kamailio = subprocess.Popen(
            ["kamailio", "-f", str(self.folder / "kamailio.cfg"), "-DD", "-E", "-Y", str(self.folder),
             "-m", "32", "-M", "8"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def rpc(self, command: str) -> str:
        """Kamailio's answer to an RPC command (kamcmd)."""
        return subprocess.run(["kamcmd", "-s", f"unix:{self.folder / 'kamailio.ctl'}", command],
                              capture_output=True, text=True, timeout=10).stdout

    def tail(self, chars: int = 3000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:]
                         for p in (self.folder / "config.log", self.folder / "kamailio.log") if p.exists())

    def stop(self) -> None:
        for proc in (self.kamailio, self.config):
            if proc is not None:
                stop_process(proc, 10)
        self.config_log.close()
