"""A scanner registry answering garbage, through the real handlers (spec §3.6, §5.3, §8): the
release check is ``502 release_unverifiable`` in problem+json, never a 500; a signing request it
refuses gives back its quota and leaves a deny audit record.

The session's release registry answers garbage for the referrers of a freshly published image
only (no verdict is cached for it), and only for the duration of one test."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from local.registry import OCI_INDEX
from local.release import HttpPusher, publish_scanner_image
from stellaops_signer import wiring
from tests.conftest import load_event
from tests.functions.conftest import response_headers, sign_event

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
LICENCE = "LIC-A-001"

GARBAGE = {
    "truncated": b'{"schemaVersion": 2, "manifests": [',
    "manifests-an-object": b'{"schemaVersion": 2, "manifests": {"digest": "sha256:"}}',
    "descriptor-without-digest": (
        b'{"manifests": [{"artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}]}'
    ),
    "html": b"<html><body>Bad Gateway</body></html>",
}


@pytest.fixture(params=sorted(GARBAGE))
def garbage_referrers(release: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new image whose referrers the release registry answers with garbage; the digest."""
    digest = publish_scanner_image(HttpPusher(release.registry.base_url), "stellaops/scanner")
    path = f"/v2/stellaops/scanner/referrers/{digest}"
    release.registry.overrides[path] = (200, {"Content-Type": OCI_INDEX}, GARBAGE[request.param])
    try:
        yield digest
    finally:
        del release.registry.overrides[path]


def _referrers_fetched(release: Any, digest: str) -> int:
    requests: list[tuple[str, str]] = release.registry.requests
    return requests.count(("GET", f"/v2/stellaops/scanner/referrers/{digest}"))


def _problem(answer: dict[str, Any]) -> dict[str, Any]:
    assert response_headers(answer)["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(answer["body"])
    return body


def test_verify_answers_502_release_unverifiable_when_the_registry_answers_garbage(
    aws: Any, handlers: Any, release: Any, garbage_referrers: str
) -> None:
    event = copy.deepcopy(load_event("verify_release/verify-referrers.json"))
    event["queryStringParameters"] = {"digest": garbage_referrers}
    event["multiValueQueryStringParameters"] = {"digest": [garbage_referrers]}
    answer = handlers["verify_release"](event)
    body = _problem(answer)
    assert (answer["statusCode"], body["status"], body["code"]) == (502, 502, "release_unverifiable")
    assert body["type"].endswith("release_unverifiable")
    assert _referrers_fetched(release, garbage_referrers) == 1
    [record] = aws.audit_records()
    assert (record["decision"], record["error_code"]) == ("deny", "release_unverifiable")


def test_sign_answers_502_gives_back_the_quota_and_audits_when_the_registry_answers_garbage(
    aws: Any, handlers: Any, release: Any, garbage_referrers: str
) -> None:
    answer = handlers["sign_dsse"](sign_event({**BODY, "scannerImageDigest": garbage_referrers}))
    body = _problem(answer)
    assert (answer["statusCode"], body["code"]) == (502, "release_unverifiable")
    assert "bundle" not in body and "dsse" not in body
    assert _referrers_fetched(release, garbage_referrers) == 1  # checked after the reservation
    container = wiring.container()
    usage = container.quotas.usage(LICENCE, container.settings.plans["pro"])
    assert usage == {"qps": 0, "daily": 0, "inFlight": 0}
    [record] = aws.audit_records()
    assert (record["decision"], record["error_code"]) == ("deny", "release_unverifiable")
    assert record["scanner_digest"] == garbage_referrers
