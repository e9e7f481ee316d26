"""Talking to a customlabels server from Python: its APIs and the object store.

Two halves, one set of settings (:class:`Endpoint`):

* :func:`rekognition` returns the stock boto3 ``rekognition`` client pointed at the
  server, so everything the AWS SDK documents works unchanged; :func:`review_client`
  a stock boto3 client of the review API (``customlabels-review``, whose service
  model this package ships). The ``sagemaker`` and ``sagemaker-a2i-runtime``
  clients need nothing but ``endpoint_url``, like ``rekognition``.
* :class:`ObjectClient` puts and gets image bytes under ``/objects/<bucket>/<key>``,
  the server's S3 API (which a stock boto3 ``s3`` client also speaks: this one adds
  pooled parallel uploads with little overhead per image). Requests are S3's
  PutObject and GetObject, signed exactly like botocore's ``S3SigV4Auth`` signs
  them (service name ``s3``, ``x-amz-content-sha256`` = hex SHA-256 of the body,
  ``Content-MD5``), so the server can verify them with botocore's own code.

Example::

    from customlabels.client import Endpoint, ObjectClient, rekognition

    endpoint = Endpoint.from_env()
    with ObjectClient(endpoint) as objects:
        objects.put("customlabels-images", "flowers/daisy/1.jpg", "daisy/1.jpg")
    print(rekognition(endpoint).describe_projects()["ProjectDescriptions"])
"""
from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree as ET

import boto3
import botocore.session
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from customlabels.wire.table import MODELS_DIR, REVIEW_API

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_REGION = "us-east-1"
USER_AGENT = "customlabels-client/0.1"

# What callers may hand to ObjectClient.put: the bytes themselves or a file to read.
Source = Union[bytes, bytearray, memoryview, str, os.PathLike]


