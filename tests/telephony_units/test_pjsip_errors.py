"""pjsip's own errors in the platform's words: a gateway worker asked for a fifth call (the pjsua2
wheel holds 4) logs "gateway worker full (4 calls)" in the platform's key=value lines, and says the
same to the caller of makeCall; pjsip's "Too many objects (PJ_ETOOMANY)" appears nowhere. A real
pjsua2 endpoint in its own process (pjsua2 allows one per process), calling a real UDP far end."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_full_worker_says_so_in_the_platforms_words():
    probe = subprocess.run([sys.executable, str(Path(__file__).with_name("pjsip_probe.py"))], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}"},
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "REFUSED 4 gateway worker full (4 calls)" in probe.stdout
    lines = probe.stderr.splitlines()
    assert lines and all(line.startswith("ts=") and " logger=gateway.pjsip gateway=gw-probe " in line
                         for line in lines), lines
    assert any('level=WARNING' in line and 'msg="gateway worker full (4 calls) (pjsip status 70010 in '
               'pjsua_call.c)"' in line for line in lines), lines
    for raw in ("Too many objects", "PJ_ETOOMANY"):
        assert raw not in probe.stdout + probe.stderr
