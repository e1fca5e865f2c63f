"""Benchmark: how the platform heals. The chaos suite's faults (tests/chaos), one after the other, each
during a campaign of its own on the whole platform (`manage.py run` against its own PostgreSQL and
Redis, SIPp trunks answering with RTP and hanging up after 3-5 s): for each fault, the seconds until
the platform is whole again (/healthz 200, every process back, every gateway worker in the pool),
the calls it ended and how, and the contacts lost, dialed twice or stuck.

    .venv/bin/python bench/chaos.py [--contacts 80] [--cps 10] [--max-concurrent 20] [--gateways 6]
                                    [--faults web,redis,...]

Target: every fault healed within 15 s, with 0 lost, 0 duplicated, 0 stuck.
Results: JSON on stdout and in bench/results/chaos-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench import report  # noqa: E402
from tests.chaos.faults import FAULTS, run_fault  # noqa: E402
from tests.chaos.platform import ChaosPlatform, Scale  # noqa: E402

TARGET_HEALED_S = 15.0


def summary(report) -> dict:
    """One fault's row: the figures the target is about, then the detail."""
    return {
        "fault": report.fault, "what": report.what, "healed_s": report.healed_s,
        "calls_in_flight": report.calls_in_flight, "calls_ended_by_fault": report.ended_by_fault,
        "how_they_ended_at_the_carrier": report.ended_at_carrier,
        "last_fault_call_ended_after_s": report.last_fault_call_ended_after_s,
        "contacts_lost": len(report.lost), "contacts_duplicated": len(report.duplicated),
        "calls_stuck": len(report.stuck) + len(report.open_at_carrier),
        "durations_off": len(report.duration_mismatches), "trunk_peaks": report.peak_concurrent,
        "health_answers": report.health_answers, "campaign_state": report.campaign_state,
        "met_target": (report.healed_s is not None and report.healed_s <= TARGET_HEALED_S
                       and not (report.lost or report.duplicated or report.stuck or report.open_at_carrier)),
        "problems": report.problems(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=80, help="contacts per fault's campaign")
    parser.add_argument("--cps", type=float, default=10.0)
    parser.add_argument("--max-concurrent", type=int, default=20, help="the campaign's cap and each trunk's")
    parser.add_argument("--gateways", type=int, default=6)
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    args = parser.parse_args()
    names = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = [name for name in names if name not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")

    scale = Scale(gateways=args.gateways, contacts=args.contacts, cps=args.cps, max_concurrent=args.max_concurrent)
    platform = ChaosPlatform(scale, log=lambda line: print(line, flush=True))
    rows = []
    started = time.monotonic()
    try:
        platform.start()
        for index, name in enumerate(names, start=1):
            row = summary(run_fault(platform, FAULTS[name], index))
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("fault", "healed_s", "calls_ended_by_fault", "contacts_lost",
                                                  "contacts_duplicated", "calls_stuck", "met_target")}), flush=True)
    finally:
        platform.stop()
    result = {
        "benchmark": "chaos", "scale": asdict(scale),
        "target": {"healed_s": TARGET_HEALED_S, "lost": 0, "duplicated": 0, "stuck": 0},
        "seconds": round(time.monotonic() - started, 1),
        "met_target": [row["fault"] for row in rows if row["met_target"]],
        "missed_target": [row["fault"] for row in rows if not row["met_target"]],
        "faults": rows,
    }
    report.save("chaos", result)


if __name__ == "__main__":
    main()
