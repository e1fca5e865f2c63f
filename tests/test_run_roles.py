"""An operator starting a cluster node names its roles; a typo is refused before anything starts."""
from tests.support import run_manage


def test_an_unknown_role_is_refused_with_the_roles_there_are():
    done = run_manage("run", "--role", "worker,gatewayz", "--public-ip", "127.0.0.2", timeout=60)

    assert done.returncode != 0
    assert "unknown role 'gatewayz'" in done.stderr
    assert "web, worker, webhooks, recorder, gateways, beat or node" in done.stderr
