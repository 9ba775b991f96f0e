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
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.dynamodb.models import DynamoDBBackend

from local.authority import LocalAuthority
from local.gateway import ACCOUNT
from local.licensing import LocalLicensing
from local.pipeline import ASL, MOTO_STEP_FUNCTIONS, Invocation, deploy, in_process_invoke
from local.pki import Issued
from local.release import HttpPusher, publish_scanner_image
from local.scanner_release import REPOSITORY
from stellaops_signer import wiring
from tests.conftest import Aws, Release, load_event, poe_for
from tests.functions.conftest import Handler, token_for, verify_dsse
from tests.moto_server import serialised

STATELINT = Path(sys.executable).with_name("statelint")  # installed beside this interpreter
EXECUTION_DEADLINE_SECONDS = 30.0
LICENCE = "LIC-A-001"
SIGN_BODY: dict[str, Any] = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])


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


@pytest.fixture
def pipeline(
    aws: Aws, handlers: dict[str, Handler], template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """moto as the ``aws`` fixture provisions it, plus the four functions and SigningPipeline."""
    invocations: list[Invocation] = []
    monkeypatch.setattr(LambdaSimpleBackend, "invoke", in_process_invoke(handlers, invocations))
    # A Map state runs its items in threads; moto's item writes are not atomic (DynamoDB's are): one
    # at a time, as in tests/moto_server.py, so that a race is the Signer's and not moto's.
    lock = threading.RLock()
    for name in ("get_item", "put_item", "update_item", "delete_item", "transact_write_items"):
        monkeypatch.setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name), lock))
    # What mock_aws(config=...) does at start; both settings are read on every request.
    with mock.patch.dict(default_user_config, MOTO_STEP_FUNCTIONS):
        arn = deploy(aws.session, template, ACCOUNT)
        sfn = aws.client("stepfunctions")
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


# --- batches (spec §6: many artifacts, a Map state, one result or one typed error per item) -------


def _item(request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "request": request,
        "artifactBytes": len(json.dumps(request, separators=(",", ":")).encode()),
        **extra,
    }


def _fetched(aws: Aws, reference: dict[str, Any]) -> dict[str, Any]:
    """A result by reference, read back and checked against its SHA-256 and size (as a consumer must)."""
    bucket, key = reference["s3Uri"].removeprefix("s3://").split("/", 1)
    stored = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert (hashlib.sha256(stored).hexdigest(), len(stored)) == (reference["sha256"], reference["size"])
    result: dict[str, Any] = json.loads(stored)
    return result


def test_a_batch_of_mixed_items_gives_one_result_or_one_typed_error_per_item(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, release: Release, aws: Aws
) -> None:
    unsigned = publish_scanner_image(HttpPusher(release.registry.base_url), REPOSITORY)
    valid = [
        _item(_request(subject=[{"name": f"a{i}.txt", "digest": {"sha256": f"{i:x}" * 64}}]))
        for i in range(7)
    ]
    untrusted = _item(_request(scannerImageDigest=unsigned))
    too_large = {**_item(_request()), "artifactBytes": 10_485_761}  # over the pro plan's maxArtifactBytes
    bad_subject = _item(_request(subject=[{"name": "x", "digest": {"md5": "0" * 32}}]))
    items = [*valid[:3], untrusted, *valid[3:5], too_large, valid[5], bad_subject, valid[6]]
    started = time.monotonic()

    execution = pipeline.run({"opToken": token_for(authority, client_cert), "requests": items})

    elapsed = time.monotonic() - started
    assert execution["status"] == "SUCCEEDED", execution
    results = json.loads(execution["output"])["results"]
    assert len(results) == 10
    errors = {i: r["error"] for i, r in enumerate(results) if "error" in r}
    assert errors == {3: "ReleaseUntrusted", 6: "ArtifactTooLarge", 8: "InvalidRequest"}, [
        r["cause"][:300] for r in results if "error" in r
    ]
    signed = [_fetched(aws, r["result"]) for r in results if "result" in r]
    assert [verify_dsse(s["bundle"])["subject"][0]["name"] for s in signed] == [f"a{i}.txt" for i in range(7)]
    assert _usage()["daily"] == 7 and _usage()["inFlight"] == 0  # the failed items gave theirs back
    signing = [r for r in aws.audit_records() if r["route"] == "pipeline:SignDsse"]
    assert sorted(r["decision"] for r in signing) == ["allow"] * 7 + ["deny"]  # (the bad subject)
    verdicts = [r["decision"] for r in aws.audit_records() if r["route"] == "pipeline:VerifyRelease"]
    assert sorted(verdicts) == ["allow"] * 8 + ["deny"]  # (the untrusted scanner)
    per_item = len(pipeline.invocations) / len(items)
    print(f"\nbatch of 10 under moto: {elapsed:.2f} s, {per_item:.1f} Lambda invocations per item")


def test_a_batch_over_one_hundred_items_is_refused_before_anything_runs(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued
) -> None:
    items = [_item(_request())] * 101
    execution = pipeline.run({"opToken": token_for(authority, client_cert), "requests": items})
    assert (execution["status"], execution.get("error")) == ("FAILED", "InvalidRequest")
    assert pipeline.invocations == []


def test_a_batch_with_a_foreign_token_fails_every_item_and_charges_nothing(pipeline: Pipeline) -> None:
    foreign = load_event("authenticate/direct.json")["opToken"]
    execution = pipeline.run({"opToken": foreign, "requests": [_item(_request())] * 2})
    assert execution["status"] == "SUCCEEDED", execution
    assert [r["error"] for r in json.loads(execution["output"])["results"]] == ["InvalidToken"] * 2
    assert _usage()["daily"] == 0


def test_a_throttled_step_is_retried_and_then_signs(
    pipeline: Pipeline,
    authority: LocalAuthority,
    client_cert: Issued,
    handlers: dict[str, Handler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GIVEN CheckQuota answers PlanThrottled once WHEN the pipeline runs THEN its Retry signs anyway."""
    from stellaops_signer.domain.errors import PlanThrottled

    real, calls = handlers["check_quota"], []

    def throttled_once(event: dict[str, Any]) -> Any:
        calls.append(event.get("action"))
        if calls.count("reserve") == 1 and event.get("action") == "reserve":
            raise PlanThrottled("the plan's requests per second are used up")
        return real(event)

    monkeypatch.setitem(handlers, "check_quota", throttled_once)
    execution = pipeline.run(_input(token_for(authority, client_cert), _request()))
    assert execution["status"] == "SUCCEEDED", execution
    assert [s for s in pipeline.steps() if s[0] == "check_quota"] == [("check_quota", "reserve")] * 2
    assert _usage()["daily"] == 1


@pytest.mark.parametrize("name", ["single.json", "batch.json"])
def test_the_example_execution_inputs_run(
    pipeline: Pipeline, authority: LocalAuthority, client_cert: Issued, licensing: LocalLicensing, name: str
) -> None:
    """events/signing_pipeline/*.json, with a fresh token and PoE (the shipped ones are examples)."""
    execution_input = load_event(f"signing_pipeline/{name}")
    execution_input["opToken"] = token_for(authority, client_cert)
    poe = {"format": "jwt", "value": poe_for(licensing)}
    for item in execution_input.get("requests", [execution_input]):
        item["request"]["poe"] = poe
    execution = pipeline.run(execution_input)
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert (
        all("result" in r for r in output["results"]) if "requests" in execution_input else "bundle" in output
    )
