"""`make bench`: run every benchmark in turn; each prints JSON and writes it under bench/results/.

    make bench                       # all, full length
    BENCH_ARGS="--quick" make bench  # shorter runs (figures noisier), for a first look
    BENCH_ARGS="gateway_capacity" make bench
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name: (arguments of the full run, arguments of --quick)
BENCHMARKS = {
    "import_contacts": ([], ["--rows", "20000"]),
    "gateway_capacity": ([], ["--duration", "15", "--hold-workers", "20", "--hold", "20"]),
    "dialer": ([], ["--duration", "10", "--rates", "5,20"]),
    "burst": ([], ["--hold", "15", "--rates", "50,100,150", "--pool-rates", "150,200", "--pool-s", "8", "--step-s", "5"]),
    "media_bridge": (["--record"], ["--levels", "1,10,20", "--hold", "5", "--record"]),  # recorded beside plain
    "transfer": ([], ["--levels", "4", "--hold", "5"]),
    "dashboard_lag": ([], ["--seconds", "5"]),
    "dispatch": ([], ["--idle-tenants", "10"]),
    "metrics_cost": ([], ["--calls", "4", "--hold", "4", "--replays", "5"]),
    "recorder": ([], ["--calls", "600", "--cps", "150,0"]),
    "amd": ([], ["--answers", "100"]),
    "chaos": ([], ["--contacts", "40", "--cps", "8", "--max-concurrent", "16", "--gateways", "5"]),
    "cluster": ([], ["--calls", "100", "--rates", "5,7", "--step-s", "10", "--bridge-hold-s", "10"]),  # as root: cgroup quotas
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    failed = []
    for name in args.names or list(BENCHMARKS):
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"== {name}: not present, skipped", flush=True)
            continue
        full, quick = BENCHMARKS[name]
        print(f"== {name}", flush=True)
        # The benchmarks' agents and far ends listen on loopback: allowed, as the tests do.
        env = dict(os.environ, OUTBOUND_ALLOW=os.environ.get("OUTBOUND_ALLOW", "127.0.0.1"))
        if subprocess.run([sys.executable, str(script), *(quick if args.quick else full)], env=env).returncode:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
