"""Benchmark: what the gateway pool sustains against SIPp, beside SIPp calling SIPp in the same run.

    .venv/bin/python bench/gateway_capacity.py [--duration 60] [--workers 8] [--hold-workers 40]
                                               [--parts sipp,gateway,hold]

1. Baseline: SIPp UAC -> SIPp UAS, short calls, at a ladder of rates; the highest rate with < 0.1%
   failed calls over the duration.
2. Gateway pool: originate commands pushed at a ladder of rates into Redis, a pool of `--workers`
   gateway processes dialing a SIPp UAS; short calls (the gateway hangs up 100 ms after answer).
   Highest rate with < 0.1% failed; CPU seconds per call and resident memory per process.
3. Concurrency: `--hold-workers` processes (4 calls each) hold answered calls for `--hold` seconds;
   the most concurrent answered calls held, memory per call.
``--parts gateway --gateway-rates 150`` measures the pool alone at one rate (the CPU per call of a
change to the worker, before and after).
Results: JSON on stdout and in bench/results/gateway_capacity-<time>.json. Ratios are gateway / SIPp.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.report import save as save_report  # noqa: E402
from core import keys  # noqa: E402
from telephony.gateway import client, events  # noqa: E402
from tests.support import free_media_port, free_udp_port  # noqa: E402
from voiceplatform.embedded import RedisServer  # noqa: E402

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'platform'}{os.pathsep}{ROOT}")


def sipp_uas(workdir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-mp",
                             str(free_media_port()), "-max_socket", "5000"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def sipp_baseline(workdir: Path, rate: int, duration: float) -> dict:
    """SIPp calling SIPp: `rate` calls/s of 100 ms calls for `duration` s."""
    uas_port = free_udp_port()
    uas = sipp_uas(workdir, uas_port)
    time.sleep(0.3)
    total = int(rate * duration)
    stats = workdir / f"uac_{rate}.csv"
    started = time.monotonic()
    uac = subprocess.run([SIPP, "-sn", "uac", f"127.0.0.1:{uas_port}", "-i", "127.0.0.1", "-p", str(free_udp_port()),
                          "-r", str(rate), "-m", str(total), "-d", "100", "-nostdin", "-mp", str(free_media_port()),
                          "-trace_stat", "-stf", str(stats), "-fd", "1", "-timeout", str(int(duration) + 30),
                          "-max_socket", "5000"],
                         cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    stop(uas)
    rows = list(csv.reader(stats.open(), delimiter=";"))
    header, last = rows[0], rows[-1]
    ok = int(last[header.index("SuccessfulCall(C)")])
    failed = int(last[header.index("FailedCall(C)")])
    return {"rate": rate, "calls": total, "successful": ok, "failed": failed + max(0, total - ok - failed),
            "elapsed_s": round(elapsed, 1), "exit": uac.returncode}


class Pool:
    def __init__(self, workdir: Path, redis_url: str, processes: int):
        self.log = open(workdir / f"pool_{processes}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telephony.gateway.supervisor", "--processes", str(processes), "--redis-url",
             redis_url, "--bind", "127.0.0.1", "--public-ip", "127.0.0.1", "--log-level", "WARNING",
             "--base-rtp-port", "20000", "--rtp-ports-per-worker", "40"],
            cwd=ROOT, env=ENV, stdout=self.log, stderr=subprocess.STDOUT)
        self.processes = processes

    def wait_ready(self, r: redis.Redis, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = [g for g in client.pool_status(r) if g["alive"]]
            if len(alive) >= self.processes:
                return
            time.sleep(0.5)
        raise RuntimeError("gateway pool did not come up")

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def cpu_seconds(self) -> float:
        """The supervisor's, its workers' and media hosts' (as bench/burst.py counts the gateway kind:
        the supervisor re-prints every line its workers log)."""
        total = 0.0
        for proc in [psutil.Process(self.proc.pid), *self.workers()]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mb(self) -> list[float]:
        return [round(w.memory_info().rss / 2**20, 1) for w in self.workers() if w.is_running()]

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def finals(r: redis.Redis, call_ids: set[str], timeout: float) -> dict[str, dict]:
    """Final events of the given calls, read from the stream until all are in or timeout."""
    found: dict[str, dict] = {}
    last = "0"
    deadline = time.monotonic() + timeout
    while len(found) < len(call_ids) and time.monotonic() < deadline:
        for entry_id, event in client.read_events(r, last, block_ms=500, count=5000):
            last = entry_id
            if event["call_id"] in call_ids and events.is_final(event):
                found[event["call_id"]] = event
    return found


def redis_work(r: redis.Redis) -> tuple[float, int]:
    """Redis's CPU seconds so far and the commands it ran (scripts' own calls included)."""
    cpu, stats = r.info("cpu"), r.info("commandstats")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"], sum(s["calls"] for s in stats.values())


def gateway_rate(r: redis.Redis, pool: Pool, uas_host: str, rate: int, duration: float) -> dict:
    r.delete(keys.EVENTS_STREAM)
    total = int(rate * duration)
    cpu_before, redis_before = pool.cpu_seconds(), redis_work(r)
    leg = {"carrier_id": "bench", "uri": f"sip:+14155550199@{uas_host}", "username": None, "password": None}
    ids = set()
    started = time.monotonic()
    for n in range(total):
        target = started + n / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ids.add(client.originate(r, {"from": "+14155550100", "to": "+14155550199", "ring_timeout": 10,
                                     "max_duration": 0.1, "legs": [leg], "tenant": "bench"}))
    push_s = time.monotonic() - started
    got = finals(r, ids, timeout=60)
    answered = sum(1 for e in got.values() if e["type"] == events.COMPLETED)
    failed = total - answered
    cpu = pool.cpu_seconds() - cpu_before
    redis_cpu, redis_commands = (after - before for after, before in zip(redis_work(r), redis_before, strict=True))
    return {"rate": rate, "calls": total, "answered": answered, "failed": failed,
            "failed_pct": round(100 * failed / total, 3), "push_s": round(push_s, 1),
            "cpu_s_per_call": round(cpu / max(1, answered), 5), "rss_mb": pool.rss_mb(),
            # everyone's (the pusher's and reader's too): for comparing runs of the same bench
            "redis_cpu_ms_per_call": round(1000 * redis_cpu / max(1, answered), 3),
            "redis_commands_per_call": round(redis_commands / max(1, answered), 1),
            "outcomes": sorted({e.get("outcome", "?") for e in got.values() if e["type"] == events.FAILED})}


def ladder(run, rates) -> tuple[list[dict], int]:
    results, best = [], 0
    for rate in rates:
        result = run(rate)
        results.append(result)
        if result["failed"] <= result["calls"] * 0.001:
            best = rate
        else:
            break
    return results, best


def hold_calls(workdir: Path, r: redis.Redis, redis_url: str, processes: int, hold: float) -> dict:
    pool = Pool(workdir, redis_url, processes)
    uas_port = free_udp_port()
    uas = sipp_uas(workdir, uas_port)
    try:
        pool.wait_ready(r)
        r.delete(keys.EVENTS_STREAM)
        leg = {"carrier_id": "bench", "uri": f"sip:+14155550199@127.0.0.1:{uas_port}"}
        ids = {client.originate(r, {"from": "+14155550100", "to": "+14155550199", "ring_timeout": 30,
                                    "max_duration": hold, "legs": [leg], "tenant": "bench"})
               for _ in range(processes * 4)}
        time.sleep(min(20.0, hold / 2))
        _, active = client.pool_capacity(r)
        rss = pool.rss_mb()
        got = finals(r, ids, timeout=hold + 60)
        held_to_end = sum(1 for e in got.values() if e["type"] == events.COMPLETED and e.get("duration", 0) >= hold - 1)
        return {"requested": len(ids), "active_mid_hold": active, "held_to_end": held_to_end,
                "hold_s": hold, "rss_mb_per_process_max": max(rss), "rss_mb_total": round(sum(rss), 1),
                "rss_mb_per_call": round(sum(rss) / max(1, active), 1)}
    finally:
        stop(uas)
        pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--hold-workers", type=int, default=40)
    parser.add_argument("--hold", type=float, default=60)
    parser.add_argument("--sipp-rates", default="100,200,400")
    parser.add_argument("--gateway-rates", default="50,100,150")
    parser.add_argument("--parts", default="sipp,gateway,hold", help="which parts to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    workdir = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    redis_server = RedisServer(workdir / "redis").start()
    r = redis.Redis.from_url(redis_server.url)
    report = {"machine": {"cpus": os.cpu_count()}, "duration_s": args.duration}
    try:
        sipp_best = 0
        if "sipp" in parts:
            sipp_results, sipp_best = ladder(lambda rate: sipp_baseline(workdir, rate, args.duration),
                                             [int(x) for x in args.sipp_rates.split(",")])
            report["sipp_baseline"] = {"ladder": sipp_results, "best_cps": sipp_best}

        if "gateway" in parts:
            pool = Pool(workdir, redis_server.url, args.workers)
            uas_port = free_udp_port()
            uas = sipp_uas(workdir, uas_port)
            try:
                pool.wait_ready(r)
                report["gateway_idle_rss_mb"] = pool.rss_mb()
                report["gateway_pids"] = [w.pid for w in pool.workers()]
                print(json.dumps({"gateway_pids": report["gateway_pids"]}), flush=True)
                gw_results, gw_best = ladder(
                    lambda rate: dict(gateway_rate(r, pool, f"127.0.0.1:{uas_port}", rate, args.duration),
                                      load=round(os.getloadavg()[0], 2)),
                    [int(x) for x in args.gateway_rates.split(",")])
            finally:
                stop(uas)
                pool.stop()
            report["gateway_pool"] = {"workers": args.workers, "ladder": gw_results, "best_cps": gw_best,
                                      "ratio_to_sipp": round(gw_best / sipp_best, 3) if sipp_best else None}
        if "hold" in parts:
            report["concurrency"] = hold_calls(workdir, r, redis_server.url, args.hold_workers, args.hold)
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    save_report("gateway_capacity", report)


if __name__ == "__main__":
    main()
