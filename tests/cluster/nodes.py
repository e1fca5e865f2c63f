"""A test cluster: Debian's PostgreSQL and Redis in a folder of their own, nodes started with
`manage.py run --role …` on loopback aliases (127.0.0.2, .3, … bind without any setup)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, project_env, stop_process


class Cluster:
    def __init__(self, folder: Path, database_url: str, redis_url: str, **env: str):
        self.folder = folder
        self.env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "CARRIER_HEALTH_INTERVAL": "3600",
                    **env}
        self.nodes: dict[str, Node] = {}

    def act(self, action: str, **arguments) -> dict:
        """A tenant's or operator's action (tests/cluster/actions.py) against the cluster's servers."""
        done = subprocess.run([sys.executable, "-m", "tests.cluster.actions", action, json.dumps(arguments)],
                              cwd=ROOT, env=project_env(**self.env), capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise AssertionError(f"{action} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start_node(self, name: str, address: str, region: str = "", roles: str = "worker,recorder,gateways",
                   gateways: int = 2) -> Node:
        node = Node(self, name, address, region, roles, gateways)
        self.nodes[name] = node
        return node

    def tails(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {n.name}\n{n.tail(chars)}" for n in self.nodes.values())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()


class Node:
    """One node's processes under their runner, in a process group of their own (killed whole)."""

    def __init__(self, cluster: Cluster, name: str, address: str, region: str, roles: str, gateways: int):
        self.name, self.address, self.region = name, address, region
        var = cluster.folder / name
        var.mkdir(parents=True, exist_ok=True)
        self.log_path = var / "node.log"
        self.log = open(self.log_path, "wb")
        argv = [sys.executable, "manage.py", "run", "--role", roles, "--public-ip", address, "--node", name,
                "--region", region, "--gateways", str(gateways), "--workers", "4"]
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=project_env(**cluster.env, VOICEPLATFORM_VAR_DIR=str(var)))

    def tail(self, chars: int = 2500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def kill(self) -> None:
        """SIGKILL to every process of the node at once, as when the machine goes."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_process(self.proc, 30)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything its runner left behind
        except ProcessLookupError:
            pass
        self.log.close()
