"""The one way processes are started: a list of named commands, run as children with their output
prefixed by name, stopped together. `manage.py run` uses it for the whole platform on one machine;
on more machines, run the same commands (see README) under any process manager."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

BASE_DIR = Path(__file__).resolve().parents[2]


class PortInUse(OSError):
    pass


def shared_listening_socket(host: str, port: int) -> socket.socket:
    """A TCP port bound once by the runner and shared by its web processes (daphne --fd, pass_fds):
    the kernel hands each new connection to one of them, and a web process that is restarted finds
    the port still open. Port 0: any free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host or "0.0.0.0", port))
    except OSError as exc:
        sock.close()
        raise PortInUse(str(exc)) from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


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
    pass_fds: tuple[int, ...] = ()  # open descriptors the child inherits (the web processes' shared socket)


def python_module(name: str, module: str, *args: str, **env: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-m", module, *args], env)


def manage_command(name: str, command: str, *args: str, **env: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, str(BASE_DIR / "manage.py"), command, *args], env)


def state_path() -> Path:
    """Where `manage.py run` keeps its children's state for /healthz (under the var dir)."""
    from .embedded import var_dir

    return var_dir() / "processes.json"


def read_state(path: Path | None = None) -> dict | None:
    """The runner's last written state, or None when no runner of this var dir is running."""
    path = path or state_path()
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["runner_pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


class Watched(Protocol):
    """A server the group watches and starts again but did not spawn itself (the embedded
    PostgreSQL and Redis: embedded.py)."""

    name: str
    pid: int | None

    def alive(self) -> bool: ...

    def restart(self) -> None: ...


class ProcessGroup:
    """Children with prefixed output, and watched servers. A child that exits on its own, or a watched
    server that dies, is started again after a pause: 1 s after a run of more than a minute, else
    doubling with each quick exit (1 s up to 30 s), so a crash loop does not spin. Every exit and
    restart is logged and, with a state_path, written there (read by /healthz)."""

    MAX_BACKOFF = 30.0
    STEADY_AFTER = 60.0

    def __init__(self, specs: list[ProcessSpec], out=sys.stdout, watched: list[Watched] = (),
                 state_path: Path | None = None):
        self.specs = {spec.name: spec for spec in specs}
        self.watched = {server.name: server for server in watched}
        self.out = out
        self.state_path = state_path
        self.width = max(len(name) for name in [*self.specs, *self.watched])
        self.children: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.restart_at: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self.last_exit: dict[str, str] = {}
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
            pass_fds=spec.pass_fds,
            # Own process group: Ctrl-C reaches us only, and we stop children in order.
            start_new_session=True,
        )
        self.children[spec.name] = proc
        threading.Thread(target=self._pump, args=(spec.name, proc.stdout), daemon=True).start()

    def start(self) -> None:
        now = time.monotonic()
        for name in self.watched:
            self.started_at[name] = now
        for spec in self.specs.values():
            self._spawn(spec)
            self.started_at[spec.name] = now
        self.write_state()

    def supervise(self) -> None:
        """Call regularly: restarts children that exited and watched servers that died, with backoff."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                self._down(name, f"exited with code {proc.returncode}", lambda spec=self.specs[name]: self._spawn(spec))
        for name, server in self.watched.items():
            if not server.alive():
                self._down(name, "is down", server.restart)

    def _down(self, name: str, why: str, restart) -> None:
        now = time.monotonic()
        due = self.restart_at.get(name)
        if due is None:
            lived = now - self.started_at[name]
            self.backoff[name] = 1.0 if lived > self.STEADY_AFTER else min(
                self.MAX_BACKOFF, self.backoff.get(name, 0.5) * 2)
            self.restart_at[name] = now + self.backoff[name]
            self.last_exit[name] = why
            self.say(name, f"{why}; restarting in {self.backoff[name]:.0f} s")
        elif now >= due:
            del self.restart_at[name]
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.started_at[name] = now
            try:
                restart()
            except Exception as exc:  # noqa: BLE001 - said, and tried again after the next pause
                self.say(name, f"restart {self.restarts[name]} failed: {exc}")
            else:
                self.say(name, f"restarted (restart {self.restarts[name]})")
        else:
            return
        self.write_state()

    def state(self) -> dict:
        units = {}
        for name in [*self.watched, *self.specs]:
            if name in self.watched:
                kind, pid, alive = "embedded", self.watched[name].pid, self.watched[name].alive()
            else:
                proc = self.children.get(name)
                kind, pid, alive = "child", proc and proc.pid, proc is not None and proc.poll() is None
            units[name] = {"kind": kind, "pid": pid, "alive": alive, "restarts": self.restarts.get(name, 0),
                           "last_exit": self.last_exit.get(name, "")}
        return {"runner_pid": os.getpid(), "updated_at": time.time(), "processes": units}

    def write_state(self) -> None:
        if self.state_path is None:
            return
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            part = self.state_path.with_suffix(".part")
            part.write_text(json.dumps(self.state()))
            os.replace(part, self.state_path)
        except OSError as exc:  # /healthz misses the counts; the processes are still watched
            self.say("runner", f"state not written to {self.state_path}: {exc}")

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
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)
