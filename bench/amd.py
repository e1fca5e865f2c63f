"""Answering-machine detection on a labelled corpus of generated answers (bench/amd_corpus.py).

    .venv/bin/python bench/amd.py [--answers 200] [--seed 2] [--tune-seed 1]

The detector (media/amd.py, ``MachineDetection=DetectMessageEnd`` with Twilio's default thresholds)
reads each answer's frames as the media host would. Figures are for the held-out corpus (``--seed``);
the corpus the thresholds were tuned on (``--tune-seed``) is reported beside it, to show the
figures are not a fit to one draw of voices and noise.

* ``accuracy``: humans decided ``human``, machines decided any ``machine_*`` (over the humans and
  machines); ``humans_called_machine`` (a machine value or ``fax``: the platform would hang up on a
  person), ``machines_called_human``; ``end_accuracy``: machines with the right end
  (``machine_end_beep`` for greetings that end in a beep, ``machine_end_silence`` otherwise);
  ``extras``: fax answers decided ``fax`` and silent answers decided ``unknown``;
* ``decision_ms`` p50/p90 from the first audio: humans (the decision; also the short "Hello?" ones
  alone), machines (when the machine
  was known, i.e. ``MachineDetection=Enable``'s decision) and machines' end of greeting;
* ``beep_to_message_ms`` p50/p99: end of the beep to the ``machine_end_beep`` decision, plus the
  media host's wait for its next 20 ms tick (at most 20 ms; the message's first frame goes then);
* ``machines_called_human_by_greeting``: the same per greeting length (short, medium, long);
* ``speech_end_threshold_ms_sweep``: the same corpus with a shorter speech-end threshold (sooner
  human decisions, more machines taken for people and greetings cut short);
* CPU: the detector's own CPU per second of call audio (percent of a core per call while it runs),
  beside the media bridge's CPU per call from the latest bench/results/media_bridge-*.json.

Prints one JSON document and writes it to bench/results/amd-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]

from bench import report  # noqa: E402
from bench.amd_corpus import corpus  # noqa: E402
from media.amd import DETECT_MESSAGE_END, FAX, HUMAN, MACHINE_END_BEEP, AmdParams, MachineDetector  # noqa: E402

TICK_MS = 20  # the message's first frame waits for the media host's next playout tick


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def detect(answer, params: AmdParams):
    detector = MachineDetector(params)
    started = time.process_time()
    decision = None
    for frame in answer.frames:
        decision = detector.push(frame)
        if decision is not None:
            break
    decision = decision or detector.finish()
    return decision, time.process_time() - started, detector.frames


def evaluate(answers, params: AmdParams) -> dict:
    rows = [(a, *detect(a, params)) for a in answers]
    humans = [(a, d) for a, d, _, _ in rows if a.human]
    machines = [(a, d) for a, d, _, _ in rows if a.machine]
    extras = [(a, d) for a, d, _, _ in rows if not (a.human or a.machine)]
    humans_wrong = [d for _, d in humans if d.machine or d.answered_by == FAX]
    machines_wrong = [d for _, d in machines if d.answered_by == HUMAN]
    right = sum(d.answered_by == HUMAN for _, d in humans) + sum(d.machine for _, d in machines)
    end_right = sum(d.answered_by == (MACHINE_END_BEEP if a.beep_end_ms else "machine_end_silence")
                    for a, d in machines)
    beeps = [d.ms - a.beep_end_ms + TICK_MS for a, d in machines
             if a.beep_end_ms and d.answered_by == MACHINE_END_BEEP]
    cpu_s = sum(cpu for *_, cpu, _ in rows)
    audio_s = sum(frames for *_, frames in rows) * 0.020
    human_ms = [d.ms for _, d in humans if d.answered_by == HUMAN]
    hello_ms = [d.ms for a, d in humans if d.answered_by == HUMAN and a.kind == "human_short"]
    known_ms = [d.evidence.get("machine_ms", d.ms) for _, d in machines if d.machine]
    end_ms = [d.ms for _, d in machines if d.machine]
    return {
        "answers": len(humans) + len(machines),
        "humans": len(humans), "machines": len(machines),
        "accuracy": round(right / max(1, len(humans) + len(machines)), 4),
        "humans_called_machine": round(len(humans_wrong) / max(1, len(humans)), 4),
        "machines_called_human": round(len(machines_wrong) / max(1, len(machines)), 4),
        "end_accuracy": round(end_right / max(1, len(machines)), 4),
        # the price of deciding people sooner falls on the shortest greetings ("Please leave a message.")
        "machines_called_human_by_greeting": {
            length: round(sum(d.answered_by == HUMAN for a, d in machines if a.meta.get("greeting") == length)
                          / max(1, sum(a.meta.get("greeting") == length for a, _ in machines)), 4)
            for length in ("short", "medium", "long")},
        "extras": {kind: {"answers": sum(a.kind == kind for a, _ in extras),
                          "right": sum(a.kind == kind and d.answered_by == want for a, d in extras)}
                   for kind, want in (("fax", FAX), ("silence", "unknown"))},
        "decision_ms": {
            "human": {"p50": _pct(human_ms, 0.5), "p90": _pct(human_ms, 0.9)},
            "human_short_hello": {"p50": _pct(hello_ms, 0.5), "p90": _pct(hello_ms, 0.9)},
            "machine": {"p50": _pct(known_ms, 0.5), "p90": _pct(known_ms, 0.9)},
            "machine_end": {"p50": _pct(end_ms, 0.5), "p90": _pct(end_ms, 0.9)},
        },
        "beep_to_message_ms": {"p50": _pct(beeps, 0.5), "p99": _pct(beeps, 0.99), "beeps": len(beeps)},
        "detector_us_per_frame": round(cpu_s / max(1, audio_s / 0.020) * 1e6, 2),
        "detection_percent_of_core_per_call": round(cpu_s / max(1e-9, audio_s) * 100, 4),
        "errors": [{"answer": a.name, "kind": a.kind, "answered_by": d.answered_by, "ms": d.ms,
                    "evidence": d.evidence, "meta": a.meta}
                   for a, d, _, _ in rows
                   if (a.human and d.answered_by != HUMAN) or (a.machine and not d.machine)
                   or (a.kind == "fax" and d.answered_by != FAX) or (a.kind == "silence" and d.answered_by != "unknown")],
    }


def bridge_cpu_per_call() -> dict | None:
    """The media bridge's CPU per call at its busiest measured level (latest media_bridge result)."""
    results = sorted(report.RESULTS.glob("media_bridge-*.json"))
    if not results:
        return None
    doc = json.loads(results[-1].read_text())
    level = max(doc.get("levels", []), key=lambda lv: lv.get("calls", 0), default=None)
    if not level:
        return None
    return {"source": results[-1].name, "calls": level["calls"],
            "percent_of_core_per_call": level["cpu"]["per_call_percent_of_core"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", type=int, default=200, help="humans + machines per corpus (half each)")
    p.add_argument("--seed", type=int, default=2, help="held-out corpus")
    p.add_argument("--tune-seed", type=int, default=1, help="the corpus the detector was tuned on")
    args = p.parse_args(argv)
    params = AmdParams(mode=DETECT_MESSAGE_END)
    answers = corpus(args.answers, seed=args.seed)
    held_out = evaluate(answers, params)
    # the price of deciding sooner: MachineDetectionSpeechEndThreshold below Twilio's default
    sweep = {}
    for end_ms in (800, 1000):
        r = evaluate(answers, AmdParams(mode=DETECT_MESSAGE_END, speech_end_threshold_ms=end_ms))
        sweep[end_ms] = {k: r[k] for k in ("accuracy", "humans_called_machine", "machines_called_human",
                                           "end_accuracy")} | {"human_decision_p50_ms": r["decision_ms"]["human"]["p50"]}
    tuned = evaluate(corpus(args.answers, seed=args.tune_seed), params)
    bridge = bridge_cpu_per_call()
    detection = held_out["detection_percent_of_core_per_call"]
    result = {
        "params": params.as_dict(),
        **{k: v for k, v in held_out.items() if k != "errors"},
        "cpu_per_call_percent_of_core": {
            "detection": detection,
            "bridge_without_detection": bridge and bridge["percent_of_core_per_call"],
            "bridge_with_detection": bridge and round(bridge["percent_of_core_per_call"] + detection, 4),
            "bridge_source": bridge,
        },
        "errors": held_out["errors"],
        "speech_end_threshold_ms_sweep": sweep,
        "tuning_corpus": {k: v for k, v in tuned.items() if k != "errors"} | {"errors": len(tuned["errors"])},
        "targets": {"accuracy": ">= 0.95", "humans_called_machine": "<= 0.02", "human_decision_p50_ms": "<= 2500",
                    "beep_to_message_p99_ms": "<= 300", "detection_percent_of_core_per_call": "< 0.2"},
    }
    report.save("amd", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
