"""SigningPipeline (spec §6) run for real by moto's Step Functions interpreter (spec §10).

The ASL file is the one the template deploys, with its ``DefinitionSubstitutions`` replaced
by the ARNs of four Lambda functions created in moto. moto's Lambda backend without Docker
(``LambdaSimpleBackend``) would echo every payload back, so its ``invoke`` is routed to the
handlers of ``functions/<name>/app.py`` in process; a raised exception answers as Lambda
does (``X-Amz-Function-Error: Unhandled``, ``{"errorType": <class name>, "errorMessage"}``)
so that the ASL's ``Retry``/``Catch`` match the error codes in PascalCase.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config

from local.authority import LocalAuthority
from local.gateway import ACCOUNT
from local.licensing import LocalLicensing
from local.pki import Issued
from local.release import HttpPusher, publish_scanner_image
from local.scanner_release import REPOSITORY
from stellaops_signer import wiring
from tests.conftest import ROOT, Aws, Release, load_event, poe_for
from tests.functions.conftest import FUNCTIONS, Handler, token_for, verify_dsse

ASL = ROOT / "statemachines" / "signing_pipeline.asl.json"
STATELINT = Path(sys.executable).with_name("statelint")  # installed beside this interpreter
MOTO_STEP_FUNCTIONS = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
EXECUTION_DEADLINE_SECONDS = 30.0
LICENCE = "LIC-A-001"
SIGN_BODY: dict[str, Any] = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
BY_LOGICAL_ID = {logical_id: name for name, logical_id in FUNCTIONS.items()}


@dataclass
class Invocation:
    function: str
    event: dict[str, Any]
    error_type: str | None = None


@dataclass
class Pipeline:
    """The deployed state machine and what its Lambda tasks were asked to do."""

    sfn: Any
    arn: str
    invocations: list[Invocation] = field(default_factory=list)

    def run(self, execution_input: dict[str, Any]) -> dict[str, Any]:
        """Start an execution and wait (bounded) for it to stop; the ``DescribeExecution`` answer."""
        execution = self.sfn.start_execution(
            stateMachineArn=self.arn, name=f"test-{uuid.uuid4()}", input=json.dumps(execution_input)
        )
        deadline = time.monotonic() + EXECUTION_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution["executionArn"])
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.05)
        pytest.fail(f"the execution still runs after {EXECUTION_DEADLINE_SECONDS} s")

    def steps(self) -> list[tuple[str, str | None]]:
        """(function, action) of each task invocation, in order."""
        return [(i.function, i.event.get("action")) for i in self.invocations]


def _in_process_invoke(handlers: dict[str, Handler], invocations: list[Invocation]) -> Callable[..., bytes]:
    """A replacement for ``LambdaSimpleBackend.invoke`` that runs the function's own handler."""

    def invoke(
        backend: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        function = backend.get_function(function_name, qualifier)  # an unknown ARN fails as in Lambda
        event = json.loads(body or "{}")
        invocation = Invocation(BY_LOGICAL_ID[function.function_name], copy.deepcopy(event))
        invocations.append(invocation)
        try:
            result: Any = handlers[invocation.function](event)
        except Exception as error:
            invocation.error_type = type(error).__name__
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": invocation.error_type, "errorMessage": str(error)}
        payload = json.dumps(result).encode()
        response_headers["Content-Length"] = str(len(payload))
        return payload

    return invoke


def _deployment_package(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.write(ROOT / "functions" / name / "app.py", "app.py")
    return buffer.getvalue()


def _definition(template: dict[str, Any], function_arns: dict[str, str]) -> str:
    """The ASL with the template's ``DefinitionSubstitutions`` (``!GetAtt <Function>.Arn``) applied."""
    definition = ASL.read_text()
    substitutions = template["Resources"]["SigningPipeline"]["Properties"]["DefinitionSubstitutions"]
    for variable, value in substitutions.items():
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn"
        definition = definition.replace(f"${{{variable}}}", function_arns[logical_id])
    assert "${" not in definition
    return definition


@pytest.fixture
def pipeline(
    aws: Aws, handlers: dict[str, Handler], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """moto as the ``aws`` fixture provisions it, plus the four functions and SigningPipeline."""
    invocations: list[Invocation] = []
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", _in_process_invoke(handlers, invocations))
    # What mock_aws(config=...) does at start; both settings are read on every request.
    with mock.patch.dict(default_user_config, MOTO_STEP_FUNCTIONS):
        globals_ = template["Globals"]["Function"]
        role = aws.client("iam").create_role(
            RoleName="SignerFunctionRole",
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        function_arns = {
            logical_id: aws.client("lambda").create_function(
                FunctionName=logical_id,
                Runtime=globals_["Runtime"],
                Handler=globals_["Handler"],
                Role=role,
                Code={"ZipFile": _deployment_package(name)},
            )["FunctionArn"]
            for name, logical_id in FUNCTIONS.items()
        }
        sfn = aws.client("stepfunctions")
        arn = sfn.create_state_machine(
            name="SigningPipeline",
            definition=_definition(template, function_arns),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/SigningPipelineRole",
            type="STANDARD",
        )["stateMachineArn"]
        yield Pipeline(sfn, arn, invocations)


def _request(**changes: Any) -> dict[str, Any]:
    request = copy.deepcopy(SIGN_BODY)
    request.update(changes)
    return request


def _input(token: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    artifact_bytes = len(json.dumps(request, separators=(",", ":")).encode())
    return {"opToken": token, "request": request, "artifactBytes": artifact_bytes, **extra}


def _usage() -> dict[str, int]:
    container = wiring.container()
    return container.quotas.usage(LICENCE, container.settings.plans["pro"])


def _error(execution: dict[str, Any]) -> tuple[str, str]:
    assert execution["status"] == "FAILED", execution
    return execution.get("error", ""), execution.get("cause", "")


def test_signing_pipeline_definition_passes_statelint() -> None:
    linted = subprocess.run([STATELINT, str(ASL)], capture_output=True, text=True, timeout=30, check=False)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_valid_input_succeeds_with_a_dsse_bundle_that_verifies(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, release: Release
) -> None:
    assert SIGN_BODY["scannerImageDigest"] == release.digest

    execution = pipeline.run(_input(token_for(authority, client_cert), _request()))

    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert set(output) == {"bundle", "policy", "auditId", "bundleSha256"}
    statement = verify_dsse(output["bundle"])
    assert statement["predicateType"] == SIGN_BODY["predicateType"]
    assert statement["subject"] == SIGN_BODY["subject"]
    assert output["bundle"]["mode"] == "kms"
    assert output["policy"]["plan"] == "pro"
    assert pipeline.steps() == [
        ("authenticate", None),
        ("check_quota", "reserve"),
        ("verify_release", None),
        ("sign_dsse", None),
    ]


def test_a_signed_execution_is_charged_once_and_frees_its_lease(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued
) -> None:
    execution = pipeline.run(_input(token_for(authority, client_cert), _request()))

    assert execution["status"] == "SUCCEEDED", execution
    assert _usage()["daily"] == 1
    assert _usage()["inFlight"] == 0


def test_execution_output_never_contains_the_op_token(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued
) -> None:
    token = token_for(authority, client_cert)

    execution = pipeline.run(_input(token, _request()))

    assert execution["status"] == "SUCCEEDED", execution
    assert token not in execution["output"]
    assert token.split(".")[2] not in execution["output"]  # not even its signature


def test_unsigned_scanner_fails_with_release_untrusted_and_gives_the_quota_back(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, release: Release
) -> None:
    unsigned = publish_scanner_image(HttpPusher(release.registry.base_url), REPOSITORY)
    token = token_for(authority, client_cert)

    execution = pipeline.run(_input(token, _request(scannerImageDigest=unsigned)))

    error, cause = _error(execution)
    assert error == "ReleaseUntrusted"
    assert json.loads(cause)["errorType"] == "ReleaseUntrusted"
    assert token not in cause
    assert pipeline.steps() == [
        ("authenticate", None),
        ("check_quota", "reserve"),
        ("verify_release", None),
        ("check_quota", "release"),
    ]
    assert pipeline.invocations[-1].error_type is None  # ReleaseQuota itself succeeded
    assert _usage()["daily"] == 0
    assert _usage()["inFlight"] == 0


def test_invalid_token_fails_with_invalid_token_before_anything_is_reserved(pipeline: Pipeline) -> None:
    # Signed by a key the local Authority never published.
    foreign = load_event("authenticate/direct.json")["opToken"]

    execution = pipeline.run(_input(foreign, _request()))

    error, cause = _error(execution)
    assert error == "InvalidToken"
    assert foreign not in cause
    assert pipeline.steps() == [("authenticate", None)]
    assert _usage()["daily"] == 0


def test_poe_of_another_tenant_fails_with_tenant_mismatch(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, licensing: LocalLicensing
) -> None:
    other_tenants = {"format": "jwt", "value": poe_for(licensing, tenant="tenant-b")}

    execution = pipeline.run(_input(token_for(authority, client_cert), _request(poe=other_tenants)))

    error, _ = _error(execution)
    assert error == "TenantMismatch"
    assert pipeline.steps() == [("authenticate", None), ("check_quota", "reserve")]
    assert _usage()["daily"] == 0


def test_tenant_other_than_the_tokens_fails_with_tenant_mismatch(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued
) -> None:
    execution = pipeline.run(_input(token_for(authority, client_cert), _request(), tenant="tenant-b"))

    assert execution["status"] == "FAILED", "a tenant-b execution with a tenant-a token was signed"
    assert execution["error"] == "TenantMismatch"


def test_a_retry_with_the_same_idempotency_key_is_not_charged_again(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued
) -> None:
    execution_input = _input(token_for(authority, client_cert), _request(), idempotencyKey="pipeline-retry-1")
    first = pipeline.run(execution_input)
    again = pipeline.run(execution_input)

    assert first["status"] == again["status"] == "SUCCEEDED", (first, again)
    assert json.loads(again["output"]) == json.loads(first["output"])
    assert _usage()["daily"] == 1
    assert _usage()["inFlight"] == 0


def test_a_result_larger_than_200_kib_is_carried_as_an_s3_reference(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, aws: Aws
) -> None:
    predicate = {**SIGN_BODY["predicate"], "notes": "x" * 160 * 1024}

    execution = pipeline.run(_input(token_for(authority, client_cert), _request(predicate=predicate)))

    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    reference = output.get("result", output)
    assert set(reference) == {"s3Uri", "sha256", "size"}, f"{len(execution['output'])} bytes inline"
    bucket, key = reference["s3Uri"].removeprefix("s3://").split("/", 1)
    stored = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert (hashlib.sha256(stored).hexdigest(), len(stored)) == (reference["sha256"], reference["size"])
    verify_dsse(json.loads(stored)["bundle"])
