"""Every API the product speaks, over real HTTP with stock boto3 clients: routing, validation, signing, not-served answers.

``server`` is the embedded server (every service); ``gateway_and_projects``
is the distributed deployment with only the projects service behind the
gateway, so the operations of the services it lacks (feedback, datasets...)
get the "not served here" answer of their API, whatever services exist.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

import boto3
import pytest
from botocore import xform_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from customlabels.client import Endpoint, review_client
from customlabels.config import DEV_ACCESS_KEY, DEV_SECRET_KEY
from tests.support.cluster import Cluster

FLOW_ARN = "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/widgets-review"
# Client-side validation off: these tests send what the server must refuse.
NO_CLIENT_CHECKS = Config(parameter_validation=False, retries={"max_attempts": 1})


def client(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=DEV_ACCESS_KEY,
                        aws_secret_access_key=DEV_SECRET_KEY, config=NO_CLIENT_CHECKS)


def review(endpoint: str):
    return review_client(Endpoint(url=endpoint), parameter_validation=False, retries={"max_attempts": 1})


def review_call(endpoint: str, *, required: bool):
    """A call, with no params, of a review operation that has (or has no) required input members.

    The review model is the feedback service's to change: tests of the
    machinery pick its operations by what they need, not by name.
    """
    reviewer = review(endpoint)
    model = reviewer.meta.service_model
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if bool(shape is not None and shape.required_members) == required:
            return lambda: getattr(reviewer, xform_name(name))()
    raise AssertionError(f"the review model has no operation {'with' if required else 'without'} required input members")


def refusal(call) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def signed(endpoint: str, method: str, path: str, *, service: str, body: bytes = b"", headers: dict | None = None):
    """A request signed for ``service`` (right or wrong); (status, headers, JSON body)."""
    request = AWSRequest(method=method, url=endpoint + path, data=body, headers=headers or {})
    SigV4Auth(Credentials(DEV_ACCESS_KEY, DEV_SECRET_KEY), service, "us-east-1").add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=body or None, method=method, headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(http) as answer:
            return answer.status, answer.headers, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read() or b"{}")


# --------------------------------------------------------------------------- validation, per API


def test_sagemaker_requests_are_validated_against_its_model(server):
    sagemaker = client(server.endpoint, "sagemaker")
    status, code, message = refusal(lambda: sagemaker.describe_flow_definition(FlowDefinitionName="Bad_Name"))
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("1 validation error detected: Value 'Bad_Name' at 'flowDefinitionName'")
    status, code, message = refusal(lambda: sagemaker.create_flow_definition(
        FlowDefinitionName="widgets", RoleArn="not-a-role", OutputConfig={"S3OutputPath": "ftp://x"},
        HumanLoopConfig={"WorkteamArn": "w", "HumanTaskUiArn": "u", "TaskTitle": "t", "TaskDescription": "d", "TaskCount": 4}))
    assert (status, code) == (400, "ValidationException") and message.startswith("6 validation errors detected")
    assert "at 'humanLoopConfig.taskCount' failed to satisfy constraint: Member must have value less than or equal to 3" in message


def test_a2i_requests_are_validated_against_its_model(server):
    a2i = client(server.endpoint, "sagemaker-a2i-runtime")
    with pytest.raises(a2i.exceptions.ValidationException) as caught:  # modelled: boto3 raises its own class
        a2i.describe_human_loop(HumanLoopName="Bad_Name")
    assert caught.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "ValidationException"
    status, code, message = refusal(lambda: a2i.list_human_loops(FlowDefinitionArn="nope", MaxResults=500))
    assert (status, code) == (400, "ValidationException") and message.startswith("2 validation errors detected")
    status, code, message = refusal(lambda: a2i.start_human_loop(
        HumanLoopName="loop-1", FlowDefinitionArn=FLOW_ARN, HumanLoopInput={"InputContent": "{}"},
        DataAttributes={"ContentClassifiers": ["FreeOfMalware"]}))
    assert (status, code) == (400, "ValidationException")
    assert "at 'dataAttributes.contentClassifiers.1.member' failed to satisfy constraint: Member must satisfy enum value set" in message


def test_review_requests_are_validated_against_the_shipped_model(server):
    status, code, message = refusal(review_call(server.endpoint, required=True))
    assert (status, code) == (400, "ValidationException") and "failed to satisfy constraint: Member must not be null" in message


# --------------------------------------------------------------------------- routes and operations outside the table


def test_unknown_routes_and_operations_get_clear_answers(server):
    status, headers, body = signed(server.endpoint, "GET", "/human-loops/a/b", service="sagemaker")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "UnknownOperationException") and body["message"]
    status, headers, _ = signed(server.endpoint, "PUT", "/human-loops", service="sagemaker")
    assert (status, headers["x-amzn-ErrorType"]) == (405, "UnknownOperationException")

    target = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.NoSuchThing"}
    status, _, body = signed(server.endpoint, "POST", "/", service="sagemaker", body=b"{}", headers=target)
    assert (status, body["__type"]) == (400, "UnknownOperationException")

    status, code, message = refusal(lambda: client(server.endpoint, "sagemaker").list_training_jobs())
    assert (status, code) == (400, "UnsupportedOperationException")
    assert message.startswith("ListTrainingJobs is not supported: this server serves only CreateFlowDefinition")


def test_signing_for_another_service_is_refused(server):
    loops = "/human-loops?FlowDefinitionArn=" + quote(FLOW_ARN, safe="")
    status, headers, body = signed(server.endpoint, "GET", loops, service="rekognition")
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert body["message"] == "Credential should be scoped to correct service: 'sagemaker', not 'rekognition'."

    flows = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListFlowDefinitions"}
    status, _, body = signed(server.endpoint, "POST", "/", service="rekognition", body=b"{}", headers=flows)
    assert (status, body["__type"]) == (403, "InvalidSignatureException") and "'sagemaker', not 'rekognition'" in body["message"]

    projects = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "RekognitionService.DescribeProjects"}
    status, _, body = signed(server.endpoint, "POST", "/", service="sagemaker", body=b"{}", headers=projects)
    assert (status, body["__type"]) == (403, "InvalidSignatureException") and "'rekognition', not 'sagemaker'" in body["message"]
    status, _, body = signed(server.endpoint, "POST", "/", service="rekognition", body=b"{}", headers=projects)
    assert status == 200 and "ProjectDescriptions" in body


# --------------------------------------------------------------------------- not served here


@pytest.fixture(scope="module")
def gateway_and_projects(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("apis") / "data", services=("projects",)).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_operations_of_a_service_that_is_not_deployed_are_not_served(gateway_and_projects, unique):
    endpoint = gateway_and_projects.gateway.endpoint
    a2i = client(endpoint, "sagemaker-a2i-runtime")
    status, code, message = refusal(lambda: a2i.list_human_loops(FlowDefinitionArn=FLOW_ARN, SortOrder="Descending",
                                                                 CreationTimeAfter="2026-01-01"))
    assert (status, code) == (400, "UnsupportedOperationException")
    assert message == "ListHumanLoops is served by the feedback service, which is not configured here"
    status, code, message = refusal(lambda: client(endpoint, "sagemaker").describe_flow_definition(FlowDefinitionName="widgets"))
    assert (status, code, message) == (400, "UnsupportedOperationException",
                                       "DescribeFlowDefinition is served by the feedback service, which is not configured here")
    status, code, message = refusal(review_call(endpoint, required=False))
    assert (status, code) == (400, "UnsupportedOperationException") and "feedback service" in message
    # A bad request is still answered as such.
    status, code, _ = refusal(lambda: a2i.describe_human_loop(HumanLoopName="Bad_Name"))
    assert (status, code) == (400, "ValidationException")

    # What is deployed is forwarded to its owner, which validates it and answers in its API's form.
    rekognition = client(endpoint, "rekognition")
    arn = rekognition.create_project(ProjectName=unique)["ProjectArn"]
    assert rekognition.describe_projects(ProjectNames=[unique])["ProjectDescriptions"][0]["ProjectArn"] == arn
    status, code, _ = refusal(lambda: rekognition.describe_projects(ProjectNames=["x" * 300]))
    assert (status, code) == (400, "InvalidParameterException")
    status, code, message = refusal(lambda: rekognition.describe_dataset(
        DatasetArn=arn.rsplit("/", 1)[0] + "/dataset/train/1700000000001"))
    assert (status, code) == (400, "UnsupportedOperationException") and "datasets service" in message
