"""cgroup v1 CPU quotas for a benchmark's nodes (root only): each node's processes in a group of
their own, held to the same share of the machine, so that 1, 2 and 3 nodes compare like machines."""
from __future__ import annotations

from pathlib import Path

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


class CpuGroup:
    def __init__(self, name: str, cores: float):
        self.path = CPU_ROOT / f"vp-bench-{name}"
        self.path.mkdir(exist_ok=True)
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))

    def run(self, argv: list[str]) -> list[str]:
        """argv started inside the group: a shell moves itself in, then becomes argv (so its children
        are born inside too)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def stat(self) -> dict[str, int]:
        """The kernel's count of periods, periods throttled and time throttled (ns)."""
        return {key: int(value) for key, value in
                (line.split() for line in (self.path / "cpu.stat").read_text().splitlines())}

    def remove(self) -> None:
        """Back to the root group whatever is left, then the group itself."""
        if not self.path.exists():
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                (CPU_ROOT / "cgroup.procs").write_text(pid)
            except OSError:  # gone meanwhile
                pass
        self.path.rmdir()
