"""``docs/openapi.yaml`` against the running local stack (spec §8): the description is valid OpenAPI
3.1 and names every route and problem code; real answers conform to it; and schemathesis fuzzes
every operation from it over HTTPS + mTLS: no 5xx, no answer outside the description.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.client import LOCAL_SCANNER_DIGEST, SignerClient
from local.gateway import Api
from local.provision import load_template
from stellaops_signer.domain import errors
from tests.conftest import ROOT
from tests.e2e.conftest import session_for

pytestmark = pytest.mark.e2e

DESCRIPTION = ROOT / "docs" / "openapi.yaml"
SIGN, VERIFY, QUOTA, KEYS = (
    "/api/v1/signer/sign/dsse",
    "/api/v1/signer/verify/referrers",
    "/api/v1/signer/quota",
    "/api/v1/signer/keys",
)
#: What every answer is held to: no server error; a described status, content type, headers and body.
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Fuzzing adds: what breaks the description's request schemas is refused with a 4xx.
FUZZ_CHECKS = [*CONFORMANCE, negative_data_rejection]
#: Generated examples per operation in the fuzzing phase (deterministic: every run sends the same);
#: the examples and coverage phases add their own fixed sets.
MAX_EXAMPLES = 40
FUZZ_TIMEOUT_SECONDS = 240
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def _description() -> dict[str, Any]:
    return dict(yaml.safe_load(DESCRIPTION.read_text()))


def _registry(client: SignerClient) -> str:
    """``host:port`` of the stack's release registry, the one on its allow-list."""
    return str(client.stack["registry"]).partition("://")[2]


def _body(poe: dict[str, str], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": [
            {"name": "scan/report.json", "digest": {"sha256": hashlib.sha256(b"report").hexdigest()}}
        ],
        "predicateType": "stella.ops/sbom@v1",
        "predicate": {"bomFormat": "CycloneDX", "components": [{"name": "openssl", "version": "3.0.13"}]},
        "scannerImageDigest": LOCAL_SCANNER_DIGEST,
        "poe": poe,
    }
    return {**body, **changes}


# --- the description itself ------------------------------------------------------------------------


def test_the_description_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator

    document = _description()
    assert document["openapi"].startswith("3.1.")
    OpenAPIV31SpecValidator(document).validate()  # raises on the first error


def test_the_description_has_exactly_the_routes_of_the_template() -> None:
    routes = {(route.method.lower(), route.path) for route in Api(load_template()).routes}
    described = {(method, path) for path, item in _description()["paths"].items() for method in item}
    assert described == routes


