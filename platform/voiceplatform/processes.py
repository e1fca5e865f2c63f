"""The one way processes are started: a list of named commands, run as children with their output
prefixed by name, stopped together. `manage.py run` uses it for the whole platform on one machine;
on more machines, run the same commands (see README) under any process manager."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(BASE_DIR / "platform"), str(BASE_DIR)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def python_module(name: str, module: str, *args: str, **env: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-m", module, *args], env)


def manage_command(name: str, command: str, *args: str, **env: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, str(BASE_DIR / "manage.py"), command, *args], env)


class ProcessGroup:
    """Children with prefixed output; one that exits on its own is started again, after a pause that
    doubles with each quick exit (1 s up to 30 s), so a crash loop does not spin."""

    MAX_BACKOFF = 30.0

    def __init__(self, specs: list[ProcessSpec], out=sys.stdout):
        self.specs = {spec.name: spec for spec in specs}
        self.out = out
        self.width = max(len(s.name) for s in specs)
        self.children: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.restart_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self.width}} | {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip())

    def _spawn(self, spec: ProcessSpec) -> None:
        proc = subprocess.Popen(
            spec.argv,
            cwd=BASE_DIR,
            env=child_env(spec.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C reaches us only, and we stop children in order.
            start_new_session=True,
        )
        self.children[spec.name] = proc
        self.started_at[spec.name] = time.monotonic()
        threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True).start()

    def start(self) -> None:
        for spec in self.specs.values():
            self._spawn(spec)

    def supervise(self) -> None:
        """Call regularly: restarts children that exited, with backoff."""
        now = time.monotonic()
        for name, proc in self.children.items():
            if proc.poll() is None:
                continue
            if name not in self.restart_at:
                lived = now - self.started_at[name]
                self.backoff[name] = 1.0 if lived > 60 else min(self.MAX_BACKOFF, self.backoff.get(name, 0.5) * 2)
                self.restart_at[name] = now + self.backoff[name]
                self.say(name, f"exited with code {proc.returncode}; restarting in {self.backoff[name]:.0f} s")
            elif now >= self.restart_at.pop(name):
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._spawn(self.specs[name])

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.children.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(name, "did not stop in time; killed")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
