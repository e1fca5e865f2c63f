"""CPU cost of call metrics per call, against the CPU of the call path, measured in the same run.

    .venv/bin/python bench/metrics_cost.py [--calls 12] [--hold 5] [--replays 20]

Set-up (everything on this machine): an embedded PostgreSQL and Redis, one bench tenant, one gateway
worker (4 calls at a time), SIPp answering each call and saying a sentence then going quiet (line
noise, as RTP, until the call ends: tests/conversation.py), and an agent here that answers after the quiet (so every call has an AI
response time). Calls are placed through the gateway client, held ``--hold`` seconds, hung up.

* call path per call: the gateway worker's CPU during the calls, net of its idle CPU measured first
  (/proc), plus the recorder's CPU per call: every event of the calls recorded here with
  telephony.calls.recorder.record_events, in the blocks ``manage.py record_calls`` reads (thread CPU time);
* metrics per call: the CPU of telephony.metrics.services.record_call_events inside those
  record_events calls (thread CPU time; it is part of the recorder's figure above), plus the Redis
  server's CPU for those writes, measured by replaying the same events ``--replays`` times into
  fresh tenants (Redis INFO used_cpu_*, over the replays);
* for reference, the metrics computed inside the gateway per frame (RFC 3550 jitter/loss, the AI
  response detector, the latency histograms), timed here per frame and scaled to the calls' frames:
  they are part of the gateway's CPU, not of the aggregates.

Target: aggregates under 5 % of the call path's CPU. Prints one JSON document and writes it to
bench/results/metrics_cost-<time>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from bench.procstat import proc_cpu  # noqa: E402
from bench.report import save as save_report  # noqa: E402


def redis_cpu(r) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def setup_platform(work: Path):
    from voiceplatform.embedded import RedisServer, start_postgres

    redis_server = RedisServer(work / "redis").start()
    os.environ.update(REDIS_URL=redis_server.url, DATABASE_URL=start_postgres(work / "postgres"),
                      VOICEPLATFORM_VAR_DIR=str(work), DJANGO_SETTINGS_MODULE="voiceplatform.settings",
                      LOG_LEVEL="WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.services import create_tenant, ensure_public_tenant

    call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
    ensure_public_tenant()
    create_tenant("bench", "bench.localhost", name="Bench")
    return redis_server


def stop_platform(work: Path, redis_server) -> None:
    """What setup_platform started, stopped, and its folder removed."""
    from django.db import connections

    from voiceplatform.embedded import stop_postgres

    connections.close_all()
    redis_server.stop()
    stop_postgres(work / "postgres")
    shutil.rmtree(work, ignore_errors=True)


def place_calls(r, n: int, hold: float, agent_url: str, uas_host: str, gateway_pid: int) -> dict:
    """n calls, 4 at a time (one worker's slots); returns their sids and the worker's CPU."""
    from django_tenants.utils import schema_context

    from telephony.calls.models import Call
    from telephony.gateway import client
    from tests.gateway.gwhelpers import leg, wait_final

    sids, c0, t0 = [], proc_cpu(gateway_pid), time.monotonic()
    for start in range(0, n, 4):
        batch = []
        for _ in range(min(4, n - start)):
            with schema_context("bench"):
                call = Call.objects.create(from_number="+15550001111", to_number="+15550002222",
                                           stream_url=agent_url)
            client.originate(r, {"call_id": call.sid, "from": call.from_number, "to": call.to_number,
                                 "tenant": "bench", "ring_timeout": 10, "max_duration": 60,
                                 "stream_url": agent_url, "legs": [leg(uas_host, "1")]})
            batch.append(call.sid)
        time.sleep(hold)
        for sid in batch:
            client.hangup(r, sid)
        for sid in batch:
            wait_final(r, sid, 20)
        sids += batch
    seconds = time.monotonic() - t0
    return {"sids": sids, "gateway_cpu_s": proc_cpu(gateway_pid) - c0, "seconds": seconds,
            "seconds_per_call": seconds / len(sids) * min(4, len(sids))}  # 4 calls at a time


def events_of(r, sids: list[str]) -> list[dict]:
    from telephony.gateway import client

    wanted = set(sids)
    return [e for _, e in client.read_events(r, "0", block_ms=None, count=100000) if e.get("call_id") in wanted]


@contextlib.contextmanager
def recorders_metrics_cpu():
    """The thread CPU the recorder spends in telephony.metrics.services.record_call_events, summed
    into the yielded list's one item while inside."""
    from telephony.calls import recorder

    spent, real = [0.0], recorder.record_call_events

    def timed(*args, **kwargs):
        t = time.thread_time()
        try:
            return real(*args, **kwargs)
        finally:
            spent[0] += time.thread_time() - t

    recorder.record_call_events = timed
    try:
        yield spent
    finally:
        recorder.record_call_events = real


def record_like_the_recorder(events: list[dict]) -> dict:
    """record_events for every event, in the stream's blocks, as the recorder does (thread CPU),
    with record_call_events' own share."""
    from telephony.calls import recorder
    from telephony.calls.event_stream import BLOCK

    with recorders_metrics_cpu() as metrics_cpu:
        t = time.thread_time()
        for start in range(0, len(events), BLOCK):
            assert all(recorder.record_events([(event, "bench") for event in events[start:start + BLOCK]]))
        total = time.thread_time() - t
    return {"recorder_cpu_s": total, "metrics_client_cpu_s": metrics_cpu[0]}


def redis_cost_of_metrics(r, events: list[dict], replays: int) -> dict:
    """The same events' metrics written again into fresh tenants: Redis server and client CPU."""
    from telephony.metrics.services import record_call_events

    server0, client0 = redis_cpu(r), time.thread_time()
    for _ in range(replays):
        schema = "bench_" + uuid.uuid4().hex[:8]
        record_call_events(schema, [(event, {"sid": event["call_id"], "region": "eu", "campaign": "1"})
                                    for event in events])
    return {"redis_server_cpu_s": (redis_cpu(r) - server0) / replays,
            "client_cpu_s": (time.thread_time() - client0) / replays}


def gateway_metrics_per_frame_us() -> dict:
    """What the gateway computes per frame for quality metrics, timed on this machine."""
    from media.latency import LatencyHist
    from media.quality import RtpQuality
    from media.speech import ResponseTimer
    from tests.speech_audio import quiet_frames, speech_frames

    frames = speech_frames() + quiet_frames(1000)
    quality, responses, hist = RtpQuality(), ResponseTimer(), LatencyHist()
    state = {"k": 0}

    def caller_frame():
        k = state["k"] = state["k"] + 1
        now = k * 0.02
        quality.on_packet(k & 0xFFFF, 160 * k, now)
        responses.caller_frame(frames[k % len(frames)], now)
        hist.add(0.0004)

    n = 100000
    per_frame = timeit.timeit(caller_frame, number=n) / n * 1e6
    overhead = timeit.timeit(lambda: None, number=n) / n * 1e6
    return {"caller_frame_us": round(per_frame - overhead, 2),
            "agent_frame_us": round(timeit.timeit(lambda: (responses.agent_audio(frames[0], 1.0), hist.add(0.01)),
                                                  number=n) / n * 1e6 - overhead, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=12)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--replays", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-metricsbench-"))
    redis_server = setup_platform(work)
    import redis as redis_lib

    from tests.conversation import RespondingAgent, caller_pcap
    from tests.gateway.gwhelpers import GatewayProc, Sipp, free_udp_port

    r = redis_lib.Redis.from_url(redis_server.url)
    agent = RespondingAgent()
    play = f'<nop><action><exec play_pcap_audio="{caller_pcap(work / "caller.pcap", quiet_ms=int(args.hold * 1000), digit=None)}"/></action></nop>'
    sipp = Sipp(work, "uas_media.xml", free_udp_port(), [], subst={"PLAY": play, "CODEC": "PCMU", "CODEC_PT": 0})
    gateway = GatewayProc(redis_server.url, "metricsbench-0", work / "gw.log", ["--log-level", "WARNING"])
    try:
        gateway.wait_alive(r, 30)
        time.sleep(1)
        c0 = proc_cpu(gateway.proc.pid)
        time.sleep(3)
        idle_per_s = (proc_cpu(gateway.proc.pid) - c0) / 3
        calls = place_calls(r, args.calls, args.hold, agent.url, sipp.uri_host, gateway.proc.pid)
        n = len(calls["sids"])
        events = events_of(r, calls["sids"])
        finals = [e for e in events if e["type"] in ("completed", "failed")]
        recorded = record_like_the_recorder(events)
        redis_side = redis_cost_of_metrics(r, events, args.replays)
        per_frame = gateway_metrics_per_frame_us()
    finally:
        gateway.stop()
        sipp.stop()
        agent.stop()

    gateway_net = calls["gateway_cpu_s"] - idle_per_s * calls["seconds"]
    call_path_ms = (gateway_net + recorded["recorder_cpu_s"]) / n * 1000
    metrics_ms = (recorded["metrics_client_cpu_s"] + redis_side["redis_server_cpu_s"]) / n * 1000
    frames_in = sum(e.get("rtp_packets_in", 0) for e in finals) / n
    frames_out = sum(e.get("rtp_packets_out", 0) for e in finals) / n
    in_gateway_ms = (frames_in * per_frame["caller_frame_us"] + frames_out * per_frame["agent_frame_us"]) / 1000
    result = {
        "bench": "metrics_cost",
        "machine": {"cpus": os.cpu_count()},
        "calls": n, "hold_s": args.hold, "events_per_call": round(len(events) / n, 1),
        "answered_with_ai_response": sum(1 for e in finals if e.get("ai_response_turns")),
        "per_call_cpu_ms": {
            "gateway_net_of_idle": round(gateway_net / n * 1000, 2),
            "gateway_idle_share": round(idle_per_s * calls["seconds"] / n * 1000, 2),
            "recorder_total": round(recorded["recorder_cpu_s"] / n * 1000, 2),
            "call_path": round(call_path_ms, 2),
            "metrics_record_call_event": round(recorded["metrics_client_cpu_s"] / n * 1000, 3),
            "metrics_record_call_event_replayed": round(redis_side["client_cpu_s"] / n * 1000, 3),
            "metrics_redis_server": round(redis_side["redis_server_cpu_s"] / n * 1000, 3),
            "metrics_aggregates": round(metrics_ms, 3),
            "gateway_in_path_quality_metrics": round(in_gateway_ms, 3),
        },
        "gateway_metrics_per_frame_us": per_frame,
        "aggregates_percent_of_call_path": round(100 * metrics_ms / call_path_ms, 2),
        "gateway_quality_metrics_percent_of_gateway": round(100 * in_gateway_ms / (gateway_net / n * 1000), 2),
        "target_percent": 5,
    }
    result["meets_target"] = result["aggregates_percent_of_call_path"] < 5
    # the gateway's share grows with the call's length, the aggregates' does not: the shortest
    # bridged call for which they stay under the target
    gateway_ms_per_s = gateway_net / n / calls["seconds_per_call"] * 1000
    recorder_ms = recorded["recorder_cpu_s"] / n * 1000
    result["gateway_cpu_ms_per_call_second"] = round(gateway_ms_per_s, 2)
    result["shortest_call_s_under_target"] = round(max(0.0, (metrics_ms / 0.05 - recorder_ms) / gateway_ms_per_s), 1)
    save_report("metrics_cost", result)
    stop_platform(work, redis_server)


if __name__ == "__main__":
    main()
