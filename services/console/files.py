"""Files the services write for users to read (evaluation summaries and
snapshots, manifest summaries, comparison reports), read from the blob
store for a page: at most ``MAX_RESULT_FILE_BYTES``; a file that is missing,
too large or in a bucket no user may name reads as None."""
from __future__ import annotations

import json
from typing import Any

from customlabels.ports.blobs import BlobStore, BlobStoreError, check_user_address

MAX_RESULT_FILE_BYTES = 64 * 1024 * 1024


async def read_file(blobs: BlobStore, bucket: str, key: str) -> bytes | None:
    try:
        check_user_address(bucket, key)
        if (await blobs.stat(bucket, key)).size > MAX_RESULT_FILE_BYTES:
            return None
        return await blobs.get(bucket, key)
    except BlobStoreError:
        return None


async def read_json(blobs: BlobStore, bucket: str, key: str) -> Any | None:
    """The file's JSON, or None (missing, too large, or not JSON)."""
    raw = await read_file(blobs, bucket, key)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
