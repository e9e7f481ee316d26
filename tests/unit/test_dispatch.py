"""The operation table and the one request path, against the real service models.

Requests are built by botocore's own serializers (what stock boto3 clients
send) and answers read back by botocore's own parsers (what they receive).
The handlers are small stand-ins for services: what is under test is the path
around them (validation, routing, result checks, error names and wire forms),
in process, as an HTTP owner would answer it, and over real HTTP between a
router and a service's internal API.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientSession, web
from botocore import xform_name
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from multidict import CIMultiDict

from customlabels import errors
from customlabels.adapters.http_operations import HttpOperations
from customlabels.client import Endpoint, review_client
from customlabels.service_http import service_app
from customlabels.wire import apis, table
from customlabels.wire.dispatch import CALLER_HEADER, Caller, Dispatch, check_responses_from_env, current_caller
from customlabels.wire.http import add_api_routes, request_ids
from customlabels.wire.model import ResponseModelError
from customlabels.wire.protocols import WireRequest, WireResponse
from tests.support.server import free_port

FLOW_ARN = "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/widgets-review"
LOOP_ARN = "arn:aws:sagemaker:us-east-1:123456789012:human-loop/dcl-6f1e2a90"
CREATED = datetime(2026, 8, 1, 10, 2, 40, 377000, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- helpers


def review_operation(*, required: bool) -> str:
    """An operation of the shipped review model whose input has (or has no) required members.

    The review model is the feedback service's to change, so tests of the
    machinery pick its operations by what they need rather than by name.
    """
    model = apis.served_apis()[table.REVIEW_API].model.service_model
    for name in model.operation_names:
        shape = model.operation_model(name).input_shape
        if bool(shape is not None and shape.required_members) == required:
            return name
    raise AssertionError(f"the review model has no operation {'with' if required else 'without'} required input members")


def wire_request(operation: str, params: dict[str, Any]) -> WireRequest:
    """The request a stock boto3 client sends for ``params`` (botocore's serializer, its validation off)."""
    api = apis.api_of(operation)
    operation_model = api.model.operation_model(operation)
    request = create_serializer(api.protocol.name, include_validation=False).serialize_to_request(params, operation_model)
    path = request["url_path"]
    if request["query_string"]:
        path += "?" + urlencode(request["query_string"], doseq=True)
    shape = operation_model.input_shape
    uri_members = {
        member.serialization["name"]: str(params[name])
        for name, member in (shape.members.items() if shape else ())
        if member.serialization.get("location") == "uri" and name in params
    }
    body = request["body"] if isinstance(request["body"], bytes) else request["body"].encode()
    return WireRequest(request["method"], path, CIMultiDict(request["headers"]), body, uri_members)


def client_reads(operation: str, answer: WireResponse) -> dict[str, Any]:
    """What a stock boto3 client makes of an answer (its parser; errors under "Error")."""
    api = apis.api_of(operation)
    output = api.model.operation_model(operation).output_shape
    parsed = create_parser(api.protocol.name).parse(
        {"status_code": answer.status, "headers": CIMultiDict(answer.headers), "body": answer.body},
        output if answer.status < 300 else None,
    )
    parsed.pop("ResponseMetadata", None)
    return parsed


class Recorder:
    """A stand-in service: records what its handlers get, answers ``answer`` or raises ``error``."""

    def __init__(self, answer: dict | None = None, error: errors.ApiError | None = None):
        self.answer = answer if answer is not None else {}
        self.error = error
        self.received: list[dict] = []

    async def __call__(self, params: dict) -> dict:
        self.received.append(params)
        if self.error is not None:
            raise self.error
        return self.answer


def dispatch_with(operation: str, handler: Recorder, *, check_responses: bool = True) -> Dispatch:
    dispatch = Dispatch(check_responses=check_responses)
    dispatch.register(table.OWNERS[operation], {operation: handler})
    return dispatch


async def in_process_error(dispatch: Dispatch, operation: str, params: dict) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as caught:
        await dispatch.call(operation, params)
    return caught.value


# --------------------------------------------------------------------------- the table


def test_every_operation_has_one_api_and_one_owner():
    assert set(table.OWNERS) == set(table.API_OF)
    by_api: dict[str, set[str]] = {}
    for operation, api in table.API_OF.items():
        by_api.setdefault(api, set()).add(operation)
    assert len(by_api["rekognition"]) == 23
    assert by_api["sagemaker"] == {"CreateFlowDefinition", "DescribeFlowDefinition", "ListFlowDefinitions", "DeleteFlowDefinition"}
    assert by_api["sagemaker-a2i-runtime"] == {"StartHumanLoop", "DescribeHumanLoop", "ListHumanLoops", "StopHumanLoop", "DeleteHumanLoop"}
    assert by_api[table.REVIEW_API] == set(table.shipped_operations(table.REVIEW_API))
    assert {table.OWNERS[name] for name in by_api["sagemaker"] | by_api["sagemaker-a2i-runtime"]} == {"feedback"}
    assert table.OWNERS["DetectCustomLabels"] == "hosting" and table.OWNERS["CreateProject"] == "projects"


def test_protocols_signing_names_and_routes_come_from_the_models():
    served = apis.served_apis()
    described = {name: (api.protocol.name, api.signing_name, api.target_prefix) for name, api in served.items()}
    review = json.loads(next((table.MODELS_DIR / table.REVIEW_API).glob("*/service-2.json")).read_text())["metadata"]
    assert described == {
        "rekognition": ("json", "rekognition", "RekognitionService"),
        "sagemaker": ("json", "sagemaker", "SageMaker"),
        "sagemaker-a2i-runtime": ("rest-json", "sagemaker", None),
        table.REVIEW_API: (review["protocol"], review["signingName"], review.get("targetPrefix")),
    }
    routes = {(route.method, route.path, route.operation) for route in served["sagemaker-a2i-runtime"].routes}
    assert routes == {
        ("POST", "/human-loops", "StartHumanLoop"),
        ("GET", "/human-loops", "ListHumanLoops"),
        ("GET", "/human-loops/{HumanLoopName}", "DescribeHumanLoop"),
        ("DELETE", "/human-loops/{HumanLoopName}", "DeleteHumanLoop"),
        ("POST", "/human-loops/stop", "StopHumanLoop"),
    }
    assert apis.api_for_target("SageMaker.CreateFlowDefinition") is served["sagemaker"]
    assert apis.api_for_target("Nope.CreateProject") is None


def test_operations_outside_the_table_are_unsupported_or_unknown():
    sagemaker = apis.served_apis()["sagemaker"]
    assert sagemaker.model.resolve_target("SageMaker.ListFlowDefinitions") == "ListFlowDefinitions"
    with pytest.raises(errors.UnsupportedOperation):
        sagemaker.model.resolve_target("SageMaker.CreateTrainingJob")  # a real SageMaker operation we do not serve
    with pytest.raises(errors.UnknownOperation):
        sagemaker.model.resolve_target("SageMaker.NoSuchThing")
    with pytest.raises(errors.UnknownOperation):
        apis.api_of("CreateTrainingJob")


def test_the_review_model_loads_in_stock_boto3():
    client = review_client(Endpoint(url="http://127.0.0.1:9"))
    model = client.meta.service_model
    assert model.service_name == table.REVIEW_API and model.signing_name == "customlabels"
    assert set(model.operation_names) == set(table.shipped_operations(table.REVIEW_API))
    assert client.can_paginate("list_review_tasks")


# --------------------------------------------------------------------------- validation, in process as over HTTP


BAD_REQUESTS = [
    ("DescribeProjects", {"ProjectNames": ["x" * 300]}, "InvalidParameterException",
     "Member must have length less than or equal to 255"),
    ("DescribeProjects", {"MaxResults": "3"}, "SerializationException", "expected an integer"),
    ("DescribeFlowDefinition", {"FlowDefinitionName": "Bad_Name"}, "ValidationException",
     "at 'flowDefinitionName' failed to satisfy constraint: Member must satisfy regular expression pattern"),
    ("CreateFlowDefinition", {"FlowDefinitionName": "ok", "RoleArn": "arn:aws:iam::123456789012:role/r"}, "ValidationException",
     "Value null at 'outputConfig' failed to satisfy constraint: Member must not be null"),
    ("DescribeHumanLoop", {"HumanLoopName": "Bad_Name"}, "ValidationException", "at 'humanLoopName'"),
    ("ListHumanLoops", {"FlowDefinitionArn": "nope", "MaxResults": 500}, "ValidationException", "2 validation errors detected"),
    ("StartHumanLoop", {"HumanLoopName": "a", "FlowDefinitionArn": FLOW_ARN, "HumanLoopInput": {}}, "ValidationException",
     "at 'humanLoopInput.inputContent' failed to satisfy constraint: Member must not be null"),
    (review_operation(required=True), {}, "ValidationException", "Member must not be null"),
]


@pytest.mark.parametrize(("operation", "params", "code", "words"), BAD_REQUESTS, ids=[f"{b[0]}-{b[2]}" for b in BAD_REQUESTS])
async def test_a_bad_request_gets_the_same_answer_in_process_and_over_http(operation, params, code, words):
    handler = Recorder()
    dispatch = dispatch_with(operation, handler)
    error = await in_process_error(dispatch, operation, params)
    assert (error.code, error.status) == (code, 400) and words in error.message

    answer = await dispatch.handle(operation, wire_request(operation, params))
    read = client_reads(operation, answer)
    assert (answer.status, read["Error"]["Code"], read["Error"]["Message"]) == (400, code, error.message)
    assert handler.received == []  # neither reached the service


async def test_in_process_refuses_a_member_the_model_lacks_where_http_drops_it():
    handler = Recorder({"FlowDefinitionArn": FLOW_ARN})
    dispatch = dispatch_with("CreateFlowDefinition", handler)
    params = {"FlowDefinitionName": "widgets", "RoleArn": "arn:aws:iam::123456789012:role/r",
              "OutputConfig": {"S3OutputPath": "s3://out/reviews", "Bucket": "typo"}}
    error = await in_process_error(dispatch, "CreateFlowDefinition", params)
    assert isinstance(error, errors.InvalidParameter) and error.code == "ValidationException"
    assert 'Unknown parameter in outputConfig: "Bucket", must be one of: S3OutputPath, KmsKeyId' in error.message

    # A hand-made client can send it (boto3 cannot), and an AWS JSON service ignores it.
    raw = WireRequest("POST", "/", CIMultiDict({"X-Amz-Target": "SageMaker.CreateFlowDefinition"}), json.dumps(params).encode())
    answer = await dispatch.handle("CreateFlowDefinition", raw)
    assert client_reads("CreateFlowDefinition", answer)["FlowDefinitionArn"] == FLOW_ARN
    assert handler.received == [{**params, "OutputConfig": {"S3OutputPath": "s3://out/reviews"}}]


ROUND_TRIPS = [
    ("DescribeProjects", {"ProjectNames": ["flowers"], "MaxResults": 5}),
    ("DetectCustomLabels", {"ProjectVersionArn": "arn:aws:rekognition:us-east-1:123456789012:project/p/version/v1/1700000000003",
                            "Image": {"Bytes": bytes(range(256))}, "MinConfidence": 50.0}),
    ("ListFlowDefinitions", {"CreationTimeAfter": CREATED, "SortOrder": "Descending", "MaxResults": 10}),
    ("CreateFlowDefinition", {
        "FlowDefinitionName": "widgets-review", "RoleArn": "arn:aws:iam::123456789012:role/a2i",
        "OutputConfig": {"S3OutputPath": "s3://out/reviews"},
        "HumanLoopActivationConfig": {"HumanLoopActivationConditionsConfig": {
            "HumanLoopActivationConditions": json.dumps({"Conditions": [{"ConditionType": "Sampling",
                                                                          "ConditionParameters": {"RandomSamplingPercentage": 2}}]})}},
        "Tags": [{"Key": "team", "Value": "vision"}]}),
    ("StartHumanLoop", {"HumanLoopName": "dcl-6f1e2a90", "FlowDefinitionArn": FLOW_ARN,
                        "HumanLoopInput": {"InputContent": '{"taskObject": "s3://b/k.jpg"}'},
                        "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]}}),
    ("ListHumanLoops", {"FlowDefinitionArn": FLOW_ARN, "CreationTimeAfter": CREATED, "SortOrder": "Ascending",
                        "MaxResults": 100, "NextToken": "a b+c/="}),
    ("DescribeHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}),
    ("StopHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}),
    ("DeleteHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}),
    (review_operation(required=False), {}),
]


@pytest.mark.parametrize(("operation", "params"), ROUND_TRIPS, ids=[op for op, _ in ROUND_TRIPS])
async def test_the_handler_gets_the_same_params_in_process_and_over_http(operation, params):
    handler = Recorder()
    dispatch = dispatch_with(operation, handler, check_responses=False)
    await dispatch.call(operation, params)
    await dispatch.handle(operation, wire_request(operation, params))
    assert handler.received == [params, params]


# --------------------------------------------------------------------------- errors in each API's terms


ERRORS = [
    # operation, what the service raises, the code and status its API answers
    ("DescribeProjects", errors.ResourceNotFound("gone"), "ResourceNotFoundException", 400),
    ("DescribeFlowDefinition", errors.ResourceNotFound("gone"), "ResourceNotFound", 400),
    ("DeleteFlowDefinition", errors.ResourceInUse("busy"), "ResourceInUse", 400),
    ("CreateFlowDefinition", errors.LimitExceeded("too many"), "ResourceLimitExceeded", 400),
    ("DescribeHumanLoop", errors.ResourceNotFound("gone"), "ResourceNotFoundException", 404),
    ("StartHumanLoop", errors.Conflict("other input"), "ConflictException", 409),
    ("StartHumanLoop", errors.ResourceInUse("other input"), "ConflictException", 409),
    ("StopHumanLoop", errors.InvalidParameter("not in progress"), "ValidationException", 400),
    ("ListHumanLoops", errors.Throttling("slow down"), "ThrottlingException", 429),
    (review_operation(required=False), errors.InvalidParameter("label not in the project"), "ValidationException", 400),
]
VALID = dict(ROUND_TRIPS)


@pytest.mark.parametrize(("operation", "raised", "code", "status"), ERRORS, ids=[f"{e[0]}-{e[2]}" for e in ERRORS])
async def test_errors_leave_in_the_apis_own_names(operation, raised, code, status):
    params = VALID[operation] if operation in VALID else {"FlowDefinitionName": "widgets"}
    dispatch = dispatch_with(operation, Recorder(error=raised))

    answer = await dispatch.handle(operation, wire_request(operation, params))
    read = client_reads(operation, answer)
    assert (answer.status, read["Error"]["Code"], read["Error"]["Message"]) == (status, code, raised.message)
    if apis.api_of(operation).protocol.name == "rest-json":
        assert answer.headers["x-amzn-ErrorType"] == code
    else:
        assert json.loads(answer.body)["__type"] == code

    caught = await in_process_error(dispatch, operation, params)
    assert type(caught) is type(raised) and (caught.code, caught.status) == (code, status)


async def test_an_error_crossing_apis_is_renamed_by_each():
    """A feedback handler (SageMaker) that lets a Rekognition error through answers it in SageMaker's terms."""
    rekognition = Dispatch(check_responses=True)
    rekognition.register("projects", {"DescribeProjects": Recorder(error=errors.ResourceNotFound("no project"))})

    async def create_flow(params):
        await rekognition.call("DescribeProjects", {"ProjectNames": ["missing"]})
        return {"FlowDefinitionArn": FLOW_ARN}

    sagemaker = Dispatch(check_responses=True)
    sagemaker.register("feedback", {"CreateFlowDefinition": create_flow})
    error = await in_process_error(sagemaker, "CreateFlowDefinition", VALID["CreateFlowDefinition"])
    assert isinstance(error, errors.ResourceNotFound) and error.code == "ResourceNotFound"


async def test_an_operation_whose_owner_is_not_here_is_not_served_yet_still_validated():
    dispatch = Dispatch(check_responses=True)  # nothing registered: no feedback service
    error = await in_process_error(dispatch, "DescribeHumanLoop", {"HumanLoopName": "dcl-1"})
    assert error.code == "UnsupportedOperationException"
    assert error.message == "DescribeHumanLoop is served by the feedback service, which is not running here"
    answer = await dispatch.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-1"}))
    assert (answer.status, answer.headers["x-amzn-ErrorType"]) == (400, "UnsupportedOperationException")
    bad = await dispatch.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "Bad_Name"}))
    assert client_reads("DescribeHumanLoop", bad)["Error"]["Code"] == "ValidationException"
    with pytest.raises(errors.UnknownOperation):
        await dispatch.call("CreateTrainingJob", {})


def test_a_service_registers_only_what_the_table_gives_it():
    with pytest.raises(ValueError, match="the operation table gives it to hosting"):
        Dispatch().register("projects", {"DetectCustomLabels": Recorder()})


# --------------------------------------------------------------------------- results


async def test_results_that_do_not_fit_the_model_fail_when_checked():
    answer = {"ProjectDescriptions": [], "Unexpected": 1}
    checked = dispatch_with("DescribeProjects", Recorder(answer), check_responses=True)
    error = await in_process_error(checked, "DescribeProjects", {})
    assert isinstance(error, ResponseModelError) and error.status == 500
    assert "'unexpected' is not a member of DescribeProjectsResponse" in error.message
    over_http = await checked.handle("DescribeProjects", wire_request("DescribeProjects", {}))
    assert (over_http.status, json.loads(over_http.body)["__type"]) == (500, "InternalServerError")

    a2i = dispatch_with("DescribeHumanLoop", Recorder({"HumanLoopName": "dcl-1"}), check_responses=True)
    answer = await a2i.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-1"}))
    assert (answer.status, answer.headers["x-amzn-ErrorType"]) == (500, "InternalServerException")
    assert "Value null at 'creationTime' failed to satisfy constraint: Member must not be null" in json.loads(answer.body)["message"]

    unchecked = dispatch_with("DescribeProjects", Recorder(answer={"ProjectDescriptions": [], "Unexpected": 1}), check_responses=False)
    assert await unchecked.call("DescribeProjects", {}) == {"ProjectDescriptions": []}  # as a client reads it back


def test_checking_is_asked_for_by_the_environment():
    assert check_responses_from_env({"CUSTOMLABELS_CHECK_RESPONSES": "1"})
    assert check_responses_from_env({"CUSTOMLABELS_CHECK_RESPONSES": "true"})
    assert not check_responses_from_env({})
    assert not check_responses_from_env({"CUSTOMLABELS_CHECK_RESPONSES": "0"})


async def test_rest_json_results_are_what_botocore_reads():
    loop = {"CreationTime": CREATED, "HumanLoopStatus": "Completed", "HumanLoopName": "dcl-6f1e2a90",
            "HumanLoopArn": LOOP_ARN, "FlowDefinitionArn": FLOW_ARN,
            "HumanLoopOutput": {"OutputS3Uri": "s3://out/reviews/widgets-review/2026/08/01/10/02/40/dcl-6f1e2a90/output.json"}}
    dispatch = dispatch_with("DescribeHumanLoop", Recorder(loop))
    answer = await dispatch.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}))
    assert answer.status == 200 and json.loads(answer.body)["CreationTime"] == "2026-08-01T10:02:40.377000Z"  # ISO 8601, as the model says
    assert client_reads("DescribeHumanLoop", answer) == loop

    summaries = {"FlowDefinitionSummaries": [{"FlowDefinitionName": "widgets-review", "FlowDefinitionArn": FLOW_ARN,
                                              "FlowDefinitionStatus": "Active", "CreationTime": CREATED}]}
    listed = await dispatch_with("ListFlowDefinitions", Recorder(summaries)).handle(
        "ListFlowDefinitions", wire_request("ListFlowDefinitions", {}))
    assert json.loads(listed.body)["FlowDefinitionSummaries"][0]["CreationTime"] == CREATED.timestamp()  # JSON 1.1: epoch
    assert client_reads("ListFlowDefinitions", listed) == summaries


