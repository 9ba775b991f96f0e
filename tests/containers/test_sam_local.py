"""``sam local invoke`` of every function with every event file, in containers, against moto (spec §7)."""

from __future__ import annotations

from typing import Any

import pytest

from local.sam_local import FUNCTIONS, event_files
from tests.containers.conftest import answer_body
from tests.functions.conftest import verify_dsse

pytestmark = pytest.mark.containers


def invocation(sam_local: dict[str, Any], event: str) -> dict[str, Any]:
    """The one invocation of ``event``."""
    found: list[dict[str, Any]] = [i for i in sam_local["invocations"] if i["event"] == event]
    assert len(found) == 1, event
    return found[0]


def test_every_function_was_invoked_with_both_shapes(sam_local: dict[str, Any]) -> None:
    invoked = {(i["function"], i["shape"]) for i in sam_local["invocations"]}
    assert invoked == {(f, shape) for f in FUNCTIONS.values() for shape in ("api", "direct")}
    assert [i["event"] for i in sam_local["invocations"]] == event_files()


@pytest.mark.parametrize("event", event_files())
def test_each_invoke_answers_as_its_event_expects(sam_local: dict[str, Any], event: str) -> None:
    found = invocation(sam_local, event)
    expected = (
        "ok" if event.endswith("direct.json") else "Allow" if event.startswith("authenticate/") else "200"
    )
    assert found["function"] == FUNCTIONS[event.split("/")[0]]
    assert found["status"] == expected, f"{found['status']}: {found['detail']}\n{found['logs'][-2000:]}"


def test_the_authorizer_allows_the_fresh_mtls_token(sam_local: dict[str, Any]) -> None:
    answer = invocation(sam_local, "authenticate/authorizer-sign-mtls.json")["answer"]
    assert answer["context"]["tid"] == "tenant-a" and answer["context"]["binding"] == "mtls"


def test_the_api_signature_verifies_against_the_bundles_key(sam_local: dict[str, Any]) -> None:
    body = answer_body(invocation(sam_local, "sign_dsse/sign-dsse.json"))
    statement = verify_dsse(body["bundle"])  # cryptography, against the bundle's public key
    assert statement["predicateType"] == "stella.ops/report@v1"
    assert statement["subject"][0]["name"] == "scan/report.json"


def test_the_direct_signature_verifies_too(sam_local: dict[str, Any]) -> None:
    verify_dsse(invocation(sam_local, "sign_dsse/direct.json")["answer"]["bundle"])


def test_the_keys_answer_publishes_the_signing_key(sam_local: dict[str, Any]) -> None:
    signed = answer_body(invocation(sam_local, "sign_dsse/sign-dsse.json"))["bundle"]
    keys = answer_body(invocation(sam_local, "sign_dsse/keys.json"))["keys"]
    assert signed["dsse"]["signatures"][0]["keyid"] in {k["keyid"] for k in keys}


def test_the_release_was_verified_in_a_container_against_the_registry(sam_local: dict[str, Any]) -> None:
    # The API event is the first release check of the run: no cached verdict, the registry over TLS.
    verdict = answer_body(invocation(sam_local, "verify_release/verify-referrers.json"))
    assert verdict["trusted"] is True and verdict["source"] == "referrers" and verdict["cached"] is False
    assert verdict["releaseVersion"] == "2.4.1 (2027.06)"
    assert sam_local["facts"]["registryRequests"] > 0
    direct = invocation(sam_local, "verify_release/direct.json")["answer"]["verdict"]
    assert direct["trusted"] is True and direct["cached"] is True


def test_the_quota_answer_and_the_reservation_name_the_licence(sam_local: dict[str, Any]) -> None:
    body = answer_body(invocation(sam_local, "check_quota/quota.json"))
    assert body["plan"] == "pro" and body["licenseId"] == "LIC-A-001"
    reservation = invocation(sam_local, "check_quota/direct.json")["answer"]["reservation"]
    assert reservation["license_id"] == "LIC-A-001" and reservation["mac"]


def test_each_function_ran_in_a_python_312_container(sam_local: dict[str, Any]) -> None:
    for found in sam_local["invocations"]:
        assert "Invoking app.lambda_handler (python3.12)" in found["logs"]
        assert "SAM_CONTAINER_ID:" in found["logs"], found["event"]
        assert found["function_ms"] is not None, found["event"]  # the emulator's REPORT line
