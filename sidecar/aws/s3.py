"""S3 GetObject: an object's bytes and the headers kept with them, revalidated by ETag."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sidecar.aws.clients import Clients
from sidecar.aws.errors import translate
from sidecar.core.errors import ApiError
from sidecar.core.key import S3, Key

Meta = tuple[tuple[str, str], ...]
READ_CHUNK = 65536


class NotModified(Exception):
    """A conditional GetObject found the object unchanged (HTTP 304): keep the cached body."""


def too_large(limit: int) -> ApiError:
    """An object over ``limit`` bytes: 400 ``ObjectTooLarge``, AWS's word on that object."""
    return ApiError(400, "ObjectTooLarge", f"the object is over the {limit}-byte limit "
                    "(PARAMETERS_SECRETS_EXTENSION_S3_MAX_OBJECT_BYTES)", item=True)


async def get_object(clients: Clients, key: Key, etag: str | None,
                     limit: int) -> tuple[bytes, Meta]:
    """GetObject: the bytes and their headers. With ``etag``, a conditional get: an unchanged
    object raises ``NotModified`` and transfers no body. An object over ``limit`` bytes is
    refused (400 ``ObjectTooLarge``) without reading it; other failures raise ``ApiError``."""
    options = dict(key.options)
    kwargs: dict[str, Any] = {"Bucket": options["bucket"], "Key": options["key"]}
    if key.version_id:
        kwargs["VersionId"] = key.version_id
    if etag:
        kwargs["IfNoneMatch"] = etag
    try:
        response = await clients.call(S3, "get_object", key.describe(), key.role, **kwargs)
        async with response["Body"] as stream:
            length = int(response.get("ContentLength") or 0)
            if length > limit:
                raise too_large(limit)
            # read(n) returns at most n bytes, often fewer: read to the end, bounded.
            chunks: list[bytes] = []
            received = 0
            while chunk := await stream.read(READ_CHUNK):
                received += len(chunk)
                if received > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            body = b"".join(chunks)
            if length and len(body) != length:
                raise ApiError(502, "UpstreamUnavailable", "S3 sent fewer bytes than it "
                               "announced", transient=True)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304:
            raise NotModified() from None
        raise translate(exc) from None
    except (ApiError, NotModified):
        raise
    except Exception as exc:
        raise translate(exc) from None
    meta = [("Content-Type", str(response.get("ContentType") or "application/octet-stream"))]
    if response.get("ETag"):
        meta.append(("ETag", str(response["ETag"])))
    modified = response.get("LastModified")
    if isinstance(modified, datetime):
        meta.append(("Last-Modified", modified.astimezone(UTC).strftime(
            "%a, %d %b %Y %H:%M:%S GMT")))
    return body, tuple(meta)
