"""The rooms of the code base keep their doors: dependencies point down (voiceplatform, the project's
wiring and UI -> the apps -> core), and the SIP gateway loads no Django. The contracts are in
pyproject.toml ([tool.importlinter]); import-linter reads every import, also those inside functions."""
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, project_env

BIN = Path(sys.executable).parent


def test_imports_only_point_down():
    run = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=ROOT, env=project_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_apps_type_check():
    # mypy over the apps (settings in pyproject.toml [tool.mypy]); the gateway contract's TypedDicts
    # (telephony/gateway/contract.py) are checked wherever a command or a leg is built or read.
    run = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, env=project_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
