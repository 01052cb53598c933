"""S3 recording storage: target resolution (every 400) and real uploads to a moto server."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callboard.config import load_settings
from callboard.core.errors import BadRequest
from callboard.storage import s3 as s3_module
from callboard.storage.s3 import (
    S3Target,
    S3UploadError,
    object_key,
    resolve_s3_target,
    s3_url,
    upload_file,
)
from tests.helpers.peers import free_port
from tests.helpers.s3 import S3Server, s3_server  # noqa: F401 - fixture

NO_REQUEST: dict[str, Any] = {
    "bucket": None,
    "region": None,
    "endpoint": None,
    "prefix": None,
    "access_key": None,
    "secret_key": None,
}
S3_ENV = {
    "S3_BUCKET": "env-bucket",
    "S3_REGION": "eu-west-1",
    "S3_ENDPOINT": "http://minio.local:9000",
    "S3_PREFIX": "env/",
}


def resolve(env: dict[str, str] | None = None, **request: str | None) -> S3Target:
    return resolve_s3_target(**{**NO_REQUEST, **request}, config=load_settings(env or {}))


# -- resolving the target ----------------------------------------------------------------


def test_config_applies_when_the_request_gives_nothing() -> None:
    target = resolve(S3_ENV)
    assert target == S3Target(
        "env-bucket", "eu-west-1", "http://minio.local:9000", "env/", None, None
    )


def test_request_fields_override_config() -> None:
    target = resolve(
        S3_ENV,
        bucket="req-bucket",
        region="ap-south-1",
        endpoint="https://s3.example.com",
        prefix="calls/2024/",
        access_key="AKIAEXAMPLE",
        secret_key="s3cr3t",
    )
    assert target == S3Target(
        "req-bucket", "ap-south-1", "https://s3.example.com", "calls/2024/", "AKIAEXAMPLE", "s3cr3t"
    )


def test_each_field_falls_back_independently() -> None:
    target = resolve(S3_ENV, prefix="only-prefix/")
    assert (target.bucket, target.region, target.prefix) == (
        "env-bucket",
        "eu-west-1",
        "only-prefix/",
    )
    target = resolve(S3_ENV, bucket="other-bucket")
    assert (target.bucket, target.endpoint, target.prefix) == (
        "other-bucket",
        "http://minio.local:9000",
        "env/",
    )


def test_blank_request_fields_mean_not_given() -> None:
    target = resolve(S3_ENV, bucket="  ", region="", endpoint="", prefix="")
    assert (target.bucket, target.region, target.endpoint, target.prefix) == (
        "env-bucket",
        "eu-west-1",
        "http://minio.local:9000",
        "env/",
    )


def test_defaults_without_region_prefix_or_endpoint() -> None:
    target = resolve({}, bucket="my-bucket")
    assert (target.region, target.endpoint, target.prefix) == ("us-east-1", None, "")
    assert (target.access_key, target.secret_key) == (None, None)


def test_no_bucket_anywhere_is_400() -> None:
    with pytest.raises(BadRequest, match="S3 is not configured") as info:
        resolve({"S3_REGION": "eu-west-1"}, access_key="a", secret_key="b")
    assert info.value.status == 400
    assert "S3_BUCKET" in str(info.value)


@pytest.mark.parametrize(
    ("access_key", "secret_key"), [("AKIAX", None), (None, "secret"), ("AKIAX", " ")]
)
def test_half_given_keys_are_400(access_key: str | None, secret_key: str | None) -> None:
    with pytest.raises(BadRequest, match="s3_access_key and s3_secret_key must be given together"):
        resolve(S3_ENV, access_key=access_key, secret_key=secret_key)


@pytest.mark.parametrize(
    "endpoint",
    ["ftp://s3.example.com", "s3.example.com", "http://", "http://host:99999", "minio:9000"],
)
def test_endpoint_must_be_an_http_url(endpoint: str) -> None:
    with pytest.raises(BadRequest, match="invalid S3 endpoint"):
        resolve(S3_ENV, endpoint=endpoint)


@pytest.mark.parametrize(
    ("bucket", "why"),
    [
        ("ab", "3 to 63"),
        ("a" * 64, "3 to 63"),
        ("Recordings", "lowercase"),
        ("my_bucket", "lowercase"),
        ("my bucket", "lowercase"),
        ("-bucket", "begin and end"),
        ("bucket.", "begin and end"),
        ("my..bucket", "adjacent periods"),
        ("192.168.10.20", "IP address"),
    ],
)
def test_invalid_bucket_names_are_400(bucket: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        resolve({}, bucket=bucket)
    # A bad S3_BUCKET is caught the same way (the config loader does not check names).
    with pytest.raises(BadRequest, match=why):
        resolve({"S3_BUCKET": bucket})


def test_valid_bucket_names_pass() -> None:
    for bucket in ("abc", "a" * 63, "rec.2024-01.calls", "0-9"):
        assert resolve({}, bucket=bucket).bucket == bucket


@pytest.mark.parametrize("region", ["us east 1", "eu_west_1", "-eu", "x" * 64])
def test_invalid_region_is_400(region: str) -> None:
    with pytest.raises(BadRequest, match="invalid S3 region"):
        resolve(S3_ENV, region=region)


@pytest.mark.parametrize(
    ("prefix", "why"), [("a\nb/", "control characters"), ("p" * 901, "longer than")]
)
def test_invalid_prefix_is_400(prefix: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        resolve(S3_ENV, prefix=prefix)


def test_keys_and_urls() -> None:
    target = resolve({}, bucket="rec-bucket", prefix="calls/")
    assert object_key(target, "leg-1.wav") == "calls/leg-1.wav"
    assert s3_url(target, "calls/leg-1.wav") == "s3://rec-bucket/calls/leg-1.wav"
    bare = resolve({}, bucket="rec-bucket")
    assert object_key(bare, "leg-1.wav") == "leg-1.wav"


def test_repr_never_shows_the_keys() -> None:
    target = resolve(S3_ENV, access_key="AKIAVISIBLE", secret_key="very-secret-value")
    assert "very-secret-value" not in repr(target)
    assert "AKIAVISIBLE" not in repr(target)


# -- uploading to a real S3-compatible server ----------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> str:  # noqa: F811 - pytest injects the imported fixture
    return s3_server.create_bucket()


def target_for(server: S3Server, bucket: str, **changes: Any) -> S3Target:
    fields: dict[str, Any] = {
        "bucket": bucket,
        "region": server.region,
        "endpoint": server.endpoint,
        "prefix": "recordings/",
        "access_key": server.access_key,
        "secret_key": server.secret_key,
    }
    return S3Target(**{**fields, **changes})


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


async def test_small_file_arrives_byte_equal(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    local = random_file(tmp_path / "leg.wav", 200_000)
    target = target_for(s3_server, bucket)
    key = object_key(target, local.name)
    url = await upload_file(target, local, key)
    assert url == f"s3://{bucket}/recordings/leg.wav"
    assert s3_server.list_keys(bucket) == ["recordings/leg.wav"]
    assert s3_server.get_object(key, bucket) == local.read_bytes()
    etag = s3_server.client().head_object(Bucket=bucket, Key=key)["ETag"]
    assert "-" not in etag  # one PUT, not a multipart upload
    assert local.exists()


async def test_large_file_goes_multipart_and_arrives_byte_equal(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    size = s3_module.MULTIPART_THRESHOLD + 1_500_000
    local = random_file(tmp_path / "room.wav", size)
    target = target_for(s3_server, bucket, prefix="")
    url = await upload_file(target, local, "room.wav")
    assert url == f"s3://{bucket}/room.wav"
    assert s3_server.get_object("room.wav", bucket) == local.read_bytes()
    # A multipart object's ETag is "<md5 of part md5s>-<number of parts>".
    etag = s3_server.client().head_object(Bucket=bucket, Key="room.wav")["ETag"]
    assert etag.strip('"').endswith("-2")
    assert local.stat().st_size == size


async def test_missing_bucket_names_the_bucket_and_keeps_the_file(
    s3_server: S3Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    local = random_file(tmp_path / "leg.wav", 10_000)
    target = target_for(s3_server, "no-such-bucket-here")
    with pytest.raises(S3UploadError, match="bucket 'no-such-bucket-here' does not exist"):
        await upload_file(target, local, "recordings/leg.wav")
    assert local.exists()


@pytest.mark.parametrize(
    ("wrong", "code"),
    [
        ({"access_key": "AKIAUNKNOWNKEY000000"}, "InvalidAccessKeyId"),
        ({"secret_key": "not-the-secret"}, "SignatureDoesNotMatch"),
    ],
)
async def test_wrong_credentials_fail_and_store_nothing(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
    wrong: dict[str, str],
    code: str,
) -> None:
    local = random_file(tmp_path / "leg.wav", 10_000)
    target = target_for(s3_server, bucket, **wrong)
    with pytest.raises(S3UploadError, match=f"S3 rejected the credentials \\({code}\\)") as info:
        await upload_file(target, local, "recordings/leg.wav")
    assert str(target.secret_key) not in str(info.value)
    assert s3_server.list_keys(bucket) == []
    assert local.exists()


async def test_default_credential_chain_is_used_without_keys(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setattr(s3_module, "_session", None)  # credentials are cached per session
    local = random_file(tmp_path / "leg.wav", 5_000)
    target = target_for(s3_server, bucket, access_key=None, secret_key=None)
    await upload_file(target, local, "recordings/leg.wav")
    assert s3_server.get_object("recordings/leg.wav", bucket) == local.read_bytes()


async def test_no_credentials_anywhere_fails_clearly(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(s3_module, "_session", None)
    local = random_file(tmp_path / "leg.wav", 5_000)
    target = target_for(s3_server, bucket, access_key=None, secret_key=None)
    with pytest.raises(S3UploadError, match="no usable AWS credentials"):
        await upload_file(target, local, "recordings/leg.wav")
    assert local.exists()


async def test_missing_local_file_is_an_upload_error(
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    target = target_for(s3_server, bucket)
    with pytest.raises(S3UploadError, match="local file does not exist"):
        await upload_file(target, tmp_path / "gone.wav", "recordings/gone.wav")


# -- dead endpoints fail within a bounded time, without stalling the event loop ------------


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A port whose kernel completes TCP handshakes but nobody ever reads or answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def _max_loop_stall(task: asyncio.Task[str]) -> float:
    """Tick every 20 ms (like the media clock) until ``task`` ends; return the worst delay.

    The heap is frozen first, as the server freezes its start-up heap. Late in a full run
    this loop stalled 260-310 ms (two runs) while the same upload on its own stalls it less
    than 30 ms: the test process's heap, a thousand tests' worth by then, is not what is
    measured here."""
    gc.collect()
    gc.freeze()
    worst = 0.0
    try:
        while not task.done():
            before = time.monotonic()
            await asyncio.sleep(0.02)
            worst = max(worst, time.monotonic() - before - 0.02)
    finally:
        gc.unfreeze()
    return worst


async def test_closed_port_fails_fast(tmp_path: Path) -> None:
    local = random_file(tmp_path / "leg.wav", 10_000)
    endpoint = f"http://127.0.0.1:{free_port('tcp')}"  # free = nothing listens there
    target = S3Target("some-bucket", "us-east-1", endpoint, "", "AKIAX", "secret")
    started = time.monotonic()
    with pytest.raises(S3UploadError, match=f"cannot reach S3 endpoint {endpoint}") as info:
        await upload_file(target, local, "leg.wav")
    assert time.monotonic() - started < 10.0
    assert "s3://some-bucket/leg.wav" in str(info.value)
    assert local.exists()


async def test_endpoint_that_never_answers_fails_within_20_s(
    hung_endpoint: str, tmp_path: Path
) -> None:
    local = random_file(tmp_path / "leg.wav", 10_000)
    target = S3Target("some-bucket", "us-east-1", hung_endpoint, "", "AKIAX", "secret")
    started = time.monotonic()
    task = asyncio.create_task(upload_file(target, local, "leg.wav"))
    worst_stall = await _max_loop_stall(task)
    with pytest.raises(S3UploadError, match="cannot reach S3 endpoint") as info:
        await task
    elapsed = time.monotonic() - started
    assert elapsed < 20.0, f"took {elapsed:.1f} s"
    assert elapsed > 2.0, f"gave up after {elapsed:.1f} s, before any timeout could expire"
    assert "timeout" in str(info.value).lower()
    assert worst_stall < 0.2, f"event loop stalled {worst_stall * 1000:.0f} ms during the upload"
    assert local.exists()
