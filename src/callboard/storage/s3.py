"""Upload finished recordings to S3 (AWS or an S3-compatible endpoint such as MinIO).

The target is resolved and validated when a recording is requested, so a missing bucket or
half-given keys is a 400 then, not a lost upload after the call. The upload runs boto3 (which
blocks) in a worker thread with bounded timeouts and retries, so neither the event loop that
drives the media clock nor a recording's finalisation waits on a dead endpoint for minutes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from callboard.config import Settings
from callboard.core.errors import BadRequest
from callboard.outbound_guard import FetchRefused, check_url

log = logging.getLogger(__name__)

# A dead endpoint must fail an upload in seconds, not botocore's default minutes: refused
# connections fail at once, a black-holed host after TOTAL_ATTEMPTS x CONNECT_TIMEOUT_S (~6 s)
# and a host that accepts but never answers after TOTAL_ATTEMPTS x (1 s of waiting for
# "100 Continue" + READ_TIMEOUT_S), about 16 s.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 7.0
TOTAL_ATTEMPTS = 2  # the first try included (botocore's "max_attempts" counts only retries)

# S3 rejects multipart parts under 5 MiB (except the last); 8 MiB parts keep a one-hour
# stereo WAV (~0.7 GB at 48 kHz) far below the 10 000-part limit (80 GB).
MULTIPART_THRESHOLD = 8 * 1024 * 1024
_TRANSFER = TransferConfig(
    multipart_threshold=MULTIPART_THRESHOLD,
    multipart_chunksize=MULTIPART_THRESHOLD,
    max_concurrency=4,
)

# S3 keys are at most 1024 bytes; keep room for the recorder's file names.
_MAX_PREFIX_BYTES = 900
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
# botocore's own rule for a region name (one DNS label); anything else fails inside boto3.
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where one recording goes; keys stay out of repr so they never reach a log line."""

    bucket: str
    region: str
    endpoint: str | None
    prefix: str  # "" when none; joined to file names as given (e.g. "recordings/")
    access_key: str | None = field(repr=False)
    secret_key: str | None = field(repr=False)


class S3UploadError(Exception):
    """An upload failed; the message says where to and why (never a credential)."""


def _given(value: str | None) -> str | None:
    """Blank means "not given", as for the S3_* variables, so config still applies."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def resolve_s3_target(
    *,
    bucket: str | None,
    region: str | None,
    endpoint: str | None,
    prefix: str | None,
    access_key: str | None,
    secret_key: str | None,
    config: Settings,
) -> S3Target:
    """Merge the request's S3 fields over the S3_* configuration; BadRequest if unusable."""
    bucket = _given(bucket) or config.s3_bucket
    if bucket is None:
        raise BadRequest(
            "S3 is not configured: give s3_bucket in the request or set S3_BUCKET on the server"
        )
    _check_bucket(bucket)
    region = _given(region) or config.s3_region
    if not _REGION.fullmatch(region):
        raise BadRequest(f"invalid S3 region {region!r}")
    endpoint = _given(endpoint) or config.s3_endpoint
    if endpoint is not None:
        _check_endpoint(endpoint)
    prefix = _given(prefix) or config.s3_prefix or ""
    _check_prefix(prefix)
    access_key, secret_key = _given(access_key), _given(secret_key)
    if (access_key is None) != (secret_key is None):
        raise BadRequest("s3_access_key and s3_secret_key must be given together")
    return S3Target(bucket, region, endpoint, prefix, access_key, secret_key)


def _check_bucket(bucket: str) -> None:
    """The S3 naming rules that matter for new buckets, each with its own message."""
    if not 3 <= len(bucket) <= 63:
        raise BadRequest(f"invalid S3 bucket name {bucket!r}: must be 3 to 63 characters long")
    if not _BUCKET_CHARS.fullmatch(bucket):
        raise BadRequest(
            f"invalid S3 bucket name {bucket!r}: only lowercase letters, digits, '.' and '-'"
        )
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        raise BadRequest(
            f"invalid S3 bucket name {bucket!r}: must begin and end with a letter or digit"
        )
    if ".." in bucket:
        raise BadRequest(f"invalid S3 bucket name {bucket!r}: two adjacent periods")
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        return
    raise BadRequest(f"invalid S3 bucket name {bucket!r}: must not look like an IP address")


