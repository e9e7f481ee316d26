"""``/objects`` speaks S3 to a stock boto3 ``s3`` client and to the AWS CLI, over real HTTP and TLS.

One server for the module, with two accounts (Alice's and Bob's keys) and a
12 MiB object limit. Over plain HTTP botocore signs each body's SHA-256 and
sends its CRC32 in a header; over TLS (``TlsFront``: a TLS terminator in
front of the server, as a load balancer would be) it sends S3's aws-chunked
body with ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and the CRC32 in a trailer,
and each test that counts on that checks it was sent so. The SDKs' signed
streaming (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``), which neither
boto3 nor the CLI sends, is checked against the worked examples of AWS's
documentation and with bodies built here by its rules.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import http.client
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

import boto3
import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from customlabels import errors
from multidict import CIMultiDict

from services.gateway.s3_wire import ObjectBody, payload_of
from services.gateway.sigv4 import chunk_signatures
from tests.support.server import ServerProcess

ALICE = ("AKIDALICE", "alice-secret-0123456789", "111111111111")
BOB = ("AKIDBOB", "bob-secret-0123456789", "222222222222")
LIMIT = 12 << 20
MiB = 1 << 20


# --- the server, a TLS front, clients ------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s3compat")
    process = ServerProcess(folder / "data", extra_env={
        "CUSTOMLABELS_CREDENTIALS": f"{':'.join(ALICE)},{':'.join(BOB)}",
        "CUSTOMLABELS_MAX_OBJECT_BYTES": str(LIMIT)}).start()
    yield process
    process.stop()


class TlsFront:
    """TLS on 127.0.0.1 in front of ``port``, passing the decrypted bytes through unchanged (a
    self-signed certificate for 127.0.0.1, written to ``folder/cert.pem`` for clients to trust)."""

    def __init__(self, port: int, folder: Path):
        self.target = port
        self.ca_bundle = folder / "cert.pem"
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
                .sign(key, hashes.SHA256()))
        self.ca_bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = folder / "key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(self.ca_bundle, key_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TlsFront:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._tls), self._loop).result(10)
        self.endpoint = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in relays:
                task.cancel()
            await asyncio.gather(*relays, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _relay(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(1 << 16):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(client_in, server_out), pipe(server_in, client_out))


@pytest.fixture(scope="module")
def tls(server, tmp_path_factory):
    front = TlsFront(server.port, tmp_path_factory.mktemp("tls")).start()
    yield front
    front.stop()


def s3(endpoint: str, who=ALICE, *, secret: str | None = None, ca_bundle: Path | None = None):
    return boto3.client(
        "s3", endpoint_url=endpoint + "/objects", region_name="us-east-1", aws_access_key_id=who[0],
        aws_secret_access_key=secret or who[1], verify=str(ca_bundle) if ca_bundle else None,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def sent_payloads(client) -> list[str]:
    """The ``x-amz-content-sha256`` of each request ``client`` sends from now on (what botocore chose)."""
    seen: list[str] = []
    client.meta.events.register("before-send.s3.*", lambda request, **_: seen.append(
        request.headers.get("X-Amz-Content-SHA256", b"").decode()))
    return seen


def code(raised: pytest.ExceptionInfo) -> str:
    return raised.value.response["Error"]["Code"]


def missing(client, bucket: str, key: str) -> bool:
    with pytest.raises(ClientError) as raised:
        client.head_object(Bucket=bucket, Key=key)
    return raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


# --- stock boto3 ---------------------------------------------------------------------------------
def test_put_head_get_list_delete_as_s3_answers_them(server, unique):
    client = s3(server.endpoint)
    body = b"a manifest line\n" * 100
    put = client.put_object(Bucket=unique, Key="dir/a b+c.jsonl", Body=body)
    assert put["ETag"] == md5_etag(body) and put["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    head = client.head_object(Bucket=unique, Key="dir/a b+c.jsonl")
    assert (head["ETag"], head["ContentLength"]) == (md5_etag(body), len(body))
    assert abs((dt.datetime.now(dt.UTC) - head["LastModified"]).total_seconds()) < 60
    got = client.get_object(Bucket=unique, Key="dir/a b+c.jsonl")
    assert (got["Body"].read(), got["ETag"]) == (body, md5_etag(body))
    part = client.get_object(Bucket=unique, Key="dir/a b+c.jsonl", Range="bytes=16-31")
    assert (part["Body"].read(), part["ContentRange"]) == (body[16:32], f"bytes 16-31/{len(body)}")
    assert client.get_object(Bucket=unique, Key="dir/a b+c.jsonl", Range="bytes=-5")["Body"].read() == body[-5:]
    with pytest.raises(ClientError) as unchanged:
        client.get_object(Bucket=unique, Key="dir/a b+c.jsonl", IfNoneMatch=md5_etag(body))
    assert unchanged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as changed:
        client.get_object(Bucket=unique, Key="dir/a b+c.jsonl", IfMatch=md5_etag(b"older"))
    assert code(changed) == "PreconditionFailed"
    listed = client.list_objects_v2(Bucket=unique)["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [("dir/a b+c.jsonl", len(body))]
    client.delete_object(Bucket=unique, Key="dir/a b+c.jsonl")
    with pytest.raises(ClientError) as gone:
        client.get_object(Bucket=unique, Key="dir/a b+c.jsonl")
    assert code(gone) == "NoSuchKey" and missing(client, unique, "dir/a b+c.jsonl")


def test_upload_file_and_download_file_go_multipart_above_8_mb(server, unique, tmp_path):
    client = s3(server.endpoint)
    data = os.urandom(10 * MiB + 7)
    (tmp_path / "big.bin").write_bytes(data)
    seen = sent_payloads(client)
    client.upload_file(str(tmp_path / "big.bin"), unique, "big.bin")
    assert len(seen) == 4  # create, two parts (8 MiB + the rest), complete
    head = client.head_object(Bucket=unique, Key="big.bin")
    assert (head["ContentLength"], head["ETag"]) == (len(data), md5_etag(data))
    client.download_file(unique, "big.bin", str(tmp_path / "back.bin"))  # ranged GETs with If-Match
    assert (tmp_path / "back.bin").read_bytes() == data
    # an aborted upload leaves no object; a completed one cannot be completed again
    upload = client.create_multipart_upload(Bucket=unique, Key="never.bin")["UploadId"]
    client.upload_part(Bucket=unique, Key="never.bin", UploadId=upload, PartNumber=1, Body=b"x" * 1000)
    client.abort_multipart_upload(Bucket=unique, Key="never.bin", UploadId=upload)
    with pytest.raises(ClientError) as aborted:
        client.complete_multipart_upload(Bucket=unique, Key="never.bin", UploadId=upload, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": md5_etag(b"x" * 1000)}]})
    assert code(aborted) == "NoSuchUpload" and missing(client, unique, "never.bin")


def test_multipart_refuses_parts_it_did_not_receive_and_stores_nothing(server, unique):
    client = s3(server.endpoint)
    upload = client.create_multipart_upload(Bucket=unique, Key="m.bin")["UploadId"]
    first = client.upload_part(Bucket=unique, Key="m.bin", UploadId=upload, PartNumber=1, Body=b"1" * 100)["ETag"]
    second = client.upload_part(Bucket=unique, Key="m.bin", UploadId=upload, PartNumber=2, Body=b"2" * 50)["ETag"]
    assert (first, second) == (md5_etag(b"1" * 100), md5_etag(b"2" * 50))
    for parts, expected in (([(1, first), (3, second)], "InvalidPart"),  # never uploaded
                            ([(1, first), (2, first)], "InvalidPart"),  # another part's ETag
                            ([(2, second), (1, first)], "InvalidPartOrder")):
        with pytest.raises(ClientError) as refused:
            client.complete_multipart_upload(Bucket=unique, Key="m.bin", UploadId=upload, MultipartUpload={
                "Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]})
        assert code(refused) == expected and missing(client, unique, "m.bin")
    done = client.complete_multipart_upload(Bucket=unique, Key="m.bin", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]})
    body = b"1" * 100 + b"2" * 50
    assert done["ETag"] == md5_etag(body)
    assert client.get_object(Bucket=unique, Key="m.bin")["Body"].read() == body


def test_over_tls_boto3_sends_aws_chunked_bodies_with_a_trailing_checksum(server, tls, unique, tmp_path):
    client = s3(tls.endpoint, ca_bundle=tls.ca_bundle)
    seen = sent_payloads(client)
    body = os.urandom(3 * MiB + 11)  # several aws-chunked chunks of botocore's 1 MiB
    assert client.put_object(Bucket=unique, Key="photo.jpg", Body=body)["ETag"] == md5_etag(body)
    (tmp_path / "big.bin").write_bytes(big := os.urandom(9 * MiB))
    client.upload_file(str(tmp_path / "big.bin"), unique, "big.bin")
    client.put_object(Bucket=unique, Key="empty", Body=b"")
    assert seen.count("STREAMING-UNSIGNED-PAYLOAD-TRAILER") == 4  # the PUT, two parts, the empty PUT
    assert client.get_object(Bucket=unique, Key="photo.jpg")["Body"].read() == body
    assert client.get_object(Bucket=unique, Key="big.bin")["Body"].read() == big
    assert client.get_object(Bucket=unique, Key="empty")["Body"].read() == b""


def test_presigned_get_reads_the_object(server, unique):
    client = s3(server.endpoint)
    client.put_object(Bucket=unique, Key="shared.jpg", Body=b"a photo")
    for signer in (client, boto3.client("s3", endpoint_url=server.endpoint + "/objects", region_name="us-east-1",
                                        aws_access_key_id=ALICE[0], aws_secret_access_key=ALICE[1],
                                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))):
        url = signer.generate_presigned_url("get_object", Params={"Bucket": unique, "Key": "shared.jpg"}, ExpiresIn=60)
        with urllib.request.urlopen(url) as answer:
            assert (answer.read(), answer.headers["ETag"]) == (b"a photo", md5_etag(b"a photo"))
        with pytest.raises(urllib.error.HTTPError) as altered:
            urllib.request.urlopen(url.replace("shared.jpg", "shared.png"))
        assert (altered.value.code, ET.fromstring(altered.value.read()).findtext("Code")) == (403, "SignatureDoesNotMatch")


# --- refusals: nothing stored --------------------------------------------------------------------
def test_a_bad_signature_is_refused_and_stores_nothing(server, tls, unique):
    s3(server.endpoint).put_object(Bucket=unique, Key="kept", Body=b"kept")
    for endpoint, ca in ((server.endpoint, None), (tls.endpoint, tls.ca_bundle)):
        with pytest.raises(ClientError) as refused:
            s3(endpoint, secret="wrong", ca_bundle=ca).put_object(Bucket=unique, Key="forged", Body=b"x" * 5000)
        assert code(refused) == "SignatureDoesNotMatch"
        with pytest.raises(ClientError) as unknown:
            s3(endpoint, ("AKIDNOBODY", "nothing"), ca_bundle=ca).put_object(Bucket=unique, Key="forged", Body=b"x")
        assert code(unknown) == "InvalidAccessKeyId"
    assert missing(s3(server.endpoint), unique, "forged")


def test_another_accounts_bucket_is_refused(server, unique, tmp_path):
    alice, bob = s3(server.endpoint, ALICE), s3(server.endpoint, BOB)
    alice.put_object(Bucket=unique, Key="mine.jpg", Body=b"alice's")
    upload = alice.create_multipart_upload(Bucket=unique, Key="hers.bin")["UploadId"]
    (tmp_path / "f.bin").write_bytes(b"bob's")
    for attempt, expected in (
            (lambda: bob.put_object(Bucket=unique, Key="mine.jpg", Body=b"bob's"), "AccessDenied"),
            (lambda: bob.get_object(Bucket=unique, Key="mine.jpg"), "AccessDenied"),
            (lambda: bob.list_objects_v2(Bucket=unique), "AccessDenied"),
            (lambda: bob.create_multipart_upload(Bucket=unique, Key="x.bin"), "AccessDenied"),
            (lambda: bob.upload_part(Bucket=unique, Key="hers.bin", UploadId=upload, PartNumber=1, Body=b"b"),
             "AccessDenied"),
            (lambda: bob.abort_multipart_upload(Bucket=unique, Key="hers.bin", UploadId=upload), "AccessDenied"),
            (lambda: bob.delete_object(Bucket=unique, Key="mine.jpg"), "AccessDenied"),
            (lambda: bob.create_bucket(Bucket=unique), "BucketAlreadyExists")):
        with pytest.raises(ClientError) as refused:
            attempt()
        assert code(refused) == expected, refused.value
    with pytest.raises(Exception, match="AccessDenied"):
        bob.upload_file(str(tmp_path / "f.bin"), unique, "f.bin")
    assert alice.get_object(Bucket=unique, Key="mine.jpg")["Body"].read() == b"alice's"
    # Bob's own bucket: created, then his alone
    bob.create_bucket(Bucket=f"{unique}-bob")
    bob.head_bucket(Bucket=f"{unique}-bob")
    with pytest.raises(ClientError) as taken:
        alice.create_bucket(Bucket=f"{unique}-bob")
    assert code(taken) == "BucketAlreadyExists"


def test_objects_over_the_limit_are_refused_whole(server, tls, unique, tmp_path):
    client = s3(server.endpoint)
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=unique, Key="huge.bin", Body=b"x" * (LIMIT + 1))
    assert code(refused) == "EntityTooLarge"
    with pytest.raises(ClientError) as chunked:
        s3(tls.endpoint, ca_bundle=tls.ca_bundle).put_object(Bucket=unique, Key="huge.bin", Body=b"x" * (LIMIT + 1))
    assert code(chunked) == "EntityTooLarge"
    (tmp_path / "huge.bin").write_bytes(b"y" * (LIMIT + MiB))  # parts under the limit, the whole above it
    with pytest.raises(Exception, match="EntityTooLarge"):
        client.upload_file(str(tmp_path / "huge.bin"), unique, "huge.bin")
    assert missing(client, unique, "huge.bin")


def test_bodies_that_do_not_match_their_digests_are_bad_digests(server, unique):
    client = s3(server.endpoint)
    body = b"the bytes sent"
    wrong_crc = base64.b64encode(zlib.crc32(b"other bytes").to_bytes(4, "big")).decode()
    wrong_md5 = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    for claim in ({"ChecksumCRC32": wrong_crc}, {"ContentMD5": wrong_md5},
                  {"ChecksumSHA256": base64.b64encode(hashlib.sha256(b"other").digest()).decode()}):
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=unique, Key="claimed", Body=body, **claim)
        assert code(refused) == "BadDigest", claim
    with pytest.raises(ClientError) as malformed:
        client.put_object(Bucket=unique, Key="claimed", Body=body, ContentMD5="not base64!")
    assert code(malformed) == "InvalidDigest"
    assert missing(client, unique, "claimed")
    right = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert client.put_object(Bucket=unique, Key="claimed", Body=body, ChecksumCRC32=right)["ETag"] == md5_etag(body)


# --- the AWS CLI ---------------------------------------------------------------------------------
def aws(server, tmp_path: Path, *args: str, endpoint: str | None = None, ca: Path | None = None) -> str:
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {**os.environ, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_ACCESS_KEY_ID": ALICE[0], "AWS_SECRET_ACCESS_KEY": ALICE[1]}
    env.pop("AWS_DEFAULT_REGION", None)
    command = [str(Path(sys.executable).parent / "aws"), "--endpoint-url", (endpoint or server.endpoint) + "/objects",
               *(["--ca-bundle", str(ca)] if ca else []), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_aws_cli_copies_lists_and_removes(server, tls, unique, tmp_path):
    small, big = b"a label file\n", os.urandom(9 * MiB)  # the big one goes multipart
    (tmp_path / "small.txt").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)
    aws(server, tmp_path, "s3api", "put-object", "--bucket", unique, "--key", "api/small.txt",
        "--body", str(tmp_path / "small.txt"))
    aws(server, tmp_path, "s3", "cp", str(tmp_path / "big.bin"), f"s3://{unique}/cp/big.bin",
        endpoint=tls.endpoint, ca=tls.ca_bundle)
    aws(server, tmp_path, "s3", "cp", str(tmp_path / "small.txt"), f"s3://{unique}/cp/small.txt",
        endpoint=tls.endpoint, ca=tls.ca_bundle)
    listing = aws(server, tmp_path, "s3", "ls", "--recursive", f"s3://{unique}/")
    assert [line.split()[-1] for line in listing.splitlines()] == ["api/small.txt", "cp/big.bin", "cp/small.txt"]
    aws(server, tmp_path, "s3", "cp", f"s3://{unique}/cp/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big
    aws(server, tmp_path, "s3", "rm", f"s3://{unique}/cp/small.txt")
    assert s3(server.endpoint).get_object(Bucket=unique, Key="api/small.txt")["Body"].read() == small
    assert missing(s3(server.endpoint), unique, "cp/small.txt")


# --- signed streaming (the SDKs' STREAMING-AWS4-HMAC-SHA256-PAYLOAD) -------------------------------
# AWS's worked examples ("Signature calculations for the Authorization header: transferring payload
# in multiple chunks", with and without trailing headers): 64 KiB + 1 KiB of 'a'.
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request"
DOC_EXAMPLES = {
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": (
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
         "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
         "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"], b""),
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER": (
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        ["b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
         "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
         "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"],
        (b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
         b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n")),
}


async def decoded(headers: dict[str, str], body: bytes) -> bytes:
    """``body`` through ``ObjectBody`` as the gateway reads a request, checked at its end."""
    reader = StreamReader(BaseProtocol(asyncio.get_running_loop()), 1 << 16, loop=asyncio.get_running_loop())
    reader.feed_data(body)
    reader.feed_eof()
    headers = CIMultiDict(headers)
    payload = payload_of(headers)
    signatures = chunk_signatures(headers, {DOC_CREDENTIAL.split("/")[0]: DOC_SECRET}) if payload.signed_chunks else None
    received = ObjectBody(headers, reader, payload, signatures)
    data = b"".join([block async for block in received.chunks()])
    received.check(hashlib.sha256(data).hexdigest())
    return data


@pytest.mark.parametrize("mode", list(DOC_EXAMPLES))
async def test_the_documented_signed_streaming_examples_decode(mode):
    seed, signatures, trailer = DOC_EXAMPLES[mode]
    headers = {"x-amz-content-sha256": mode, "x-amz-date": "20130524T000000Z", "x-amz-decoded-content-length": "66560",
               "authorization": f"AWS4-HMAC-SHA256 Credential={DOC_CREDENTIAL},SignedHeaders=host,Signature={seed}"}
    if trailer:
        headers["x-amz-trailer"] = "x-amz-checksum-crc32c"

    def body(signatures: list[str]) -> bytes:
        return (b"10000;chunk-signature=%s\r\n%s\r\n400;chunk-signature=%s\r\n%s\r\n0;chunk-signature=%s\r\n%s\r\n"
                % (signatures[0].encode(), b"a" * 65536, signatures[1].encode(), b"a" * 1024, signatures[2].encode(),
                   trailer))

    assert await decoded(headers, body(signatures)) == b"a" * 66560
    with pytest.raises(errors.InvalidSignature):  # chunks swapped: each signature signs its predecessor too
        await decoded(headers, body([signatures[1], signatures[0], signatures[2]]))
    with pytest.raises(errors.InvalidSignature):
        await decoded(headers, body(signatures).replace(b"aaaa\r\n400", b"aaab\r\n400"))
    with pytest.raises(errors.IncompleteBody):
        await decoded(headers, body(signatures)[:-len(trailer) - 30])
    if trailer:
        with pytest.raises(errors.InvalidSignature):
            await decoded(headers, body(signatures).replace(b"sOO8", b"sOO9"))


async def test_unsigned_chunks_are_checked_by_their_trailing_checksum():
    headers = {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-crc32",
               "x-amz-decoded-content-length": "3"}
    right = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big"))
    assert await decoded(headers, b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % right) == b"abc"
    with pytest.raises(errors.BadDigest):
        await decoded(headers, b"3\r\nabd\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % right)
    with pytest.raises(errors.MalformedTrailer):  # the declared trailer never came
        await decoded(headers, b"3\r\nabc\r\n0\r\n\r\n")
    with pytest.raises(errors.IncompleteBody):  # fewer bytes than declared
        await decoded({**headers, "x-amz-decoded-content-length": "4"},
                      b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % right)
    with pytest.raises(errors.IncompleteBody):  # a chunk longer than its header says
        await decoded(headers, b"2\r\nabc\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % right)


class ChunkSigner:
    """Builds a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` PUT by the rules of AWS's documentation."""

    def __init__(self, server, who, bucket: str, key: str, data: bytes, *, trailer: bytes | None = None):
        self.mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer is not None else "")
        headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
        if trailer is not None:
            headers["x-amz-trailer"] = trailer.split(b":")[0].decode()
        self.request = AWSRequest(method="PUT", url=f"{server.endpoint}/objects/{bucket}/{key}", headers=headers)
        mode = self.mode

        class Streaming(S3SigV4Auth):
            def payload(self, request):
                return mode

        Streaming(Credentials(who[0], who[1]), "s3", "us-east-1").add_auth(self.request)
        self.amz_date = self.request.context["timestamp"]
        self.scope = f"{self.amz_date[:8]}/us-east-1/s3/aws4_request"
        self.key = ("AWS4" + who[1]).encode()
        for part in (self.amz_date[:8], "us-east-1", "s3", "aws4_request"):
            self.key = hmac.new(self.key, part.encode(), hashlib.sha256).digest()
        self.previous = self.request.headers["Authorization"].rsplit("Signature=", 1)[1]
        chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)] + [b""]
        self.body = b"".join(self._chunk(chunk) for chunk in chunks)
        if trailer is not None:
            signature = self._sign("AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(trailer + b"\n").hexdigest())
            self.body += trailer + b"\r\nx-amz-trailer-signature:" + signature.encode() + b"\r\n"
        self.body += b"\r\n"

    def _chunk(self, data: bytes) -> bytes:
        empty = hashlib.sha256(b"").hexdigest()
        self.previous = self._sign("AWS4-HMAC-SHA256-PAYLOAD", f"{empty}\n{hashlib.sha256(data).hexdigest()}")
        return b"%x;chunk-signature=%s\r\n%s" % (len(data), self.previous.encode(), data + b"\r\n" if data else b"")

    def _sign(self, algorithm: str, tail: str) -> str:
        text = f"{algorithm}\n{self.amz_date}\n{self.scope}\n{self.previous}\n{tail}"
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def send(self, body: bytes | None = None) -> tuple[int, str]:
        """(status, S3 error code or the ETag)."""
        url = urlsplit(self.request.url)
        connection = http.client.HTTPConnection(url.netloc, timeout=30)
        try:
            connection.request("PUT", url.path, body=body or self.body, headers=dict(self.request.headers.items()))
            answer = connection.getresponse()
            text = answer.read()
            return answer.status, ET.fromstring(text).findtext("Code") if text else answer.headers["ETag"]
        finally:
            connection.close()


def test_signed_chunks_are_checked_one_by_one(server, unique):
    data = os.urandom(200_000)  # three full chunks and a short one
    assert ChunkSigner(server, ALICE, unique, "signed.bin", data).send() == (200, md5_etag(data))
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big"))
    trailed = ChunkSigner(server, ALICE, unique, "trailed.bin", data, trailer=b"x-amz-checksum-crc32:" + crc)
    assert trailed.send() == (200, md5_etag(data))
    client = s3(server.endpoint)
    assert client.get_object(Bucket=unique, Key="signed.bin")["Body"].read() == data
    assert client.get_object(Bucket=unique, Key="trailed.bin")["Body"].read() == data

    altered = ChunkSigner(server, ALICE, unique, "altered.bin", data)
    at = altered.body.index(b"\r\n") + 2 + 70_000
    tampered = altered.body[:at] + bytes([altered.body[at] ^ 1]) + altered.body[at + 1:]
    assert altered.send(tampered) == (403, "SignatureDoesNotMatch")
    wrong_crc = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big"))
    signed_lie = ChunkSigner(server, ALICE, unique, "lie.bin", data, trailer=b"x-amz-checksum-crc32:" + wrong_crc)
    assert signed_lie.send() == (400, "BadDigest")
    short = ChunkSigner(server, ALICE, unique, "short.bin", data)
    assert short.send(short.body[:100_000]) == (400, "IncompleteBody")
    assert all(missing(client, unique, key) for key in ("altered.bin", "lie.bin", "short.bin"))
