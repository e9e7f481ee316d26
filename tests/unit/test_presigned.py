"""Presigned object URLs (``verify_presigned_request``), as a stock boto3 S3 client makes them.

Both forms botocore presigns: Signature Version 2's query form (what
``boto3.client("s3").generate_presigned_url`` gives unless told ``s3v4``) and
SigV4 query authentication. The clock is frozen; the URLs are botocore's own.
"""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from customlabels import errors

from services.gateway import sigv4

FROZEN = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CREDENTIALS = {"AKIDALICE": "alice-secret", "AKIDBOB": "bob-secret"}
ENDPOINT = "http://127.0.0.1:8080/objects"
KEY = "photos/a b+c~é.jpg"  # a space, a plus, a tilde and a non-ASCII letter: each encoded its own way
FORMS = {"v2": None, "v4": "s3v4"}


def presign(form: str, method: str = "get_object", expires: int = 60, key: str = "AKIDALICE", secret: str = "alice-secret",
            **params) -> str:
    config = Config(s3={"addressing_style": "path"}, **({"signature_version": FORMS[form]} if FORMS[form] else {}))
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1", aws_access_key_id=key,
                      aws_secret_access_key=secret, config=config)
    # botocore reads the clock in time.time() (SigV2's expiry) and get_current_datetime (SigV4's date)
    with mock.patch("botocore.auth.get_current_datetime", return_value=FROZEN.replace(tzinfo=None)), \
            mock.patch("time.time", return_value=FROZEN.timestamp()):
        return s3.generate_presigned_url(method, Params={"Bucket": "pics", "Key": KEY, **params}, ExpiresIn=expires)


def verify(url: str, *, method: str = "GET", at: datetime = FROZEN, headers: dict | None = None) -> str:
    parts = urlsplit(url)
    return sigv4.verify_presigned_request(
        method=method, path=parts.path, query_string=parts.query, headers={"Host": parts.netloc, **(headers or {})},
        credentials=CREDENTIALS, region="us-east-1", now=at, mount="/objects")


@pytest.mark.parametrize("form", FORMS)
def test_a_stock_boto3_url_is_accepted_for_its_key(form):
    url = presign(form)
    assert ("AWSAccessKeyId=" in url) == (form == "v2") and ("X-Amz-Signature=" in url) == (form == "v4")
    assert verify(url) == "AKIDALICE"
    assert verify(presign(form, key="AKIDBOB", secret="bob-secret")) == "AKIDBOB"
    assert verify(presign(form, "head_object"), method="HEAD") == "AKIDALICE"
    assert verify(presign(form, ResponseContentType="image/png")) == "AKIDALICE"  # a sub-resource, signed too


@pytest.mark.parametrize("form", FORMS)
def test_expiry_is_honoured(form):
    url = presign(form, expires=300)
    assert verify(url, at=FROZEN + timedelta(seconds=299)) == "AKIDALICE"
    with pytest.raises(errors.AccessDenied, match="Request has expired"):
        verify(url, at=FROZEN + timedelta(seconds=301))


@pytest.mark.parametrize("form", FORMS)
def test_at_most_seven_days(form):
    assert verify(presign(form, expires=7 * 24 * 3600)) == "AKIDALICE"
    with pytest.raises(errors.InvalidSignature, match="7 days"):
        verify(presign(form, expires=7 * 24 * 3600 + 1))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("tamper", [
    lambda url: url.replace("photos/", "secrets/"),  # another object
    lambda url: url.replace("/pics/", "/other/"),  # another bucket
    lambda url: url.replace("Expires=", "Expires=9").replace("X-Amz-Expires=60", "X-Amz-Expires=600"),  # a longer life
    lambda url: url + "&response-content-type=text%2Fhtml",  # served as something else
])
def test_a_changed_url_is_refused(form, tamper):
    url = presign(form)
    changed = tamper(url)
    assert changed != url
    with pytest.raises(errors.InvalidSignature):
        verify(changed)


@pytest.mark.parametrize("form", FORMS)
def test_a_wrong_secret_or_unknown_key_is_refused(form):
    with pytest.raises(errors.InvalidSignature):
        verify(presign(form, secret="not-alice-secret"))
    with pytest.raises(errors.UnrecognizedClient):
        verify(presign(form, key="AKIDNOBODY", secret="x"))


@pytest.mark.parametrize("form", FORMS)
def test_only_reading_and_only_one_signature(form):
    with pytest.raises(errors.InvalidSignature, match="GET or HEAD"):
        verify(presign(form, "put_object"), method="PUT")
    with pytest.raises(errors.InvalidSignature, match="Only one auth mechanism"):
        verify(presign(form), headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    with pytest.raises(errors.UnrecognizedClient):
        verify(presign(form) + "&X-Amz-Security-Token=abc")


def test_a_v4_url_dated_ahead_of_the_clock_is_not_yet_valid():
    with pytest.raises(errors.InvalidSignature, match="not yet valid"):
        verify(presign("v4"), at=FROZEN - timedelta(hours=1))


def test_no_signature_at_all_is_a_missing_token():
    with pytest.raises(errors.MissingAuthenticationToken):
        verify(f"{ENDPOINT}/pics/a.jpg?list-type=2")
