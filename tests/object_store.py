"""An S3-compatible object store for the test run: moto's server mode on a free loopback port. Every
process of the run (web, Celery workers) keeps recordings in its bucket (RECORDINGS_S3_*)."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.support import free_tcp_port, stop_process, wait_until

BUCKET = "recordings"
CREDENTIALS = {"RECORDINGS_S3_ACCESS_KEY_ID": "test-key", "RECORDINGS_S3_SECRET_ACCESS_KEY": "test-secret",
               "RECORDINGS_S3_REGION": "us-east-1"}


class ObjectStore:
    def __init__(self, log_path: Path):
        self.port = free_tcp_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def env(self) -> dict[str, str]:
        return {"RECORDINGS_S3_BUCKET": BUCKET, "RECORDINGS_S3_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=CREDENTIALS["RECORDINGS_S3_REGION"],
                            aws_access_key_id=CREDENTIALS["RECORDINGS_S3_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["RECORDINGS_S3_SECRET_ACCESS_KEY"])

    def make_bucket(self) -> None:
        def listening():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, 60, 0.1, what="the S3 server (moto) to listen")
        self.client().create_bucket(Bucket=BUCKET)

    def keys(self) -> list[str]:
        return [item["Key"] for item in self.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.log.close()
