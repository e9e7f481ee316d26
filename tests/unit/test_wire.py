"""The wire layer against botocore's real rekognition model: validation, messages, (de)serialisation."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from customlabels import errors
from customlabels.wire import model as wire

PROJECT_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/demo/1700000000000"
TRAIN_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/dataset/train/1700000000001"
TEST_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/dataset/test/1700000000002"
VERSION_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/version/v1/1700000000003"


@pytest.fixture(scope="module")
def api() -> wire.ApiModel:
    return wire.load_api_model()


def parse(api: wire.ApiModel, operation: str, params: dict) -> dict:
    return api.parse_request(operation, json.dumps(params).encode())


def invalid(api: wire.ApiModel, operation: str, params: dict) -> str:
    with pytest.raises(errors.InvalidParameter) as caught:
        parse(api, operation, params)
    assert caught.value.code == "InvalidParameterException" and caught.value.status == 400
    return caught.value.message


def not_deserialisable(api: wire.ApiModel, operation: str, body: dict | bytes) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(errors.SerializationError) as caught:
        api.parse_request(operation, raw)
    assert caught.value.code == "SerializationException" and caught.value.status == 400
    return caught.value.message


# --------------------------------------------------------------------------- the model


def test_the_23_custom_labels_operations_are_in_the_model(api):
    assert len(wire.CUSTOM_LABELS_OPERATIONS) == 23
    assert all(api.has_operation(name) for name in wire.CUSTOM_LABELS_OPERATIONS)
    assert api.target_prefix == "RekognitionService"


def test_resolve_target(api):
    assert api.resolve_target("RekognitionService.CreateProject") == "CreateProject"
    with pytest.raises(errors.UnsupportedOperation):
        api.resolve_target("RekognitionService.DetectLabels")  # real Rekognition, not Custom Labels
    for target in (None, "", "CreateProject", "Other.CreateProject", "RekognitionService.Nope"):
        with pytest.raises(errors.UnknownOperation):
            api.resolve_target(target)


@pytest.mark.parametrize("operation", sorted(wire.CUSTOM_LABELS_OPERATIONS))
def test_every_operation_parses_an_empty_body_or_names_what_is_required(api, operation):
    try:
        assert api.parse_request(operation, b"{}") == {}
    except errors.InvalidParameter as exc:
        assert "Member must not be null" in exc.message


def test_every_model_pattern_compiles(api):
    model = api.service_model
    patterns = {model.shape_for(n).metadata.get("pattern") for n in model.shape_names} - {None}
    assert len(patterns) > 20
    for pattern in patterns:
        wire.compile_java_pattern(pattern)


def test_java_unicode_classes_are_translated():
    tag_key = wire.compile_java_pattern(r"^(?!aws:)[\p{L}\p{Z}\p{N}_.:/=+\-@]*$")
    for good in ("Größe", "部署 1", "cost-centre:42", "٣", "a\u00a0b"):
        assert tag_key.fullmatch(good), good
    for bad in ("aws:owner", "a!b", "tab\there", "emoji\U0001f600"):
        assert not tag_key.fullmatch(bad), bad
    assert wire.compile_java_pattern(r"\P{L}+").fullmatch("123 !")
    assert not wire.compile_java_pattern(r"\P{L}+").fullmatch("1a")


def test_java_dot_and_ascii_classes_keep_java_meaning():
    # Java's "." excludes every line terminator; \d and \w are ASCII-only.
    assert not wire.compile_java_pattern(r".*\S.*").fullmatch("a\rb")
    assert wire.compile_java_pattern(r"[.]").fullmatch(".")
    assert not wire.compile_java_pattern(r"[.]").fullmatch("x")
    assert not wire.compile_java_pattern(r"\d{2}").fullmatch("٣٣")


@pytest.mark.parametrize("pattern", [r"\p{Alpha}", r"[a-z&&[^x]]", r"a\z", r"\Qa.b\E"])
def test_a_pattern_python_cannot_reproduce_fails_loudly(pattern):
    with pytest.raises(wire.ModelError):
        wire.compile_java_pattern(pattern)


# --------------------------------------------------------------------------- constraints


def test_pattern_violation_reads_like_aws(api):
    assert invalid(api, "CreateProject", {"ProjectName": "my project"}) == (
        "1 validation error detected: Value 'my project' at 'projectName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.\\-]+"
    )


def test_string_length(api):
    message = invalid(api, "CreateProject", {"ProjectName": "a" * 256})
    assert message.endswith("at 'projectName' failed to satisfy constraint: "
                            "Member must have length less than or equal to 255")
    assert parse(api, "CreateProject", {"ProjectName": "a" * 255}) == {"ProjectName": "a" * 255}


def test_empty_string_breaks_length_and_pattern(api):
    message = invalid(api, "CreateProject", {"ProjectName": ""})
    assert message.startswith("2 validation errors detected: ")
    assert "Member must have length greater than or equal to 1" in message
    assert "Member must satisfy regular expression pattern" in message


@pytest.mark.parametrize(("value", "constraint"), [
    (0, "Member must have value greater than or equal to 1"),
    (101, "Member must have value less than or equal to 100"),
])
def test_integer_range(api, value, constraint):
    assert invalid(api, "DescribeProjects", {"MaxResults": value}) == (
        f"1 validation error detected: Value '{value}' at 'maxResults' failed to satisfy constraint: {constraint}"
    )


def test_integer_range_bounds_are_inclusive(api):
    assert parse(api, "DescribeProjects", {"MaxResults": 1}) == {"MaxResults": 1}
    assert parse(api, "DescribeProjects", {"MaxResults": 100}) == {"MaxResults": 100}


def test_float_range(api):
    base = {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": "AAAA"}}
    message = invalid(api, "DetectCustomLabels", {**base, "MinConfidence": 100.5})
    assert "Value '100.5' at 'minConfidence'" in message
    assert "Member must have value less than or equal to 100" in message
    assert parse(api, "DetectCustomLabels", {**base, "MinConfidence": 0})["MinConfidence"] == 0.0


@pytest.mark.parametrize(("labels", "constraint"), [
    ([], "Member must have length greater than or equal to 1"),
    ([f"label{i}" for i in range(11)], "Member must have length less than or equal to 10"),
])
def test_list_size(api, labels, constraint):
    message = invalid(api, "ListDatasetEntries", {"DatasetArn": TRAIN_ARN, "ContainsLabels": labels})
    assert message.startswith("1 validation error detected: ")
    assert f"at 'containsLabels' failed to satisfy constraint: {constraint}" in message


@pytest.mark.parametrize("count", [1, 3])
def test_distribute_needs_exactly_two_datasets(api, count):
    datasets = [{"Arn": TRAIN_ARN}, {"Arn": TEST_ARN}, {"Arn": TEST_ARN}][:count]
    message = invalid(api, "DistributeDatasetEntries", {"Datasets": datasets})
    assert "at 'datasets' failed to satisfy constraint: Member must have length" in message
    assert parse(api, "DistributeDatasetEntries", {"Datasets": datasets[:2] if count == 3 else datasets * 2})


def test_blob_over_5_mib_is_reported_by_size_only(api):
    blob = base64.b64encode(b"x" * 5_242_881).decode()
    message = invalid(api, "UpdateDatasetEntries", {"DatasetArn": TRAIN_ARN, "Changes": {"GroundTruth": blob}})
    assert message == (
        "1 validation error detected: Value '<5242881 bytes>' at 'changes.groundTruth' failed to satisfy "
        "constraint: Member must have length less than or equal to 5242880"
    )


def test_blob_at_the_limit_is_decoded(api):
    blob = b"{}" * 2_621_440
    params = parse(api, "UpdateDatasetEntries",
                   {"DatasetArn": TRAIN_ARN, "Changes": {"GroundTruth": base64.b64encode(blob).decode()}})
    assert params["Changes"]["GroundTruth"] == blob


@pytest.mark.parametrize("bad", ["not base64!", "eyJhIjoxfQ", "eyJh\nIjoxfQ=="])
def test_bad_base64_names_the_field(api, bad):
    message = invalid(api, "UpdateDatasetEntries", {"DatasetArn": TRAIN_ARN, "Changes": {"GroundTruth": bad}})
    assert "at 'changes.groundTruth' failed to satisfy constraint: Member must be valid Base64-encoded data" in message
    assert bad not in message


def test_empty_blob_is_too_short(api):
    message = invalid(api, "UpdateDatasetEntries", {"DatasetArn": TRAIN_ARN, "Changes": {"GroundTruth": ""}})
    assert "Member must have length greater than or equal to 1" in message


def test_enum(api):
    message = invalid(api, "CreateDataset", {"ProjectArn": PROJECT_ARN, "DatasetType": "VALIDATION"})
    assert message == (
        "1 validation error detected: Value 'VALIDATION' at 'datasetType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [TRAIN, TEST]"
    )


def test_missing_required_members(api):
    message = invalid(api, "CreateProjectVersion", {"ProjectArn": PROJECT_ARN})
    assert message.startswith("2 validation errors detected: ")
    assert "Value null at 'versionName' failed to satisfy constraint: Member must not be null" in message
    assert "Value null at 'outputConfig' failed to satisfy constraint: Member must not be null" in message


def test_null_counts_as_absent(api):
    assert parse(api, "DescribeProjects", {"MaxResults": None, "NextToken": None}) == {}
    assert "Value null at 'projectName'" in invalid(api, "CreateProject", {"ProjectName": None})


def test_nested_paths_are_lower_camel_and_dotted(api):
    message = invalid(api, "CreateDataset", {
        "ProjectArn": PROJECT_ARN, "DatasetType": "TRAIN",
        "DatasetSource": {"GroundTruthManifest": {"S3Object": {"Bucket": "no spaces allowed"}}},
    })
    assert "at 'datasetSource.groundTruthManifest.s3Object.bucket' failed" in message


def test_list_items_are_numbered_from_one(api):
    message = invalid(api, "DistributeDatasetEntries", {"Datasets": [{"Arn": TRAIN_ARN}, {"Arn": "bad"}]})
    assert "Value 'bad' at 'datasets.2.member.arn' failed" in message
    message = invalid(api, "DistributeDatasetEntries", {"Datasets": [{"Arn": TRAIN_ARN}, None]})
    assert "Value null at 'datasets.2.member' failed to satisfy constraint: Member must not be null" in message


def test_map_keys_and_values(api):
    message = invalid(api, "TagResource", {"ResourceArn": PROJECT_ARN, "Tags": {"aws:owner": "me", "ok": "x" * 257}})
    assert message.startswith("2 validation errors detected: ")
    assert ("Value 'aws:owner' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: "
            "[Member must satisfy regular expression pattern: ^(?!aws:)[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*$]") in message
    assert ("at 'tags' failed to satisfy constraint: Map value must satisfy constraint: "
            "[Member must have length less than or equal to 256]") in message
    tags = {"Größe": "groß", "team": ""}
    assert parse(api, "TagResource", {"ResourceArn": PROJECT_ARN, "Tags": tags})["Tags"] == tags


def test_all_violations_are_collected(api):
    message = invalid(api, "CreateProjectVersion", {
        "ProjectArn": "arn:nope", "VersionName": "v 1",
        "OutputConfig": {"S3Bucket": "b"}, "VersionDescription": "x" * 300,
    })
    # projectArn: length and pattern; versionName: pattern; s3Bucket: length; versionDescription: length.
    assert message.startswith("5 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == 5
    for path in ("projectArn", "versionName", "outputConfig.s3Bucket", "versionDescription"):
        assert f"at '{path}'" in message


def test_many_violations_are_counted_but_only_the_first_listed(api):
    keys = [f"aws:key{i}" for i in range(150)]
    message = invalid(api, "UntagResource", {"ResourceArn": PROJECT_ARN, "TagKeys": keys})
    assert message.startswith("150 validation errors detected: ")
    assert message.count("failed to satisfy constraint") == wire.MAX_LISTED_VIOLATIONS
    assert message.endswith("; ... and 140 more")


def test_long_values_are_cut_in_messages(api):
    message = invalid(api, "CreateProject", {"ProjectName": "y" * 100_000})
    assert len(message) < 600
    assert "'" + "y" * wire.MAX_VALUE_CHARS + "...'" in message


def test_unknown_members_are_ignored_and_dropped(api):
    params = parse(api, "CreateDataset", {
        "ProjectArn": PROJECT_ARN, "DatasetType": "TEST", "FutureField": {"x": 1},
        "DatasetSource": {"DatasetArn": TRAIN_ARN, "Extra": True},
    })
    assert params == {"ProjectArn": PROJECT_ARN, "DatasetType": "TEST", "DatasetSource": {"DatasetArn": TRAIN_ARN}}


# --------------------------------------------------------------------------- types and JSON


@pytest.mark.parametrize(("params", "expected"), [
    ({"MaxResults": "5"}, "Value '5' at 'maxResults' is a string, expected an integer"),
    ({"MaxResults": True}, "Value 'true' at 'maxResults' is a boolean, expected an integer"),
    ({"MaxResults": 5.0}, "Value '5.0' at 'maxResults' is a number, expected an integer"),
    ({"MaxResults": 2**31}, "Value '2147483648' at 'maxResults' is an integer, expected an integer between"),
    ({"ProjectNames": "demo"}, "Value 'demo' at 'projectNames' is a string, expected a list"),
    ({"ProjectNames": [7]}, "Value '7' at 'projectNames.1.member' is an integer, expected a string"),
    ({"NextToken": {"a": 1}}, "Value '{a=1}' at 'nextToken' is an object, expected a string"),
])
def test_wrong_types_are_serialization_errors(api, params, expected):
    assert expected in not_deserialisable(api, "DescribeProjects", params)


def test_wrong_types_for_float_boolean_blob_and_structure(api):
    message = not_deserialisable(api, "DetectCustomLabels", {
        "ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": 12}, "MinConfidence": False,
    })
    assert message.startswith("2 serialization errors detected: ")
    assert "at 'image.bytes' is an integer, expected a base64-encoded string" in message
    assert "at 'minConfidence' is a boolean, expected a number" in message
    labeled = not_deserialisable(api, "ListDatasetEntries", {"DatasetArn": TRAIN_ARN, "Labeled": 1})
    assert "Value '1' at 'labeled' is an integer, expected a boolean" in labeled
    image = not_deserialisable(api, "DetectCustomLabels", {"ProjectVersionArn": VERSION_ARN, "Image": "x"})
    assert "Value 'x' at 'image' is a string, expected an object" in image


def test_type_errors_win_over_constraint_violations(api):
    # AWS fails deserialisation before it validates anything.
    message = not_deserialisable(api, "DescribeProjects", {"MaxResults": "5", "ProjectNames": []})
    assert "projectNames" not in message


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object, not a list"),
    (b'"text"', "must be a JSON object, not a string"),
    (b'{"MaxResults": NaN}', "NaN is not a JSON value"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b'{"MaxResults": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"NextToken": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
])
def test_bodies_that_are_not_json_objects(api, body, expected):
    assert expected in not_deserialisable(api, "DescribeProjects", body)


def test_non_finite_number_and_lone_surrogate(api):
    assert "expected a finite number" in not_deserialisable(
        api, "DetectCustomLabels",
        b'{"ProjectVersionArn": "%s", "Image": {}, "MinConfidence": 1e400}' % VERSION_ARN.encode())
    message = not_deserialisable(api, "DescribeProjects", b'{"NextToken": "\\ud800"}')
    message.encode("utf-8")  # the message itself stays encodable


def test_empty_body_is_an_empty_input(api):
    assert api.parse_request("DescribeProjects", b"") == {}


def test_unknown_operation(api):
    with pytest.raises(errors.UnknownOperation):
        api.parse_request("NoSuchOperation", b"{}")


# --------------------------------------------------------------------------- round trip with botocore


ROUND_TRIPS = [
    ("CreateProject", {"ProjectName": "demo.v2_x-1", "Feature": "CUSTOM_LABELS", "AutoUpdate": "DISABLED",
                       "Tags": {"team": "vision", "Größe": "1"}}),
    ("DescribeProjects", {"ProjectNames": ["a", "b"], "MaxResults": 100, "Features": ["CUSTOM_LABELS"]}),
    ("CreateDataset", {"ProjectArn": PROJECT_ARN, "DatasetType": "TRAIN", "DatasetSource": {
        "GroundTruthManifest": {"S3Object": {"Bucket": "my-bucket", "Name": "manifests/train 1.manifest",
                                             "Version": "3"}}}}),
    ("UpdateDatasetEntries", {"DatasetArn": TRAIN_ARN, "Changes": {
        "GroundTruth": b'{"source-ref": "s3://b/k.jpg"}\n{"source-ref": "s3://b/\xc3\xa9.jpg"}\n'}}),
    ("ListDatasetEntries", {"DatasetArn": TEST_ARN, "ContainsLabels": ["cat", "dog"], "Labeled": False,
                            "HasErrors": True, "SourceRefContains": "s3://", "MaxResults": 1}),
    ("DistributeDatasetEntries", {"Datasets": [{"Arn": TRAIN_ARN}, {"Arn": TEST_ARN}]}),
    ("CreateProjectVersion", {"ProjectArn": PROJECT_ARN, "VersionName": "v1", "OutputConfig": {
        "S3Bucket": "out-bucket", "S3KeyPrefix": "runs/"}, "TestingData": {"AutoCreate": True},
        "VersionDescription": "First try (baseline): ok?", "Tags": {"k": "v"}}),
    ("StartProjectVersion", {"ProjectVersionArn": VERSION_ARN, "MinInferenceUnits": 1, "MaxInferenceUnits": 4}),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": bytes(range(256)) * 10},
                            "MinConfidence": 55.5, "MaxResults": 0}),
    ("PutProjectPolicy", {"ProjectArn": PROJECT_ARN, "PolicyName": "p", "PolicyRevisionId": "0aF9",
                          "PolicyDocument": '{\n  "Version": "2012-10-17",\n  "Statement": []\n}'}),
    ("UntagResource", {"ResourceArn": PROJECT_ARN, "TagKeys": ["team"]}),
]


@pytest.mark.parametrize(("operation", "params"), ROUND_TRIPS, ids=[op for op, _ in ROUND_TRIPS])
def test_requests_serialised_by_botocore_parse_back_to_the_same_params(api, operation, params):
    operation_model = api.service_model.operation_model(operation)
    request = create_serializer("json").serialize_to_request(params, operation_model)
    assert request["headers"]["X-Amz-Target"] == f"{api.target_prefix}.{operation}"
    assert api.parse_request(operation, request["body"]) == params


# --------------------------------------------------------------------------- responses


def botocore_reads(api: wire.ApiModel, operation: str, body: bytes) -> dict:
    """What boto3 hands its caller for this response body."""
    output_shape = api.service_model.operation_model(operation).output_shape
    response = {"status_code": 200, "headers": {}, "body": body}
    parsed = create_parser("json").parse(response, output_shape)
    parsed.pop("ResponseMetadata", None)
    return parsed


def test_serialize_response_datetimes_none_and_unknown_members(api):
    created = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    result = {"ProjectDescriptions": [{
        "ProjectArn": PROJECT_ARN, "CreationTimestamp": created, "Status": "CREATED",
        "Feature": None, "internal_id": 7,
    }], "NextToken": None}
    body = api.serialize_response("DescribeProjects", result)
    assert json.loads(body) == {"ProjectDescriptions": [
        {"ProjectArn": PROJECT_ARN, "CreationTimestamp": created.timestamp(), "Status": "CREATED"}]}
    assert botocore_reads(api, "DescribeProjects", body)["ProjectDescriptions"][0]["CreationTimestamp"] == created


def test_naive_datetimes_are_utc(api):
    body = api.serialize_response("DescribeProjects", {"ProjectDescriptions": [
        {"ProjectArn": PROJECT_ARN, "CreationTimestamp": datetime(2026, 1, 1)}]})
    assert json.loads(body)["ProjectDescriptions"][0]["CreationTimestamp"] == 1767225600.0


def test_serialize_response_bytes_as_base64(api):
    # No Custom Labels output carries a blob; the layer is model-driven, so use one that does.
    image = bytes(range(256))
    result = {"SessionId": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "Status": "SUCCEEDED",
              "ReferenceImage": {"Bytes": image}}
    body = api.serialize_response("GetFaceLivenessSessionResults", result)
    assert json.loads(body)["ReferenceImage"]["Bytes"] == base64.b64encode(image).decode()
    assert botocore_reads(api, "GetFaceLivenessSessionResults", body)["ReferenceImage"]["Bytes"] == image


def test_serialize_response_for_an_empty_output(api):
    assert api.serialize_response("DeleteProjectPolicy", {}) == b"{}"
    assert api.serialize_response("TagResource", None) == b"{}"


def test_serialize_response_refuses_nan(api):
    with pytest.raises(ValueError):
        api.serialize_response("DetectCustomLabels", {"CustomLabels": [{"Name": "cat", "Confidence": float("nan")}]})


def test_check_response_accepts_a_valid_result(api):
    api.check_response("DescribeProjectVersions", {"ProjectVersionDescriptions": [{
        "ProjectVersionArn": VERSION_ARN, "CreationTimestamp": datetime.now(timezone.utc),
        "Status": "TRAINING_COMPLETED", "BillableTrainingTimeInSeconds": 12, "MinInferenceUnits": 1,
        "EvaluationResult": {"F1Score": 0.9, "Summary": {"S3Object": {"Bucket": "out-bucket", "Name": "s.json"}}},
        "StatusMessage": None,
    }]})


def test_check_response_catches_a_bad_enum(api):
    with pytest.raises(wire.ResponseModelError) as caught:
        api.check_response("DescribeProjectVersions", {"ProjectVersionDescriptions": [{
            "ProjectVersionArn": VERSION_ARN, "Status": "TRAINED"}]})
    assert caught.value.status == 500 and caught.value.code == "InternalServerError"
    assert "Value 'TRAINED' at 'projectVersionDescriptions.1.member.status'" in caught.value.message
    assert "Member must satisfy enum value set: [TRAINING_IN_PROGRESS" in caught.value.message


def test_check_response_catches_unknown_members_and_wrong_types(api):
    with pytest.raises(wire.ResponseModelError) as caught:
        api.check_response("DescribeDataset", {"DatasetDescription": {
            "CreationTimestamp": "yesterday", "DatasetStats": {"TotalEntries": -1}, "Labels": 3}})
    message = caught.value.message
    assert message.startswith("DescribeDataset result does not match the model: 3 errors detected: ")
    assert "'datasetDescription.labels' is not a member of DatasetDescription" in message
    assert "at 'datasetDescription.creationTimestamp' is a string, expected a datetime" in message
    assert "at 'datasetDescription.datasetStats.totalEntries'" in message