# --------------------------------------------------------------------------- over real HTTP, service to service


class StandIn:
    """What ``service_app`` needs of a service: a name and its operations."""

    def __init__(self, name: str, operations: dict):
        self.name = name
        self._operations = operations

    def operations(self) -> dict:
        return self._operations


@pytest.fixture
async def feedback_owner():
    """A stand-in feedback service behind its real internal API (``service_app``) on 127.0.0.1."""
    loop = {"CreationTime": CREATED, "HumanLoopStatus": "InProgress", "HumanLoopName": "dcl-6f1e2a90",
            "HumanLoopArn": LOOP_ARN, "FlowDefinitionArn": FLOW_ARN}

    callers = []  # current_caller() in each DescribeHumanLoop the owner answered

    async def describe(params):
        callers.append(current_caller())
        if params["HumanLoopName"] != loop["HumanLoopName"]:
            raise errors.ResourceNotFound(f"no human loop {params['HumanLoopName']}")
        return loop

    handlers = {"DescribeHumanLoop": describe, "DescribeFlowDefinition": Recorder(error=errors.ResourceNotFound("no flow"))}
    runner = web.AppRunner(service_app(StandIn("feedback", handlers), max_body=1 << 20))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    router = HttpOperations({"feedback": f"http://127.0.0.1:{port}"})
    try:
        yield router, loop, callers
    finally:
        await router.close()
        await runner.cleanup()


