"""Server-side SigV4 against requests signed by botocore exactly as boto3 signs them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from hashlib import sha256
from unittest import mock
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from multidict import CIMultiDict

from customlabels import errors
from services.gateway import sigv4

FROZEN = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
ACCESS_KEY = "AKIACUSTOMLABELS0001"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDENTIALS = {ACCESS_KEY: SECRET, "AKIAOTHER": "other-secret"}
REGION = "us-east-1"


def sign(request: AWSRequest, *, service: str = "rekognition", region: str = REGION, at: datetime = FROZEN,
         access_key: str = ACCESS_KEY, secret: str = SECRET, token: str | None = None,
         signer: type[SigV4Auth] = SigV4Auth) -> AWSRequest:
    """Sign as boto3 does, at a frozen time (botocore reads the clock through get_current_datetime)."""
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        signer(Credentials(access_key, secret, token), service, region).add_auth(request)
    return request


def received(request) -> dict:
    """What the server sees: the raw path and query, the headers plus Host (added by the HTTP client)."""
    url = urlsplit(request.url)
    headers = CIMultiDict(
        (name, value.decode() if isinstance(value, bytes) else value) for name, value in request.headers.items()
    )
    headers.setdefault("Host", url.netloc)
    body = request.body or b""
    if hasattr(body, "read"):  # the s3 client sends a stream
        body = body.read()
    return {
        "method": request.method, "path": url.path, "query_string": url.query, "headers": headers,
        "body_sha256": sha256(body).hexdigest(),
    }


def verify(seen: dict, *, service: str = "rekognition", now: datetime = FROZEN, **overrides) -> str:
    arguments = {**seen, "credentials": CREDENTIALS, "region": REGION, "service": service, "now": now}
    return sigv4.verify_request(**{**arguments, **overrides})


def rekognition_request(body: bytes = b'{"ProjectName": "demo"}') -> AWSRequest:
    return AWSRequest(method="POST", url="http://localhost:8080/", data=body, headers={
        "X-Amz-Target": "RekognitionService.CreateProject",
        "Content-Type": "application/x-amz-json-1.1",
    })


def rejected(error: type[errors.ApiError], seen: dict, **kwargs) -> str:
    with pytest.raises(error) as caught:
        verify(seen, **kwargs)
    assert caught.value.status == 403
    return caught.value.message


# --------------------------------------------------------------------------- accepted


def test_valid_rekognition_request():
    assert verify(received(sign(rekognition_request()))) == ACCESS_KEY


def test_headers_the_client_did_not_sign_may_change():
    seen = received(sign(rekognition_request()))
    seen["headers"]["User-Agent"] = "a proxy rewrote me"
    seen["headers"]["X-Forwarded-For"] = "10.0.0.1"
    assert verify(seen) == ACCESS_KEY


def test_valid_s3_put_with_a_key_needing_percent_encoding():
    key = "photos/some dir/été 1+(2)~*.jpg"
    url = "http://localhost:9000/objects/my-bucket/" + quote(key, safe="/~")  # as botocore encodes keys
    request = sign(AWSRequest(method="PUT", url=url, data=b"\x89PNG..."), service="s3", signer=S3SigV4Auth)
    seen = received(request)
    assert "%20" in seen["path"] and "%C3%A9" in seen["path"]
    assert "x-amz-content-sha256" in request.headers["Authorization"]
    assert verify(seen, service="s3") == ACCESS_KEY


def test_s3_with_another_key_is_rejected():
    url = "http://localhost:9000/objects/my-bucket/" + quote("a b.jpg")
    seen = received(sign(AWSRequest(method="PUT", url=url, data=b"x"), service="s3", signer=S3SigV4Auth))
    seen["path"] = seen["path"].replace("a%20b", "a%20c")
    assert rejected(errors.InvalidSignature, seen, service="s3") == sigv4.SIGNATURE_MISMATCH


def test_other_services_sign_the_encoded_path_encoded_again():
    # SigV4Auth (not S3) quotes the already-encoded path: %20 is signed as %2520.
    request = sign(AWSRequest(method="GET", url="http://localhost:8080/some%20path/caf%C3%A9"), service="execute-api")
    assert verify(received(request), service="execute-api") == ACCESS_KEY


def test_query_parameters_are_canonicalised():
    url = "http://localhost:9000/objects/my-bucket?prefix=a%20b%2Fc&list-type=2&delimiter=%2F"
    seen = received(sign(AWSRequest(method="GET", url=url), service="s3", signer=S3SigV4Auth))
    assert verify(seen, service="s3") == ACCESS_KEY
    seen["query_string"] = seen["query_string"].replace("list-type=2", "list-type=1")
    assert rejected(errors.InvalidSignature, seen, service="s3") == sigv4.SIGNATURE_MISMATCH


@pytest.mark.parametrize("offset", [timedelta(minutes=14), timedelta(minutes=-14), timedelta(minutes=15)])
def test_a_clock_within_the_skew_is_accepted(offset):
    assert verify(received(sign(rekognition_request())), now=FROZEN + offset) == ACCESS_KEY


def test_date_header_instead_of_x_amz_date():
    request = rekognition_request()
    request.headers["Date"] = "placeholder"  # botocore then signs with Date, not X-Amz-Date
    seen = received(sign(request))
    assert "X-Amz-Date" not in seen["headers"]
    assert verify(seen) == ACCESS_KEY


# --------------------------------------------------------------------------- rejected


def test_tampered_body():
    seen = received(sign(rekognition_request()))
    seen["body_sha256"] = sha256(b'{"ProjectName": "other"}').hexdigest()
    assert rejected(errors.InvalidSignature, seen) == sigv4.SIGNATURE_MISMATCH


def test_tampered_signed_header():
    seen = received(sign(rekognition_request()))
    seen["headers"]["X-Amz-Target"] = "RekognitionService.DeleteProject"
    assert rejected(errors.InvalidSignature, seen) == sigv4.SIGNATURE_MISMATCH


def test_wrong_secret():
    seen = received(sign(rekognition_request(), secret="not-the-secret"))
    assert rejected(errors.InvalidSignature, seen) == sigv4.SIGNATURE_MISMATCH


def test_unknown_access_key():
    seen = received(sign(rekognition_request(), access_key="AKIAUNKNOWN"))
    assert rejected(errors.UnrecognizedClient, seen) == "The security token included in the request is invalid."


def test_session_tokens_are_not_honoured():
    seen = received(sign(rekognition_request(), token="FwoGZXIvYXdzE"))
    assert rejected(errors.UnrecognizedClient, seen) == "The security token included in the request is invalid."


def test_missing_authorization():
    seen = received(rekognition_request())
    assert rejected(errors.MissingAuthenticationToken, seen) == "Missing Authentication Token"
    seen["headers"]["X-Amz-Security-Token"] = "anything"  # a token alone authenticates nothing
    assert rejected(errors.MissingAuthenticationToken, seen) == "Missing Authentication Token"


def test_stale_date_says_signature_expired():
    seen = received(sign(rekognition_request()))
    message = rejected(errors.InvalidSignature, seen, now=FROZEN + timedelta(minutes=16))
    assert message == (
        "Signature expired: 20260101T120000Z is now earlier than 20260101T120100Z (20260101T121600Z - 15 min.)"
    )


def test_date_in_the_future():
    seen = received(sign(rekognition_request()))
    message = rejected(errors.InvalidSignature, seen, now=FROZEN - timedelta(minutes=16))
    assert message.startswith("Signature not yet current: 20260101T120000Z is still later than 20260101T115900Z")


def test_wrong_region():
    seen = received(sign(rekognition_request(), region="eu-west-1"))
    message = rejected(errors.InvalidSignature, seen)
    assert "region" in message and "'us-east-1'" in message and "'eu-west-1'" in message


def test_wrong_service():
    seen = received(sign(rekognition_request(), service="s3"))
    assert rejected(errors.InvalidSignature, seen) == (
        "Credential should be scoped to correct service: 'rekognition', not 's3'."
    )


def test_scope_date_must_be_the_request_day():
    seen = received(sign(rekognition_request()))
    seen["headers"]["Authorization"] = seen["headers"]["Authorization"].replace("/20260101/", "/20251231/")
    assert "Date in Credential scope does not match" in rejected(errors.InvalidSignature, seen)


def test_missing_date():
    seen = received(sign(rekognition_request()))
    del seen["headers"]["X-Amz-Date"]
    assert rejected(errors.InvalidSignature, seen) == (
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
    )


@pytest.mark.parametrize("authorization", [
    "AWS4-HMAC-SHA256",
    "AWS4-HMAC-SHA256 Credential=AKIACUSTOMLABELS0001/20260101/us-east-1/rekognition/aws4_request",
    "AWS4-HMAC-SHA256 Credential=AKIACUSTOMLABELS0001/20260101/us-east-1, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition/aws4_request, SignedHeaders=Host;X-Amz-Date, "
    "Signature=" + "0" * 64,
    "AWS4-HMAC-SHA256 garbage",
    "AWS AKIACUSTOMLABELS0001:c2lnbmF0dXJl",
    "AWS4-HMAC-SHA1 Credential=a/20260101/us-east-1/rekognition/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/rekognition/aws5_request, SignedHeaders=host, Signature=00",
])
def test_malformed_authorization(authorization):
    seen = received(sign(rekognition_request()))
    seen["headers"]["Authorization"] = authorization
    rejected(errors.InvalidSignature, seen)


def test_signature_that_is_not_hex():
    seen = received(sign(rekognition_request()))
    auth = seen["headers"]["Authorization"]
    seen["headers"]["Authorization"] = auth[:auth.index("Signature=")] + "Signature=" + "é" * 64
    assert rejected(errors.InvalidSignature, seen) == sigv4.SIGNATURE_MISMATCH


@pytest.mark.parametrize("dropped", ["host", "x-amz-date"])
def test_host_and_x_amz_date_must_be_signed(dropped):
    seen = received(sign(rekognition_request()))
    auth = seen["headers"]["Authorization"]
    seen["headers"]["Authorization"] = auth.replace(f"{dropped};", "").replace(f";{dropped}", "")
    assert f"'{dropped}' must be a signed header" in rejected(errors.InvalidSignature, seen)


def test_a_signed_header_missing_from_the_request():
    seen = received(sign(rekognition_request()))
    del seen["headers"]["X-Amz-Target"]
    assert "x-amz-target" in rejected(errors.InvalidSignature, seen)


def test_client_payload_hash_must_match_the_body():
    url = "http://localhost:9000/objects/my-bucket/k.jpg"
    seen = received(sign(AWSRequest(method="PUT", url=url, data=b"original"), service="s3", signer=S3SigV4Auth))
    # The client's hash and signature agree with each other, but not with the body the server read.
    seen["body_sha256"] = sha256(b"replaced").hexdigest()
    assert rejected(errors.InvalidSignature, seen, service="s3") == (
        "The provided x-amz-content-sha256 header does not match what was computed."
    )


def test_unsigned_payload_is_refused():
    request = AWSRequest(method="PUT", url="https://localhost:9000/objects/my-bucket/k.jpg", data=b"x")
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    seen = received(sign(request, service="s3", signer=S3SigV4Auth))
    assert seen["headers"]["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    rejected(errors.InvalidSignature, seen, service="s3")


def test_presigned_urls_are_not_supported():
    seen = received(AWSRequest(method="GET", url="http://localhost:9000/objects/b/k?X-Amz-Signature=abc"))
    assert "presigned" in rejected(errors.InvalidSignature, seen, service="s3")


# --------------------------------------------------------------------------- real clients


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def stream(self, **_):
        yield self._data


def capture_requests(client, operation: str, response_body: bytes) -> list:
    """Keep what the client would send; answer it locally so nothing leaves the process."""
    captured = []

    def before_send(request, **_):
        captured.append(request)
        return AWSResponse(request.url, 200, {"x-amzn-RequestId": "test"}, _Body(response_body))

    client.meta.events.register(f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}",
                                before_send)
    return captured


def test_a_request_signed_by_the_real_boto3_rekognition_client():
    client = boto3.client(
        "rekognition", endpoint_url="http://gateway.test:8080", region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}),
    )
    captured = capture_requests(client, "CreateProject", b'{"ProjectArn": "arn:aws:rekognition:x"}')
    assert client.create_project(ProjectName="demo")["ProjectArn"] == "arn:aws:rekognition:x"
    (request,) = captured
    seen = received(request)
    assert seen["headers"]["X-Amz-Target"] == "RekognitionService.CreateProject"
    assert verify(seen, now=datetime.now(timezone.utc)) == ACCESS_KEY
    seen["body_sha256"] = sha256(b'{"ProjectName": "evil"}').hexdigest()
    rejected(errors.InvalidSignature, seen, now=datetime.now(timezone.utc))


def test_a_put_object_signed_by_the_real_boto3_s3_client():
    client = boto3.client(
        "s3", endpoint_url="http://gateway.test:8080/objects", region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0}),
    )
    captured = capture_requests(client, "PutObject", b"")
    client.put_object(Bucket="images", Key="train/a cat é+1.jpg", Body=b"\xff\xd8 jpeg bytes")
    (request,) = captured
    seen = received(request)
    assert seen["path"] == "/objects/images/train/a%20cat%20%C3%A9%2B1.jpg"
    assert verify(seen, service="s3", now=datetime.now(timezone.utc)) == ACCESS_KEY
