"""Network namespaces joined by veth pairs, for a node whose network a test cuts: the addresses live
only inside the namespaces the test makes, with no default route (nothing reaches past them)."""
from __future__ import annotations

import os
import subprocess


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespace:
    def __init__(self, name: str):
        self.name = name
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")

    def run(self, argv: list[str]) -> list[str]:
        """argv run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


class Link:
    """A veth pair between two namespaces, /24 addresses on each end."""

    def __init__(self, name: str, a: Namespace, a_address: str, b: Namespace, b_address: str):
        self.name, self.a, self.b = name, a, b
        ip("link", "add", f"{name}a", "netns", a.name, "type", "veth", "peer", "name", f"{name}b", "netns", b.name)
        for ns, end, address in ((a, f"{name}a", a_address), (b, f"{name}b", b_address)):
            ip("-n", ns.name, "addr", "add", f"{address}/24", "dev", end)
            ip("-n", ns.name, "link", "set", end, "up")

    def cut(self) -> None:
        """Both ends down: what a pulled cable or a dead switch port does to the node's packets."""
        ip("-n", self.a.name, "link", "set", f"{self.name}a", "down")
        ip("-n", self.b.name, "link", "set", f"{self.name}b", "down")

    def restore(self) -> None:
        ip("-n", self.a.name, "link", "set", f"{self.name}a", "up")
        ip("-n", self.b.name, "link", "set", f"{self.name}b", "up")


def unique(prefix: str) -> str:
    """A name short enough for an interface (15 characters), unique to this test run."""
    return f"{prefix}{os.getpid() % 100000}"
