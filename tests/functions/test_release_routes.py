"""The release check through the real handlers: ``GET /verify/referrers`` (§3.3) and the
refusals of ``POST /sign/dsse`` before any signature exists (403 release_untrusted, 502
release_unverifiable)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from local.release import HttpPusher, publish_scanner_image, publish_signature
from stellaops_signer.domain.errors import ReleaseUntrusted, ReleaseUnverifiable
from tests.conftest import load_event
from tests.functions.conftest import sign_event, token_for

BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
CONTEXT = load_event("sign_dsse/sign-dsse.json")["requestContext"]["authorizer"]


def _verify(
    handlers: Any, query: dict[str, str] | None, context: dict[str, Any] | None = None
) -> tuple[int, Any]:
    event = copy.deepcopy(load_event("verify_release/verify-referrers.json"))
    event["queryStringParameters"] = query
    if context is not None:
        event["requestContext"]["authorizer"] = context
    answer = handlers["verify_release"](event)
    return answer["statusCode"], json.loads(answer["body"])


@pytest.fixture
def unsigned_digest(release: Any) -> str:
    return publish_scanner_image(HttpPusher(release.registry.base_url), "stellaops/scanner")


@pytest.fixture
def registry_down(release: Any) -> Iterator[None]:
    release.registry.fail_status = 503
    yield
    release.registry.fail_status = None


def test_verify_answers_a_trusted_release_with_its_version(aws: Any, handlers: Any, release: Any) -> None:
    status, body = _verify(handlers, {"digest": release.digest})
    assert status == 200
    assert body == {
        "digest": release.digest,
        "trusted": True,
        "repository": release.repository,
        "releaseSigner": release.key.keyid,
        "releaseVersion": "2.4.1 (2027.06)",
        "releaseYear": 2027,
        "source": "referrers",
        "cached": False,
    }
    again = _verify(handlers, {"digest": release.digest})[1]
    assert again["cached"] is True


def test_verify_answers_an_unsigned_image_as_untrusted_with_a_reason(
    aws: Any, handlers: Any, unsigned_digest: str
) -> None:
    status, body = _verify(handlers, {"digest": unsigned_digest})
    assert status == 200 and body["trusted"] is False and "no signature" in body["reason"]
    [record] = aws.audit_records()
    assert record["decision"] == "deny" and record["error_code"] == "release_untrusted"


def test_verify_answers_502_when_the_registry_fails(
    aws: Any, handlers: Any, release: Any, registry_down: None
) -> None:
    status, body = _verify(handlers, {"digest": release.digest})
    assert status == 502 and body["code"] == "release_unverifiable"


@pytest.mark.parametrize("query", [None, {"digest": "sha256:xyz"}, {"digest": "sha512:" + "a" * 128}])
def test_verify_refuses_a_missing_or_malformed_digest(aws: Any, handlers: Any, query: Any) -> None:
    status, body = _verify(handlers, query)
    assert status == 400 and body["code"] == "invalid_request"


def test_verify_refuses_a_repository_outside_the_allow_list(aws: Any, handlers: Any, release: Any) -> None:
    status, body = _verify(
        handlers, {"digest": release.digest, "repository": "registry.evil.example/scanner"}
    )
    assert status == 400 and body["code"] == "invalid_request"


@pytest.mark.parametrize(
    "path",
    [
        "Stella Ops",
        "UPPER/scanner",
        "sc\u00e4nner",
        "a/../b",
        "a/./b",
        "a?c",
        "a#d",
        "a//b",
        "a/",
        "-a",
        "a" * 256,
    ],
)
def test_verify_refuses_a_repository_path_outside_the_oci_name_grammar(
    aws: Any, handlers: Any, release: Any, path: str
) -> None:
    registry = release.repository.partition("/")[0]
    status, body = _verify(handlers, {"digest": release.digest, "repository": f"{registry}/{path}"})
    assert status == 400 and body["code"] == "invalid_request", body
    [record] = aws.audit_records()
    assert record["decision"] == "deny" and record["error_code"] == "invalid_request"


def test_verify_accepts_the_verify_scope_and_refuses_others(aws: Any, handlers: Any, release: Any) -> None:
    assert _verify(handlers, {"digest": release.digest}, {**CONTEXT, "scope": "signer.verify"})[0] == 200
    status, body = _verify(handlers, {"digest": release.digest}, {**CONTEXT, "scope": "signer.admin"})
    assert status == 403 and body["code"] == "insufficient_scope"


def test_sign_refuses_a_scanner_that_is_not_a_signed_release(
    aws: Any, handlers: Any, unsigned_digest: str
) -> None:
    answer = handlers["sign_dsse"](sign_event({**BODY, "scannerImageDigest": unsigned_digest}))
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body["code"]) == (403, "release_untrusted")
    assert "bundle" not in body
    [record] = aws.audit_records()
    assert record["decision"] == "deny" and record["error_code"] == "release_untrusted"


def test_sign_refuses_a_scanner_signed_by_another_key(aws: Any, handlers: Any, release: Any) -> None:
    from local.release import ReleaseKey

    pusher = HttpPusher(release.registry.base_url)
    digest = publish_scanner_image(pusher, "stellaops/scanner")
    publish_signature(
        pusher,
        release.repository,
        "stellaops/scanner",
        digest,
        ReleaseKey.generate(),
        version="2.4.1 (2027.06)",
        mode="referrers",
    )
    answer = handlers["sign_dsse"](sign_event({**BODY, "scannerImageDigest": digest}))
    assert answer["statusCode"] == 403 and json.loads(answer["body"])["code"] == "release_untrusted"


def test_sign_answers_502_when_the_registry_fails(aws: Any, handlers: Any, registry_down: None) -> None:
    answer = handlers["sign_dsse"](sign_event(BODY))
    assert answer["statusCode"] == 502 and json.loads(answer["body"])["code"] == "release_unverifiable"


def test_a_warm_signature_costs_no_registry_call(aws: Any, handlers: Any, release: Any) -> None:
    assert handlers["sign_dsse"](sign_event(BODY))["statusCode"] == 200
    calls = len(release.registry.requests)
    for _ in range(3):
        assert handlers["sign_dsse"](sign_event(BODY))["statusCode"] == 200
    assert len(release.registry.requests) == calls


def test_direct_invocation_raises_typed_release_errors(
    aws: Any, handlers: Any, authority: Any, client_cert: Any, release: Any, unsigned_digest: str
) -> None:
    token = token_for(authority, client_cert)
    assert handlers["verify_release"]({"opToken": token, "digest": release.digest})["verdict"]["trusted"]
    with pytest.raises(ReleaseUntrusted):
        handlers["verify_release"]({"opToken": token, "digest": unsigned_digest})
    release.registry.fail_status = 503
    try:
        with pytest.raises(ReleaseUnverifiable):
            handlers["verify_release"]({"opToken": token, "digest": "sha256:" + "c" * 64})
    finally:
        release.registry.fail_status = None


def test_keys_publish_the_trusted_release_keys(aws: Any, handlers: Any, release: Any) -> None:
    keys = json.loads(handlers["sign_dsse"](load_event("sign_dsse/keys.json"))["body"])
    assert [k["keyid"] for k in keys["releaseKeys"]] == [release.key.keyid]
    assert keys["releaseKeys"][0]["publicKeyPem"].strip() == release.key.public_pem.strip()
