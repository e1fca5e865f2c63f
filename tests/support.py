"""Helpers shared by the tests (fixtures live in conftest.py)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_env(**extra):
    """Environment for a child process of the project (celery, manage.py) in this test run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), str(ROOT)])
    env.update(extra)
    return env


def run_manage(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env or project_env(),
        capture_output=True, text=True, timeout=timeout,
    )
