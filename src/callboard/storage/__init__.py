"""Where finished recordings go besides the local disk."""

from callboard.storage.s3 import (
    S3Target,
    S3UploadError,
    object_key,
    resolve_s3_target,
    s3_url,
    upload_file,
)

__all__ = [
    "S3Target",
    "S3UploadError",
    "object_key",
    "resolve_s3_target",
    "s3_url",
    "upload_file",
]
