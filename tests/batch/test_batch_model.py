"""Batch shapes: validation tables, and the JSON form checked against botocore's own model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import botocore
import msgspec
import pytest

from runtime.batch import model as M
from runtime.batch.model import (
    ClientException,
    RegisterJobDefinitionRequest,
    SubmitJobRequest,
    check_register,
    check_submit,
    parse,
)

BATCH_MODEL = Path(botocore.__file__).parent / "data" / "batch" / "2016-08-10" / "service-2.json"


def _botocore_shapes() -> dict[str, Any]:
    plain = BATCH_MODEL
    if plain.exists():
        return json.loads(plain.read_text())["shapes"]  # type: ignore[no-any-return]
    with gzip.open(f"{plain}.gz") as f:
        return json.load(f)["shapes"]  # type: ignore[no-any-return]


def register(**fields: Any) -> RegisterJobDefinitionRequest:
    data = {
        "jobDefinitionName": "def",
        "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"]},
        **fields,
    }
    return check_register(parse(RegisterJobDefinitionRequest, data))


def submit(**fields: Any) -> SubmitJobRequest:
    data = {"jobName": "job", "jobQueue": "q", "jobDefinition": "def", **fields}
    return check_submit(parse(SubmitJobRequest, data))


def test_client_exception_is_named_like_batch() -> None:
    err = ClientException("nope")
    assert (err.code, err.status, err.message) == ("ClientException", 400, "nope")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("Job_1-x", True),
        ("9lives", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-leading", False),
        ("_leading", False),
        ("has space", False),
        ("dot.ted", False),
    ],
)
def test_job_names(name: str, ok: bool) -> None:
    if ok:
        assert submit(jobName=name).job_name == name
    else:
        with pytest.raises(ClientException, match="jobName"):
            submit(jobName=name)


@pytest.mark.parametrize(
    ("name", "ok"),
    [("d", True), ("_under", True), ("x" * 128, True), ("x" * 129, False), ("a:b", False)],
)
def test_definition_names(name: str, ok: bool) -> None:
    if ok:
        assert register(jobDefinitionName=name).job_definition_name == name
    else:
        with pytest.raises(ClientException, match="jobDefinitionName"):
            register(jobDefinitionName=name)


REGISTER_ERRORS = [
    ({"type": "multinode"}, "not supported"),
    ({"containerProperties": None}, "containerProperties is required"),
    ({"containerProperties": {"command": ["x"]}}, "image is required"),
    ({"parameters": {"warmstart:function": "fn"}}, "not both"),
    ({"containerProperties": None, "parameters": {"warmstart:function": "a b"}}, "function name"),
    ({"timeout": {"attemptDurationSeconds": 59}}, "minimum of 60"),
    ({"retryStrategy": {"attempts": 0}}, "between 1 and 10"),
    ({"retryStrategy": {"attempts": 11}}, "between 1 and 10"),
    ({"retryStrategy": {"evaluateOnExit": [{"action": "EXIT"}]}}, "attempts is required"),
    (
        {"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "EXIT"}] * 6}},
        "up to 5 rules",
    ),
    ({"retryStrategy": {"attempts": 2, "evaluateOnExit": [{"action": "STOP"}]}}, "RETRY or EXIT"),
    (
        {
            "retryStrategy": {
                "attempts": 2,
                "evaluateOnExit": [{"action": "EXIT", "onExitCode": "1a"}],
            }
        },
        "onExitCode",
    ),
    (
        {
            "retryStrategy": {
                "attempts": 2,
                "evaluateOnExit": [{"action": "EXIT", "onExitCode": "1*2"}],
            }
        },
        "onExitCode",
    ),
    (
        {
            "retryStrategy": {
                "attempts": 2,
                "evaluateOnExit": [{"action": "EXIT", "onReason": "a(b)"}],
            }
        },
        "onReason",
    ),
    (
        {
            "retryStrategy": {
                "attempts": 2,
                "evaluateOnExit": [{"action": "EXIT", "onReason": "a*b"}],
            }
        },
        "onReason",
    ),
    (
        {
            "retryStrategy": {
                "attempts": 2,
                "evaluateOnExit": [{"action": "EXIT", "onStatusReason": "x" * 513}],
            }
        },
        "up to 512",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "environment": [{"name": "AWS_BATCH_X", "value": "1"}],
            }
        },
        "reserved",
    ),
    ({"containerProperties": {"image": "i", "environment": [{"value": "1"}]}}, "needs a name"),
    ({"containerProperties": {"image": "i", "vcpus": 0}}, "at least 1"),
    ({"containerProperties": {"image": "i", "memory": 3}}, "at least 4"),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "TPU", "value": "1"}],
            }
        },
        "unknown type",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "VCPU", "value": "1"}] * 2,
            }
        },
        "twice",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "VCPU", "value": "x"}],
            }
        },
        "not a number",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "VCPU", "value": "0"}],
            }
        },
        "greater than 0",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "MEMORY", "value": "2"}],
            }
        },
        "at least 4",
    ),
    (
        {
            "containerProperties": {
                "image": "i",
                "resourceRequirements": [{"type": "GPU", "value": "0.5"}],
            }
        },
        "not a number",
    ),
    ({"tags": {f"k{i}": "v" for i in range(51)}}, "at most 50"),
    ({"tags": {"aws:owner": "me"}}, "reserved"),
    ({"tags": {"k": "v" * 257}}, "up to 256"),
]


@pytest.mark.parametrize(("fields", "message"), REGISTER_ERRORS)
def test_register_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientException, match=message):
        register(**fields)  # a None replaces the default field: no containerProperties


@pytest.mark.parametrize(
    ("rule", "normalized"),
    [
        ({"action": "retry", "onExitCode": "1*"}, "RETRY"),
        ({"action": "Exit", "onReason": "CannotPull*"}, "EXIT"),
        ({"action": "EXIT", "onStatusReason": "Host EC2*"}, "EXIT"),
        ({"action": "RETRY", "onExitCode": "*"}, "RETRY"),
        ({"action": "RETRY", "onReason": "Out of memory: task. 1"}, "RETRY"),
        ({"action": "RETRY", "onStatusReason": "tab\there"}, "RETRY"),
    ],
)
def test_retry_rules_accepted_and_action_normalized(rule: dict[str, str], normalized: str) -> None:
    req = register(retryStrategy={"attempts": 3, "evaluateOnExit": [rule]})
    assert req.retry_strategy is not None
    assert req.retry_strategy.evaluate_on_exit is not None
    assert req.retry_strategy.evaluate_on_exit[0].action == normalized


def test_function_definition_needs_no_container() -> None:
    req = register(containerProperties=None, parameters={"warmstart:function": "resize"})
    assert req.container_properties is None


SUBMIT_ERRORS = [
    ({"arrayProperties": {"size": 1}}, "between 2 and 10000"),
    ({"arrayProperties": {"size": 10_001}}, "between 2 and 10000"),
    ({"dependsOn": [{"jobId": f"j{i}"} for i in range(21)]}, "at most 20"),
    ({"dependsOn": [{"type": "SEQUENTIAL"}]}, "jobId is required"),
    ({"dependsOn": [{}]}, "jobId is required"),
    ({"dependsOn": [{"jobId": "a", "type": "N_TO_N"}]}, "needs an array job"),
    ({"dependsOn": [{"jobId": "a", "type": "ALL"}]}, "N_TO_N or SEQUENTIAL"),
    ({"parameters": {"warmstart:function": "other"}}, "job definition only"),
    ({"parameters": {"": "x"}}, "cannot be empty"),
    ({"timeout": {"attemptDurationSeconds": 10}}, "minimum of 60"),
    ({"retryStrategy": {"attempts": 12}}, "between 1 and 10"),
    (
        {"containerOverrides": {"environment": [{"name": "AWS_BATCH_JOB_ID", "value": "x"}]}},
        "reserved",
    ),
    ({"containerOverrides": {"memory": 1}}, "at least 4"),
]


@pytest.mark.parametrize(("fields", "message"), SUBMIT_ERRORS)
def test_submit_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientException, match=message):
        submit(**fields)


def test_sequential_without_job_id_is_fine_for_an_array() -> None:
    req = submit(arrayProperties={"size": 4}, dependsOn=[{"type": "SEQUENTIAL"}])
    assert req.depends_on == [M.JobDependency(type="SEQUENTIAL")]


def test_parse_type_errors_name_the_field() -> None:
    with pytest.raises(ClientException, match=r"retryStrategy\.attempts"):
        parse(
            SubmitJobRequest,
            {
                "jobName": "j",
                "jobQueue": "q",
                "jobDefinition": "d",
                "retryStrategy": {"attempts": "three"},
            },
        )
    with pytest.raises(ClientException, match="jobQueue"):
        parse(SubmitJobRequest, {"jobName": "j", "jobDefinition": "d"})


def test_unmodeled_api_fields_are_ignored() -> None:
    req = parse(
        SubmitJobRequest,
        {
            "jobName": "j",
            "jobQueue": "q",
            "jobDefinition": "d",
            "shareIdentifier": "x",
            "schedulingPriorityOverride": 3,
        },
    )
    assert req.job_name == "j"


def test_json_form_is_camel_case_without_absent_fields() -> None:
    req = register(retryStrategy={"attempts": 2}, timeout={"attemptDurationSeconds": 60})
    data = msgspec.to_builtins(req)
    assert data == {
        "jobDefinitionName": "def",
        "type": "container",
        "containerProperties": {"image": "busybox", "command": ["true"]},
        "retryStrategy": {"attempts": 2},
        "timeout": {"attemptDurationSeconds": 60},
    }


# every API shape the service will encode, and its name in botocore's model
SHAPES = {
    M.KeyValuePair: "KeyValuePair",
    M.ResourceRequirement: "ResourceRequirement",
    M.ContainerProperties: "ContainerProperties",
    M.ContainerOverrides: "ContainerOverrides",
    M.EvaluateOnExit: "EvaluateOnExit",
    M.RetryStrategy: "RetryStrategy",
    M.JobTimeout: "JobTimeout",
    M.ArrayProperties: "ArrayProperties",
    M.JobDependency: "JobDependency",
    M.ComputeEnvironmentOrder: "ComputeEnvironmentOrder",
    M.RegisterJobDefinitionRequest: "RegisterJobDefinitionRequest",
    M.RegisterJobDefinitionResponse: "RegisterJobDefinitionResponse",
    M.JobDefinition: "JobDefinition",
    M.CreateJobQueueRequest: "CreateJobQueueRequest",
    M.CreateJobQueueResponse: "CreateJobQueueResponse",
    M.UpdateJobQueueRequest: "UpdateJobQueueRequest",
    M.JobQueueDetail: "JobQueueDetail",
    M.SubmitJobRequest: "SubmitJobRequest",
    M.SubmitJobResponse: "SubmitJobResponse",
    M.AttemptContainerDetail: "AttemptContainerDetail",
    M.AttemptDetail: "AttemptDetail",
    M.ContainerDetail: "ContainerDetail",
    M.ArrayPropertiesDetail: "ArrayPropertiesDetail",
    M.JobDetail: "JobDetail",
    M.ContainerSummary: "ContainerSummary",
    M.ArrayPropertiesSummary: "ArrayPropertiesSummary",
    M.JobSummary: "JobSummary",
}


@pytest.mark.parametrize("shape", list(SHAPES), ids=lambda s: s.__name__)
def test_fields_are_botocore_members(shape: type[msgspec.Struct]) -> None:
    """The JSON names of every modeled field exist in botocore's shape of the same name, and
    every field botocore requires is modeled."""
    botocore_shape = _botocore_shapes()[SHAPES[shape]]
    members = set(botocore_shape["members"])
    names = {field.encode_name for field in msgspec.structs.fields(shape)}
    assert names <= members, names - members
    assert set(botocore_shape.get("required", ())) <= names


def test_job_statuses_match_botocore() -> None:
    shapes = _botocore_shapes()
    assert list(M.JOB_STATUSES) == shapes["JobStatus"]["enum"]
    assert sorted((M.RETRY, M.EXIT)) == sorted(shapes["RetryAction"]["enum"])
    assert sorted((M.N_TO_N, M.SEQUENTIAL)) == sorted(shapes["ArrayJobDependency"]["enum"])


def test_arns() -> None:
    assert M.job_definition_arn("eu-west-1", "123456789012", "d", 3) == (
        "arn:aws:batch:eu-west-1:123456789012:job-definition/d:3"
    )
    assert M.job_queue_arn("r", "a", "q") == "arn:aws:batch:r:a:job-queue/q"
    assert M.job_arn("r", "a", "x") == "arn:aws:batch:r:a:job/x"
