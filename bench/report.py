"""Every benchmark's result: printed as JSON and kept in bench/results/<name>-<time>.json."""
import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, result: dict) -> Path:
    text = json.dumps(result, indent=1, default=str)
    print(text, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(text + "\n")
    return path
