"""A real S3-compatible server for tests: moto in server mode, in its own process.

The code under test talks real HTTP (SigV4, multipart) to it, as it would to AWS or MinIO.
Credentials are enforced: the helper creates an IAM user with an ``s3:*`` policy and its
access key while moto still accepts anonymous calls, then switches authentication on, so a
wrong key is rejected the way AWS rejects it.

Use the module-scoped ``s3_server`` fixture (import it into a test module:
``from tests.helpers.s3 import s3_server  # noqa: F401``) or ``running_s3_server()``.
The fixture value unpacks as ``(endpoint_url, bucket, access_key, secret_key)``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig

from tests.helpers.peers import free_port, in_ci

REGION = "us-east-1"
READY_TIMEOUT = 30.0
# Used only while moto still accepts anonymous calls (before authentication is switched on).
_BOOTSTRAP_KEY = "bootstrap"
_S3_ALL_POLICY = (
    '{"Version": "2012-10-17", "Statement": '
    '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
)


class S3Server(NamedTuple):
    """A running moto server with one bucket and a user allowed to write to it."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    @property
    def region(self) -> str:
        return REGION

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        """A boto3 S3 client for checking what arrived (the server's own keys by default)."""
        return _s3_client(
            self.endpoint, access_key or self.access_key, secret_key or self.secret_key
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A new empty bucket, so tests sharing one server do not see each other's objects."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def get_object(self, key: str, bucket: str | None = None) -> bytes:
        response = self.client().get_object(Bucket=bucket or self.bucket, Key=key)
        return bytes(response["Body"].read())

    def list_keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        response = self.client().list_objects_v2(Bucket=bucket or self.bucket, Prefix=prefix)
        return [item["Key"] for item in response.get("Contents", [])]

    def server_env(self) -> dict[str, str]:
        """Environment for a Callboard server process that should upload here."""
        return {
            "S3_BUCKET": self.bucket,
            "S3_REGION": REGION,
            "S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def request_fields(self) -> dict[str, str]:
        """The RecordingRequest fields that point an upload here."""
        return {
            "s3_bucket": self.bucket,
            "s3_region": REGION,
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
        }


def require_moto() -> None:
    """Fail under CI (the test extra installs moto[server]), skip elsewhere, if it is missing."""
    missing = [m for m in ("moto.server", "flask") if importlib.util.find_spec(m) is None]
    if missing:
        message = f"moto[server] is not installed (missing {', '.join(missing)})"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _s3_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _wait_ready(proc: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"moto server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            # Any HTTP answer means it is serving; this path is moto's own, not S3's.
            httpx.get(f"{endpoint}/moto-api/data.json", timeout=1.0)
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto server not ready after {READY_TIMEOUT} s:\n{log_path.read_text()}")


def _provision(endpoint: str) -> S3Server:
    """Create the user, its key and a bucket anonymously, then make moto check credentials."""
    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=_BOOTSTRAP_KEY,
        aws_secret_access_key=_BOOTSTRAP_KEY,
    )
    iam.create_user(UserName="recorder")
    iam.put_user_policy(UserName="recorder", PolicyName="s3-all", PolicyDocument=_S3_ALL_POLICY)
    key = iam.create_access_key(UserName="recorder")["AccessKey"]
    bucket = f"recordings-{uuid.uuid4().hex[:8]}"
    _s3_client(endpoint, _BOOTSTRAP_KEY, _BOOTSTRAP_KEY).create_bucket(Bucket=bucket)
    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0", timeout=5.0).raise_for_status()
    return S3Server(endpoint, bucket, key["AccessKeyId"], key["SecretAccessKey"])


@contextlib.contextmanager
def running_s3_server(log_dir: Path | None = None) -> Iterator[S3Server]:
    """Start moto on a free loopback port, provision it, and stop it afterwards."""
    require_moto()
    port = free_port("tcp")
    endpoint = f"http://127.0.0.1:{port}"
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="callboard-moto-"))
    log_path = log_dir / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_ready(proc, endpoint, log_path)
            yield _provision(endpoint)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto server per test module (startup costs about a second)."""
    with running_s3_server(tmp_path_factory.mktemp("moto")) as server:
        yield server