def _check_endpoint(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - evaluated only because a bad port raises here
    except ValueError:
        raise BadRequest(f"invalid S3 endpoint {endpoint!r}: bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"invalid S3 endpoint {endpoint!r}: must be an http or https URL")


def _check_prefix(prefix: str) -> None:
    if _CONTROL_CHARS.search(prefix):
        raise BadRequest("invalid S3 prefix: contains control characters")
    if len(prefix.encode()) > _MAX_PREFIX_BYTES:
        raise BadRequest(f"invalid S3 prefix: longer than {_MAX_PREFIX_BYTES} bytes")


def object_key(target: S3Target, filename: str) -> str:
    return target.prefix + filename


def s3_url(target: S3Target, key: str) -> str:
    return f"s3://{target.bucket}/{key}"


async def upload_file(target: S3Target, path: Path, key: str) -> str:
    """Upload ``path`` to ``key`` in a worker thread; return its s3:// URL.

    The local file is never deleted here: it is the only copy if the upload fails, and the
    caller decides what happens to it on success. A custom endpoint goes through the outbound
    policy first (botocore connects by itself): never a metadata address, nor a private one
    with FETCH_DENY_PRIVATE.
    """
    if target.endpoint is not None:
        try:
            await check_url(target.endpoint)
        except FetchRefused as exc:
            raise S3UploadError(f"upload of {path} not attempted: {exc}") from None
    return await asyncio.to_thread(_upload_blocking, target, path, key)


def _upload_blocking(target: S3Target, path: Path, key: str) -> str:
    url = s3_url(target, key)
    started = time.monotonic()
    try:
        size = path.stat().st_size
        _client(target).upload_file(str(path), target.bucket, key, Config=_TRANSFER)
    except Exception as exc:  # boto3 raises many unrelated types; each becomes one error
        reason = _describe_failure(exc, target)
        log.warning("S3 upload of %s to %s failed: %s", path, url, reason)
        raise S3UploadError(f"upload of {path} to {url} failed: {reason}") from exc
    log.info("uploaded %s to %s (%d bytes in %.1f s)", path, url, size, time.monotonic() - started)
    return url


_session_lock = threading.Lock()
_session: Any = None


def _client(target: S3Target) -> Any:
    """A new client per upload from one shared session (clients are thread-safe, session
    creation is not, and sharing it loads botocore's service models only once)."""
    global _session
    custom_endpoint = target.endpoint is not None
    config = BotoConfig(
        region_name=target.region,
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
        # MinIO and most S3-compatible servers have no per-bucket DNS names, and several
        # reject the newer default integrity checksums; AWS itself keeps the defaults.
        s3={"addressing_style": "path" if custom_endpoint else "auto"},
        request_checksum_calculation="when_required" if custom_endpoint else "when_supported",
        response_checksum_validation="when_required" if custom_endpoint else "when_supported",
    )
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        # Without keys the session's default chain applies (env, profile, instance role).
        return _session.client(
            "s3",
            endpoint_url=target.endpoint,
            aws_access_key_id=target.access_key,
            aws_secret_access_key=target.secret_key,
            config=config,
        )


def warm_up() -> None:
    """Load botocore's S3 models now (before the media clock runs): the first client of a
    session parses them for about 150 ms while holding the GIL, which stalled the event loop
    during the first upload; later clients take about 5 ms (measured)."""
    _client(S3Target("warm-up", "us-east-1", None, "", "warm-up", "warm-up"))


def _describe_failure(exc: BaseException, target: S3Target) -> str:
    """Say why in words an operator can act on; boto3 wraps the real cause in its own errors."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ClientError):
            return _describe_client_error(cause, target)
        if isinstance(cause, NoCredentialsError | PartialCredentialsError):
            return (
                "no usable AWS credentials (give s3_access_key and s3_secret_key, "
                "or configure the default credential chain)"
            )
        if isinstance(cause, EndpointConnectionError | HTTPClientError):
            where = target.endpoint or f"AWS S3 in {target.region}"
            return f"cannot reach S3 endpoint {where}: {cause}"
        if isinstance(cause, FileNotFoundError):
            return "the local file does not exist"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}"


def _describe_client_error(error: ClientError, target: S3Target) -> str:
    details = error.response.get("Error", {})
    code = str(details.get("Code", "unknown"))
    message = str(details.get("Message", "")).strip()
    if code == "NoSuchBucket":
        return f"bucket {target.bucket!r} does not exist"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        return f"S3 rejected the credentials ({code})"
    if code in ("AccessDenied", "403"):
        return f"access to bucket {target.bucket!r} denied ({code})"
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301"):
        return f"bucket {target.bucket!r} is not in region {target.region!r} ({code})"
    return f"S3 error {code}" + (f": {message}" if message else "")
