"""The cluster suite's shared state: Debian's PostgreSQL and Redis servers in a temporary folder,
one pair for the module (tests of one module share the cluster they build)."""
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.cluster.nodes import Cluster
from tests.cluster.servers import PostgresServer, RedisServer


@pytest.fixture(scope="module")
def cluster_folder():
    folder = Path(tempfile.mkdtemp(prefix="vp-cluster-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def servers(cluster_folder):
    postgres = PostgresServer(cluster_folder / "postgres").start()
    redis = RedisServer(cluster_folder / "redis").start()
    yield postgres, redis
    redis.stop()
    postgres.stop()


@pytest.fixture(scope="module")
def cluster(cluster_folder, servers):
    postgres, redis = servers
    cluster = Cluster(cluster_folder, postgres.url, redis.url, DIALER_UNPLACED_GRACE_S="3")
    yield cluster
    cluster.stop()
