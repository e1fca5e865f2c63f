"""One chaos platform per module (starting it costs ~20 s): its own PostgreSQL, Redis, SIPp trunks
and `manage.py run`, stopped after the module rather than idling through the rest of the run. Each
test kills something in it during a campaign of its own."""
import pytest

from tests.chaos.platform import ChaosPlatform


@pytest.fixture(scope="module")
def chaos_platform():
    # its own temporary folder, not pytest's: PostgreSQL runs as its own user and must reach it
    platform = ChaosPlatform()
    platform.start()
    yield platform
    platform.stop()