def _problem_classes() -> Iterator[type[errors.SignerError]]:
    pending: list[type[errors.SignerError]] = [errors.SignerError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if "code" in vars(cls):  # AuthenticationError only groups the 401s
            yield cls


def test_the_description_knows_every_problem_code_with_its_status_and_title() -> None:
    described = {
        tuple(variant["properties"][name]["const"] for name in ("code", "status", "title", "type"))
        for variant in _description()["components"]["schemas"]["Problem"]["oneOf"]
    }
    signer = {
        (cls.code, cls.status, cls.title, "https://stellaops.dev/problems/" + cls.code)
        for cls in _problem_classes()
    }
    assert described == signer


def test_each_operation_answers_problems_only_with_codes_of_their_status() -> None:
    document = _description()
    schemas = {
        v["properties"]["code"]["const"]: v for v in document["components"]["schemas"]["Problem"]["oneOf"]
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    continue
                if "$ref" in response:
                    response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/problem+json"]["schema"]
                codes = schema["allOf"][1]["properties"]["code"]["enum"]
                wrong = [c for c in codes if schemas[c]["properties"]["status"]["const"] != int(status)]
                assert not wrong, f"{method.upper()} {path} {status}: {wrong}"


# --- real answers conform ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def described(stack: dict[str, Any]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(_description())
    schema.config.update(base_url=stack["signer"])
    return schema


@pytest.fixture
def conforms(described: schemathesis.BaseSchema) -> Callable[[requests.Response], requests.Response]:
    """Validate a real answer against its operation in the description; raises on any departure."""

    def check(answer: requests.Response) -> requests.Response:
        request = answer.request
        path = requests.utils.urlparse(request.url).path
        case = described[path][str(request.method)].Case()
        case.validate_response(answer, checks=CONFORMANCE)
        return answer

    return check


def test_a_signing_over_mtls_conforms(stack: dict[str, Any], conforms: Callable[..., Any]) -> None:
    client = SignerClient(stack, binding="mtls")
    answer = conforms(client.call("POST", SIGN, client.token(), json=_body(client.poe())))
    assert answer.status_code == 200 and answer.json()["bundle"]["mode"] == "kms"


def test_a_keyless_signing_with_a_sigstore_bundle_over_dpop_conforms(
    stack: dict[str, Any], conforms: Callable[..., Any]
) -> None:
    client = SignerClient(stack)
    options = {"signingMode": "keyless", "returnBundle": "sigstore"}
    answer = conforms(client.call("POST", SIGN, client.token(), json=_body(client.poe(), options=options)))
    assert answer.status_code == 200 and "sigstoreBundle" in answer.json()


def test_an_idempotent_replay_and_a_conflict_conform(
    stack: dict[str, Any], conforms: Callable[..., Any]
) -> None:
    client = SignerClient(stack, binding="mtls")
    token, body = client.token(), _body(client.poe())
    key = {"Idempotency-Key": "openapi-" + hashlib.sha256(token.encode()).hexdigest()[:16]}
    first = conforms(client.call("POST", SIGN, token, json=body, headers=key))
    again = conforms(client.call("POST", SIGN, token, json=body, headers=key))
    assert first.status_code == again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    other = conforms(client.call("POST", SIGN, token, json={**body, "predicate": {}}, headers=key))
    assert other.status_code == 409


def test_the_keys_the_quota_and_both_verdicts_conform(
    stack: dict[str, Any], conforms: Callable[..., Any]
) -> None:
    client = SignerClient(stack, binding="mtls")
    token = client.token()
    assert conforms(client.call("GET", KEYS, token)).status_code == 200
    quota = client.call("GET", QUOTA, token, headers={"X-StellaOps-PoE": client.poe()["value"]})
    assert conforms(quota).status_code == 200
    trusted = conforms(client.call("GET", VERIFY, token, params={"digest": LOCAL_SCANNER_DIGEST}))
    assert trusted.json()["trusted"] is True
    unknown = conforms(client.call("GET", VERIFY, token, params={"digest": "sha256:" + "0" * 64}))
    assert unknown.json()["trusted"] is False


JSON = {"Content-Type": "application/json"}
TENANT_B = {"X-StellaOps-Tenant": "tenant-b"}
FORGED_POE = {"format": "jwt", "value": "eyJhbGciOiJFUzI1NiJ9.e30.c2lnbmF0dXJl"}
#: Refusals: (method, path, request given the client's PoE and the allow-listed registry, status, code).
REFUSALS = {
    "unknown field": (
        "POST",
        SIGN,
        lambda poe, _: {"json": {**_body(poe), "colour": "blue"}},
        400,
        "invalid_request",
    ),
    "not JSON": ("POST", SIGN, lambda poe, _: {"data": b"{", "headers": JSON}, 400, "invalid_request"),
    "unknown predicate": (
        "POST",
        SIGN,
        lambda poe, _: {"json": _body(poe, predicateType="example.com/other@v1")},
        400,
        "unsupported_predicate_type",
    ),
    "another tenant": (
        "POST",
        SIGN,
        lambda poe, _: {"json": _body(poe), "headers": TENANT_B},
        403,
        "tenant_mismatch",
    ),
    "forged PoE": ("POST", SIGN, lambda poe, _: {"json": _body(FORGED_POE)}, 403, "entitlement_denied"),
    "unsigned scanner": (
        "POST",
        SIGN,
        lambda poe, _: {"json": _body(poe, scannerImageDigest="sha256:" + "0" * 64)},
        403,
        "release_untrusted",
    ),
    "quota without PoE": ("GET", QUOTA, lambda poe, _: {}, 403, "entitlement_denied"),
    "malformed digest": (
        "GET",
        VERIFY,
        lambda poe, _: {"params": {"digest": "sha256:ABC"}},
        400,
        "invalid_request",
    ),
    "registry not allow-listed": (
        "GET",
        VERIFY,
        lambda poe, _: {"params": {"digest": LOCAL_SCANNER_DIGEST, "repository": "r.example/x"}},
        400,
        "invalid_request",
    ),
    "repository name not OCI": (
        "GET",
        VERIFY,
        lambda poe, registry: {
            "params": {"digest": LOCAL_SCANNER_DIGEST, "repository": registry + "/Stella Ops"}
        },
        400,
        "invalid_request",
    ),
    "repository name with dot segments, query and fragment": (
        "GET",
        VERIFY,
        lambda poe, registry: {
            "params": {"digest": LOCAL_SCANNER_DIGEST, "repository": registry + "/a/../b?c#d"}
        },
        400,
        "invalid_request",
    ),
    "keys of another tenant": ("GET", KEYS, lambda poe, _: {"headers": TENANT_B}, 403, "tenant_mismatch"),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_refusals_conform(stack: dict[str, Any], conforms: Callable[..., Any], refusal: str) -> None:
    method, path, request, status, code = REFUSALS[refusal]
    client = SignerClient(stack, binding="mtls")
    answer = conforms(client.call(method, path, client.token(), **request(client.poe(), _registry(client))))
    assert (answer.status_code, answer.json().get("code")) == (status, code), answer.text


def test_a_request_without_a_token_conforms(stack: dict[str, Any], conforms: Callable[..., Any]) -> None:
    client = SignerClient(stack, binding="mtls")
    answer = conforms(client.http.post(stack["signer"] + SIGN, json=_body(client.poe()), timeout=30))
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_token")


def test_a_proof_without_a_nonce_conforms(stack: dict[str, Any], conforms: Callable[..., Any]) -> None:
    client = SignerClient(stack)
    token = client.token()
    assert client.dpop is not None
    proof = client.dpop.proof("GET", stack["signer"] + KEYS, access_token=token)
    answer = conforms(
        client.http.get(
            stack["signer"] + KEYS, headers={"Authorization": f"DPoP {token}", "DPoP": proof}, timeout=30
        )
    )
    assert answer.json()["code"] == "use_dpop_nonce" and answer.headers["DPoP-Nonce"]


def test_a_scope_the_route_does_not_grant_conforms(
    stack: dict[str, Any], conforms: Callable[..., Any]
) -> None:
    client = SignerClient(stack, "auditor-1", binding="mtls")
    answer = conforms(client.call("POST", SIGN, client.token("signer.verify"), json=_body(client.poe())))
    assert answer.json()["code"] == "insufficient_scope"


def test_throttled_signings_conform(stack: dict[str, Any], conforms: Callable[..., Any]) -> None:
    """More signings at once than tenant-a's plan holds in flight (5) or allows a second (10)."""
    client = SignerClient(stack, binding="mtls")
    token, body = client.token(), _body(client.poe())
    throttled: list[requests.Response] = []
    for _ in range(3):  # a burst may straddle a second; three cannot all stay under the limits
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.call("POST", SIGN, token, json=body), range(16)))
        for answer in answers:
            conforms(answer)
        throttled += [a for a in answers if a.status_code == 429]
        if throttled:
            break
    assert throttled and throttled[0].json()["code"] == "plan_throttled"


def test_an_unknown_route_or_method_answers_the_described_not_found(stack: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    document = _description()
    schema = document["components"]["responses"]["NoSuchRoute"]["content"]["application/problem+json"][
        "schema"
    ]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    session = session_for(stack, "scanner-1")
    unknown = [("GET", "/api/v1/signer/nothing"), ("GET", "/"), ("DELETE", KEYS), ("PUT", SIGN)]
    unlisted = [("OPTIONS", SIGN), ("TRACE", QUOTA), ("HEAD", KEYS)]
    for method, path in unknown + unlisted:
        answer = session.request(method, stack["signer"] + path, timeout=30)
        seen = (method, path, answer.status_code, answer.headers.get("Content-Type"))
        assert seen == (method, path, 404, "application/problem+json"), answer.text[:300]
        if method != "HEAD":
            body = answer.json()
            validator.validate(body)
            assert body["correlationId"] == answer.headers["X-Correlation-Id"]


# --- fuzzing ---------------------------------------------------------------------------------------

#: No state across runs (schemathesis replays remembered failures by default), and the PoE and the DPoP
#: values hidden in its output as tokens are.
ST_CONFIG = """\
[cache]
enabled = false

[output.sanitization]
sensitive-markers = [
  "token", "key", "secret", "password", "auth", "session", "passwd", "credential", "poe", "dpop",
]
"""


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_description(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """``st run`` on one worker, deterministic, a fixed number of examples per operation, its hooks
    (``schemathesis_hooks.py``) adding the credentials. Its pytest plugin cannot serve here: a schema
    loaded from a fixture needs a pytest internal that pytest 9 no longer has. Each failure in the
    output comes with a curl line that reproduces it."""
    facts, config = tmp_path / "stack.json", tmp_path / "schemathesis.toml"
    facts.write_text(json.dumps(stack))
    config.write_text(ST_CONFIG)
    identity = stack["clients"]["scanner-1"]
    command = [
        *(str(Path(sys.executable).parent / "st"), "--config-file", str(config), "--no-color"),
        *("run", str(DESCRIPTION), "--url", stack["signer"], "--workers", "1"),
        *("--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES)),
        *("--generation-deterministic", "--generation-with-security-parameters", "false"),
        *("--checks", ",".join(check.__name__ for check in FUZZ_CHECKS), "--continue-on-failure"),
        *(
            "--tls-verify",
            stack["ca"],
            "--request-cert",
            identity["cert"],
            "--request-cert-key",
            identity["key"],
        ),
        *("--request-timeout", "30"),
    ]
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": str(HOOKS),
        "STELLAOPS_FUZZ_STACK": str(facts),
        "PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "shared"))),
    }
    run = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=FUZZ_TIMEOUT_SECONDS
    )
    report = run.stdout[-40000:] + run.stderr[-5000:]
    assert run.returncode == 0, report
    operations = sum(len(item) for item in _description()["paths"].values())
    assert f"Tested: {operations}" in run.stdout, report