@dataclass(frozen=True)
class Endpoint:
    """Where the server is and who we are. Build it with :meth:`from_env`."""

    url: str = DEFAULT_URL
    region: str = DEFAULT_REGION
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "Endpoint":
        """Explicit arguments win, then the environment, then the development defaults.

        Environment: ``CUSTOMLABELS_ENDPOINT``, ``AWS_DEFAULT_REGION``,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (the names the AWS CLI uses,
        so one shell set-up serves both tools).
        """
        env = os.environ if env is None else env
        url = (url or env.get("CUSTOMLABELS_ENDPOINT") or DEFAULT_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint URL must look like http://host:port, not {url!r}")
        return cls(
            url=url,
            region=region or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key=access_key or env.get("AWS_ACCESS_KEY_ID") or DEV_ACCESS_KEY,
            secret_key=secret_key or env.get("AWS_SECRET_ACCESS_KEY") or DEV_SECRET_KEY,
        )


def rekognition(endpoint: Endpoint | None = None, **config: Any):
    """A boto3 ``rekognition`` client for the server; ``config`` tweaks botocore's Config."""
    return _client("rekognition", endpoint, config)


def review_client(endpoint: Endpoint | None = None, **config: Any):
    """A stock boto3 client of the review API (``customlabels-review``); ``config`` tweaks botocore's Config.

    The API's botocore-format model ships in this package (``MODELS_DIR``);
    this client's session finds it there. Any other boto3 code can do the same
    by putting ``MODELS_DIR`` on ``AWS_DATA_PATH`` or on a botocore session's
    ``get_component("data_loader").search_paths``::

        review = review_client(Endpoint.from_env())
        for task in review.get_paginator("list_review_tasks").paginate(ProjectName="flowers"):
            ...
    """
    return _client(REVIEW_API, endpoint, config)


def _client(service: str, endpoint: Endpoint | None, config: dict[str, Any]):
    endpoint = endpoint or Endpoint.from_env()
    options = {
        # Few, quick retries: a CLI user waiting on a dead endpoint wants the error soon.
        "retries": {"mode": "standard", "max_attempts": 3},
        "connect_timeout": 5,
        "read_timeout": 120,
        **config,
    }
    # A private session, so that a default session configured elsewhere in the
    # process (profiles, other credentials) cannot leak into these calls; it
    # also finds the service models this package ships.
    core = botocore.session.get_session()
    core.get_component("data_loader").search_paths.append(str(MODELS_DIR))
    session = boto3.session.Session(
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name=endpoint.region,
        botocore_session=core,
    )
    return session.client(service, endpoint_url=endpoint.url, config=Config(**options))


class ObjectStoreError(Exception):
    """The object store said no (or could not be reached).

    ``code`` is S3's error code the server answered (``NoSuchKey``, ``AccessDenied``,
    ``SignatureDoesNotMatch``...), ``message`` its message; ``status`` is the HTTP status
    (0 when none came back).
    """

    def __init__(self, code: str, message: str, status: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ObjectClient:
    """Signed PUT/GET of objects under ``<endpoint>/objects/<bucket>/<key>``.

    One pooled HTTP connection manager is shared by all threads (urllib3's
    PoolManager is thread-safe), so :meth:`put_many` reuses connections instead of
    opening one per image. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        endpoint: Endpoint | None = None,
        *,
        max_connections: int = 16,
        timeout: float = 120.0,
        retries: int = 3,
    ):
        self.endpoint = endpoint or Endpoint.from_env()
        self._credentials = Credentials(self.endpoint.access_key, self.endpoint.secret_key)
        self._max_connections = max_connections
        retry = urllib3.Retry(
            total=retries,
            backoff_factor=0.2,
            # PUT and GET of a whole object are idempotent, so retrying them is safe.
            allowed_methods={"GET", "PUT"},
            status_forcelist={500, 502, 503, 504},
            # Give us the last error answer rather than an exception, so that its
            # S3 error body reaches the caller.
            raise_on_status=False,
        )
        self._http = urllib3.PoolManager(
            maxsize=max_connections,
            retries=retry,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
        )

    # -- public API -------------------------------------------------------------

    def url(self, bucket: str, key: str) -> str:
        """The object's URL; bucket and each key segment percent-encoded exactly once."""
        return f"{self.endpoint.url}/objects/{quote(bucket, safe='')}/{quote(key, safe='/~')}"

    def put(self, bucket: str, key: str, source: Source) -> dict:
        """Store ``source`` (bytes, or a path to read); return ``{"Bucket", "Key", "Size", "ETag"}``.

        The server refuses bytes that do not match the ``Content-MD5`` sent with them
        (``BadDigest``), and an ``ETag`` answered for other bytes than ours raises too.
        """
        body, content_type = _read_source(key, source)
        md5 = hashlib.md5(body)
        headers = {"Content-Type": content_type, "Content-MD5": base64.b64encode(md5.digest()).decode()}
        etag = self._send("PUT", bucket, key, body, headers).headers.get("ETag", "")
        if etag.strip('"') != md5.hexdigest():
            raise ObjectStoreError("BadDigest", f"s3://{bucket}/{key}: the server answered ETag {etag or 'none'} "
                                                f"for bytes of MD5 {md5.hexdigest()}")
        return {"Bucket": bucket, "Key": key, "Size": len(body), "ETag": etag}

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; raises :class:`ObjectStoreError` (``NoSuchKey``...) otherwise."""
        return self._send("GET", bucket, key, b"", {}).data

    def put_many(
        self,
        bucket: str,
        items: Iterable[tuple[str, Source]],
        *,
        workers: int = 8,
        progress: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """Upload ``(key, bytes-or-path)`` pairs in parallel; answers in input order.

        ``progress`` is called once per finished upload with its answer, always from
        the calling thread (safe for tqdm). The first failure cancels the uploads not
        yet started and is raised.
        """
        items = list(items)
        results: list[dict] = [{}] * len(items)
        # More threads than pooled connections would just open and drop connections.
        workers = max(1, min(workers, self._max_connections))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="put")
        try:
            futures = {pool.submit(self.put, bucket, key, src): i for i, (key, src) in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(results[futures[future]])
        finally:
            # On an error, do not wait for the queued uploads; running ones finish.
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def close(self) -> None:
        self._http.clear()

    def __enter__(self) -> "ObjectClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------

    def _send(self, method: str, bucket: str, key: str, body: bytes, headers: dict) -> urllib3.BaseHTTPResponse:
        url = self.url(bucket, key)
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        # S3SigV4Auth adds X-Amz-Date and X-Amz-Content-SHA256 and signs the path
        # as it is in the URL (no second encoding), exactly as for real S3.
        S3SigV4Auth(self._credentials, "s3", self.endpoint.region).add_auth(request)
        signed = request.prepare()
        sent_headers = dict(signed.headers.items())
        sent_headers["User-Agent"] = USER_AGENT  # not signed, as botocore does
        try:
            response = self._http.request(method, signed.url, body=signed.body or None, headers=sent_headers)
        except urllib3.exceptions.HTTPError as exc:
            # Named like botocore's error for the same situation, so the CLI reads alike.
            raise ObjectStoreError(
                "EndpointConnectionError", f'Could not connect to the endpoint URL: "{url}" ({_reason(exc)})'
            ) from exc
        if response.status >= 400:
            raise _error_from(response)
        return response


def _read_source(key: str, source: Source) -> tuple[bytes, str]:
    """The body to send and its content type (guessed from the key's extension)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        body = bytes(source)
    else:
        body = Path(source).read_bytes()
    return body, mimetypes.guess_type(key)[0] or "application/octet-stream"


def _error_from(response: urllib3.BaseHTTPResponse) -> ObjectStoreError:
    """Turn an error answer into an exception: S3's ``<Error><Code>``, else a JSON ``__type`` (a proxy
    or an older server), else the status and the start of the body."""
    code, message = f"HTTP{response.status}", response.data[:200].decode("utf-8", "replace")
    try:
        error = ET.fromstring(response.data)
        code, message = error.findtext("Code") or code, error.findtext("Message") or ""
    except ET.ParseError:
        try:
            body = json.loads(response.data)
            code, message = body.get("__type") or code, body.get("message") or body.get("Message") or ""
        except (ValueError, AttributeError):
            pass
    # AWS-style codes sometimes carry a namespace ("com.amazon...#Code"); keep the name.
    return ObjectStoreError(code.rsplit("#", 1)[-1], message, response.status)


def _reason(exc: BaseException) -> str:
    """The useful tail of urllib3's wordy errors: "[Errno 111] Connection refused"."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason).splitlines()[0].rsplit(": ", 1)[-1]