async def test_a_router_over_http_gets_what_an_in_process_call_gets(feedback_owner):
    router, loop, _ = feedback_owner
    assert await router.call("DescribeHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}) == loop

    missing = await in_process_error(router, "DescribeHumanLoop", {"HumanLoopName": "dcl-0"})
    assert isinstance(missing, errors.ResourceNotFound) and (missing.code, missing.status) == ("ResourceNotFoundException", 404)
    flow = await in_process_error(router, "DescribeFlowDefinition", {"FlowDefinitionName": "widgets"})
    assert isinstance(flow, errors.ResourceNotFound) and flow.code == "ResourceNotFound"
    bad = await in_process_error(router, "DescribeHumanLoop", {"HumanLoopName": "Bad_Name"})
    assert isinstance(bad, errors.InvalidParameter) and bad.code == "ValidationException"

    forwarded = await router.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-6f1e2a90"}))
    assert client_reads("DescribeHumanLoop", forwarded) == loop
    gone = await router.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-0"}))
    assert (gone.status, gone.headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")
    # The owner answers only its own operations.
    other = await router.handle("ListHumanLoops", wire_request("ListHumanLoops", {"FlowDefinitionArn": FLOW_ARN}))
    assert client_reads("ListHumanLoops", other)["Error"]["Message"] == (
        "ListHumanLoops is served by the feedback service, which is not this one")


async def test_a_router_without_the_owner_says_so_and_an_unreachable_owner_is_throttling():
    router = HttpOperations({"projects": f"http://127.0.0.1:{free_port()}"})  # nothing listens there
    try:
        assert not router.owns("DescribeHumanLoop") and router.owns("DescribeProjects")
        error = await in_process_error(router, "DescribeHumanLoop", {"HumanLoopName": "dcl-1"})
        assert error.code == "UnsupportedOperationException" and "not configured here" in error.message
        answer = await router.handle("DescribeHumanLoop", wire_request("DescribeHumanLoop", {"HumanLoopName": "dcl-1"}))
        assert answer.headers["x-amzn-ErrorType"] == "UnsupportedOperationException"
        unreachable = await in_process_error(router, "DescribeProjects", {})
        assert isinstance(unreachable, errors.Throttling) and "could not be reached" in unreachable.message
    finally:
        await router.close()


def test_boto3_sends_what_the_review_api_accepts():
    """A request stock boto3 makes for the shipped model is one the dispatch routes and parses."""
    client = review_client(Endpoint(url="http://127.0.0.1:9"))
    operation = review_operation(required=False)
    captured = {}

    def stop_before_sending(request, **kwargs):
        captured["request"] = request
        raise _Sent()

    client.meta.events.register("before-send.*", stop_before_sending)
    with pytest.raises(_Sent):
        getattr(client, xform_name(operation))()
    request = captured["request"]
    api = apis.api_of(operation)
    target = request.headers["X-Amz-Target"].decode()
    assert apis.api_for_target(target) is api and api.model.resolve_target(target) == operation
    assert api.model.parse_request(operation, request.body or b"") == {}
    assert f"/{api.signing_name}/aws4_request" in request.headers["Authorization"].decode()


class _Sent(Exception):
    """Stops boto3 after it built and signed a request."""


# --------------------------------------------------------------------------- who is calling


async def test_the_verified_caller_reaches_the_handler_and_the_calls_it_makes(feedback_owner):
    """The front's authenticated key (never one a client claims) is current_caller(), in process and over HTTP."""
    router, loop, owner_saw = feedback_owner
    seen: dict[str, str | None] = {}

    async def describe_projects(params):
        seen["projects"] = current_caller()
        return {"ProjectDescriptions": []}

    async def list_review_tasks_stand_in(params):
        seen["handler"] = current_caller()
        await local.call("DescribeProjects", {})                  # in process
        await router.call("DescribeHumanLoop", {"HumanLoopName": loop["HumanLoopName"]})  # over HTTP, to the owner
        return {}

    operation = review_operation(required=False)
    local = Dispatch(check_responses=False)
    local.register("projects", {"DescribeProjects": describe_projects})
    local.register("feedback", {operation: list_review_tasks_stand_in})

    reviewer = Caller("AKIDREVIEWER", FLOW_ARN.split(":")[4])

    def authenticate(request, body_sha256, signing_names):
        assert signing_names == {apis.api_of(operation).signing_name}
        return reviewer

    app = web.Application(middlewares=[request_ids])
    add_api_routes(app, local, max_body=1 << 20, authenticate=authenticate)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        request = wire_request(operation, {})
        headers = {**request.headers, CALLER_HEADER: Caller("AKIDFORGED", "999999999999").header()}
        async with ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/", data=request.body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
    finally:
        await runner.cleanup()
    assert seen == {"handler": reviewer, "projects": reviewer} and owner_saw == [reviewer]
    assert current_caller() is None  # nothing leaks past the request
