"""Settings (spec §4) and the HTTP edge: problem+json, challenges, correlation ids (spec §3, §3.6, §6)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid

import pytest

from stellaops_signer import http
from stellaops_signer.config import (
    AllSettings,
    AuthenticateSettings,
    CheckQuotaSettings,
    Settings,
    SignDsseSettings,
    VerifyReleaseSettings,
    load,
    settings_of,
)
from stellaops_signer.domain import errors
from stellaops_signer.domain.errors import AuthenticationError, ConfigurationError, SignerError
from stellaops_signer.domain.predicates import DEFAULT_PREDICATE_TYPES

PLAN = {"qps": 10, "concurrency": 2, "maxArtifactBytes": 10485760, "dailySignatures": 10000}


def _subclasses(cls: type[SignerError]) -> list[type[SignerError]]:
    found: list[type[SignerError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


#: Every concrete error: a class that states its own code (AuthenticationError is an abstract 401).
CONCRETE_ERRORS = sorted({c for c in _subclasses(SignerError) if "code" in vars(c)}, key=lambda c: c.__name__)

#: Spec §3.6, row by row.
SPEC_ERROR_TABLE = [
    (400, "invalid_request"),
    (400, "unsupported_predicate_type"),
    (401, "invalid_token"),
    (401, "invalid_dpop_proof"),
    (401, "use_dpop_nonce"),
    (403, "insufficient_scope"),
    (403, "tenant_mismatch"),
    (403, "entitlement_denied"),
    (403, "release_untrusted"),
    (409, "idempotency_conflict"),
    (413, "artifact_too_large"),
    (429, "plan_throttled"),
    (429, "quota_exhausted"),
    (502, "release_unverifiable"),
    (503, "entitlement_unavailable"),
    (503, "signing_unavailable"),
    (503, "audit_unavailable"),
    (500, "internal_error"),
]


# --- settings ---------------------------------------------------------------------------------

#: A value for every required setting of every function (what the template always sets).
REQUIRED = {
    "SIGNER_AUTHORITY_ISSUER": "https://authority.example.com",
    "SIGNER_AUTHORITY_JWKS_URL": "https://authority.example.com/jwks",
    "SIGNER_AUDIT_TABLE": "audit",
    "SIGNER_PUBLIC_BASE_URL": "https://signer.example.com",
    "SIGNER_NONCE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nonce",
    "SIGNER_REPLAY_TABLE": "replay",
    "SIGNER_LICENSING_ISSUER": "https://licensing.example.com",
    "SIGNER_LICENSING_JWKS_URL": "https://licensing.example.com/jwks",
    "SIGNER_PLANS": json.dumps({"pro": PLAN}),
    "SIGNER_CACHE_TABLE": "cache",
    "SIGNER_QUOTA_TABLE": "quota",
    "SIGNER_RESERVATION_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:reservation",
    "SIGNER_RELEASE_TRUSTED_KEYS": "-----BEGIN PUBLIC KEY-----",
    "SIGNER_SCANNER_REPOSITORIES": "registry.example/stellaops/scanner",
    "SIGNER_REGISTRY_ALLOW_LIST": "registry.example",
    "SIGNER_KMS_KEY_ID": "alias/signer",
    "SIGNER_IDEMPOTENCY_TABLE": "idempotency",
    "SIGNER_PAYLOAD_BUCKET": "payloads",
}

#: What each part requires, and so each function (the parts it is made of).
TOKENS = {"SIGNER_AUTHORITY_ISSUER"}
AUDIT = {"SIGNER_AUDIT_TABLE"}
DPOP = {"SIGNER_PUBLIC_BASE_URL", "SIGNER_NONCE_SECRET_ARN", "SIGNER_REPLAY_TABLE"}
ENTITLED = {"SIGNER_LICENSING_ISSUER", "SIGNER_PLANS", "SIGNER_QUOTA_TABLE", "SIGNER_RESERVATION_SECRET_ARN"}
RELEASES = {"SIGNER_RELEASE_TRUSTED_KEYS", "SIGNER_SCANNER_REPOSITORIES", "SIGNER_REGISTRY_ALLOW_LIST"}
CACHE = {"SIGNER_CACHE_TABLE"}
SIGNING = {"SIGNER_KMS_KEY_ID", "SIGNER_IDEMPOTENCY_TABLE", "SIGNER_PAYLOAD_BUCKET"}
FUNCTIONS = {
    AuthenticateSettings: TOKENS | AUDIT | DPOP,
    CheckQuotaSettings: TOKENS | AUDIT | ENTITLED | CACHE,
    VerifyReleaseSettings: TOKENS | AUDIT | RELEASES | CACHE,
    SignDsseSettings: TOKENS | AUDIT | ENTITLED | RELEASES | CACHE | SIGNING,
}


def _settings(**changes: str) -> AllSettings:
    return load(AllSettings, {**REQUIRED, **{k.upper(): v for k, v in changes.items()}})


def _variables(model: type[Settings]) -> set[str]:
    return {setting.variable for setting in settings_of(model).values()}


def _required(model: type[Settings]) -> set[str]:
    return {setting.variable for setting in settings_of(model).values() if setting.default is None}


def test_settings_are_read_only() -> None:
    settings = _settings()
    with pytest.raises(AttributeError):
        settings.kms_key_id = "alias/other"  # type: ignore[misc]
    assert settings.kms_key_id == "alias/signer"


def test_unset_optional_settings_give_the_spec_defaults() -> None:
    settings = _settings()
    assert settings.require_dpop_nonce is True
    assert settings.max_token_lifetime_seconds == 600
    assert settings.dpop_nonce_ttl_seconds == 300
    assert settings.poe_cache_ttl_seconds == 300
    assert settings.default_signing_mode == "kms"
    assert settings.allowed_predicate_types == DEFAULT_PREDICATE_TYPES
    assert settings.fulcio_url == "" and settings.timestamp_authority_url == ""
    assert settings.tenant_signing_keys == {} and settings.retired_signing_keys == ()


@pytest.mark.parametrize("model", list(FUNCTIONS), ids=lambda m: m.__name__)
def test_each_function_requires_exactly_what_it_cannot_start_without(model: type[Settings]) -> None:
    assert _required(model) == FUNCTIONS[model]


@pytest.mark.parametrize(
    ("model", "variable"),
    [(model, variable) for model, required in FUNCTIONS.items() for variable in sorted(required)],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_a_missing_required_setting_names_its_environment_variable(
    model: type[Settings], variable: str
) -> None:
    for unset in ({k: v for k, v in REQUIRED.items() if k != variable}, {**REQUIRED, variable: "  "}):
        with pytest.raises(ConfigurationError, match=f"missing required setting\\(s\\): {variable}$"):
            load(model, unset)


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(ConfigurationError) as refused:
        load(AuthenticateSettings, {})
    assert str(refused.value) == "missing required setting(s): " + ", ".join(
        sorted(FUNCTIONS[AuthenticateSettings])
    )


def test_a_function_reads_nothing_of_what_it_does_not_use() -> None:
    assert "SIGNER_KMS_KEY_ID" not in _variables(AuthenticateSettings) | _variables(VerifyReleaseSettings)
    assert "SIGNER_NONCE_SECRET_ARN" not in _variables(SignDsseSettings) | _variables(CheckQuotaSettings)
    assert "SIGNER_REPLAY_TABLE" not in _variables(SignDsseSettings)
    assert "SIGNER_PLANS" not in _variables(AuthenticateSettings) | _variables(VerifyReleaseSettings)
    # …so a function whose part is malformed elsewhere still starts: it never reads it.
    load(AuthenticateSettings, {**REQUIRED, "SIGNER_PLANS": "{not json", "SIGNER_KMS_KEY_ID": ""})


@pytest.mark.parametrize(
    ("variable", "needs"),
    [
        ("SIGNER_AUTHORITY_JWKS_URL", "SIGNER_AUTHORITY_JWKS or its _URL form is required"),
        ("SIGNER_LICENSING_JWKS_URL", "SIGNER_LICENSING_JWKS or its _URL form is required"),
    ],
)
def test_a_key_set_is_required_inline_or_by_url(variable: str, needs: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(needs)):
        load(AllSettings, {k: v for k, v in REQUIRED.items() if k != variable})


@pytest.mark.parametrize(
    ("switch", "needs"),
    [
        (
            "SIGNER_FULCIO_URL",
            "SIGNER_FULCIO_ROOT_CERTIFICATES, SIGNER_KEYLESS_IDENTITY_TOKEN_URL, "
            "SIGNER_KEYLESS_CLIENT_SECRET_ARN",
        ),
        ("SIGNER_TIMESTAMP_AUTHORITY_URL", "SIGNER_TIMESTAMP_AUTHORITY_CERTIFICATES"),
    ],
)
def test_an_optional_service_needs_all_of_its_settings(switch: str, needs: str) -> None:
    with pytest.raises(
        ConfigurationError, match=re.escape(f"{switch} is set: missing required setting(s): {needs}")
    ):
        load(SignDsseSettings, {**REQUIRED, switch: "https://service.example.com"})


def test_every_setting_is_a_signer_variable_the_template_sets() -> None:
    import yaml

    from tests.conftest import ROOT

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    environment = set(template["Globals"]["Function"]["Environment"]["Variables"])
    signer = {v for v in environment if v.startswith("SIGNER_")}
    # Not a template parameter: plain HTTP to loopback services, for the tests and make run only.
    assert _variables(AllSettings) == signer | {"SIGNER_REGISTRY_INSECURE_LOOPBACK"}


@pytest.mark.parametrize(
    "raw", ["{not json", "[", "{'pro': {}}"], ids=["garbage", "truncated", "single_quotes"]
)
def test_malformed_plans_json_names_signer_plans(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_PLANS"):
        _settings(signer_plans=raw)


@pytest.mark.parametrize("field", list(PLAN))
def test_plan_limit_below_one_is_refused(field: str) -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_PLANS"):
        _settings(signer_plans=json.dumps({"pro": {**PLAN, field: 0}}))


def test_plan_with_an_unknown_limit_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_PLANS"):
        _settings(signer_plans=json.dumps({"pro": {**PLAN, "qpss": 5}}))


def test_plans_are_parsed_from_json() -> None:
    settings = _settings(signer_plans=json.dumps({"pro": PLAN}))
    assert dataclasses.asdict(settings.plans["pro"]) == PLAN


@pytest.mark.parametrize(
    "url",
    [
        "http://signer.example.com",
        "https://",
        "https://signer.example.com/?x=1",
        "https://signer.example.com/#f",
    ],
    ids=["http", "no_host", "query", "fragment"],
)
def test_public_base_url_that_is_not_an_https_origin_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_PUBLIC_BASE_URL"):
        _settings(signer_public_base_url=url)


def test_public_base_url_may_carry_a_path() -> None:
    url = "https://signer.example.com/stage"
    assert _settings(signer_public_base_url=url).public_base_url == url


@pytest.mark.parametrize(
    ("raw", "expected"), [("false", False), ("true", True), ("False", False), ("0", False)]
)
def test_require_dpop_nonce_parses_booleans(raw: str, expected: bool) -> None:
    assert _settings(signer_require_dpop_nonce=raw).require_dpop_nonce is expected


def test_require_dpop_nonce_that_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="SIGNER_REQUIRE_DPOP_NONCE"):
        _settings(signer_require_dpop_nonce="sometimes")


def test_list_settings_are_split_on_commas_and_trimmed() -> None:
    settings = _settings(
        signer_scanner_repositories=" registry.example/stellaops/scanner, registry.example/other ,",
        signer_registry_allow_list="registry.example,,ghcr.io",
        signer_allowed_predicate_types="stella.ops/sbom@v1,https://example.com/custom@v1",
    )
    assert settings.scanner_repositories == ("registry.example/stellaops/scanner", "registry.example/other")
    assert settings.registry_allow_list == ("registry.example", "ghcr.io")
    assert settings.allowed_predicate_types == ("stella.ops/sbom@v1", "https://example.com/custom@v1")


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SIGNER_MAX_TOKEN_LIFETIME_SECONDS", "ten"),
        ("SIGNER_MAX_TOKEN_LIFETIME_SECONDS", "0"),
        ("SIGNER_DEFAULT_SIGNING_MODE", "raw"),
        ("SIGNER_DPOP_NONCE_TTL_SECONDS", "99999"),
    ],
)
def test_malformed_setting_names_its_environment_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        _settings(**{variable: raw})


# --- the error table ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), SPEC_ERROR_TABLE, ids=[code for _, code in SPEC_ERROR_TABLE])
def test_every_spec_error_code_has_one_error_class_with_its_status(status: int, code: str) -> None:
    classes = [c for c in CONCRETE_ERRORS if c.code == code]
    assert len(classes) == 1
    assert classes[0].status == status


def _pascal_case_params() -> list[object]:
    params: list[object] = []
    for cls in CONCRETE_ERRORS:
        params.append(pytest.param(cls, id=cls.__name__))
    return params


@pytest.mark.parametrize("error_class", _pascal_case_params())
def test_error_class_name_is_the_pascal_case_of_its_code(error_class: type[SignerError]) -> None:
    assert error_class.__name__ == "".join(part.capitalize() for part in error_class.code.split("_"))


# --- problem+json (RFC 7807) --------------------------------------------------------------------


@pytest.mark.parametrize("error_class", CONCRETE_ERRORS, ids=lambda c: c.__name__)
def test_problem_body_carries_type_title_status_detail_code_and_correlation_id(
    error_class: type[SignerError],
) -> None:
    status, headers, body = http.problem(error_class("what went wrong"), "cid-1")
    assert status == error_class.status
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["X-Correlation-Id"] == "cid-1"
    assert body == {
        "type": body["type"],
        "title": error_class.title,
        "status": error_class.status,
        "detail": "what went wrong",
        "code": error_class.code,
        "correlationId": "cid-1",
    }
    assert re.fullmatch(r"https?://\S+", body["type"]) and body["type"].endswith("/" + error_class.code)
    assert json.loads(json.dumps(body)) == body


@pytest.mark.parametrize("error_class", CONCRETE_ERRORS, ids=lambda c: c.__name__)
def test_only_401s_carry_www_authenticate(error_class: type[SignerError]) -> None:
    _, headers, _ = http.problem(error_class("no"), "cid-1")
    assert ("WWW-Authenticate" in headers) is (error_class.status == 401)


AUTHENTICATION_ERRORS = [c for c in CONCRETE_ERRORS if issubclass(c, AuthenticationError)]
#: RFC 7235 §2.1 challenge: scheme, then comma-separated auth-params whose values are quoted strings.
CHALLENGE = re.compile(
    r'(?P<scheme>Bearer|DPoP) (?P<params>[a-z_]+="(?:[^"\\]|\\.)*"(?:, [a-z_]+="(?:[^"\\]|\\.)*")*)'
)
PARAM = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    match = CHALLENGE.fullmatch(value)
    assert match, value
    return match["scheme"], dict(PARAM.findall(match["params"]))


@pytest.mark.parametrize("error_class", AUTHENTICATION_ERRORS, ids=lambda c: c.__name__)
def test_401_challenge_names_the_scheme_the_error_belongs_to_by_default(
    error_class: type[AuthenticationError],
) -> None:
    _, headers, _ = http.problem(error_class("the token has expired"), "cid-1")
    scheme, params = parse_challenge(headers["WWW-Authenticate"])
    expected = "Bearer" if error_class is errors.InvalidToken else "DPoP"  # proofs and nonces are DPoP's
    assert scheme == expected
    assert params["error"] == error_class.code and params["error_description"] == "the token has expired"
    assert ("algs" in params) == (expected == "DPoP")


@pytest.mark.parametrize("error_class", AUTHENTICATION_ERRORS, ids=lambda c: c.__name__)
def test_401_challenge_for_dpop_names_the_dpop_scheme_and_its_algorithms(
    error_class: type[AuthenticationError],
) -> None:
    _, headers, _ = http.problem(error_class("proof replayed", scheme="DPoP"), "cid-1")
    scheme, params = parse_challenge(headers["WWW-Authenticate"])
    assert scheme == "DPoP"
    assert params["error"] == error_class.code
    assert params["algs"] == "ES256 EdDSA"


@pytest.mark.parametrize(
    "detail", ['kid "k1" is unknown', 'ends with a quote"', "back\\slash", '", error="forged'], ids=repr
)
def test_detail_with_quotes_or_backslashes_does_not_break_the_challenge(detail: str) -> None:
    _, headers, _ = http.problem(errors.InvalidToken(detail), "cid-1")
    scheme, params = parse_challenge(headers["WWW-Authenticate"])
    assert scheme == "Bearer"
    assert params["error"] == "invalid_token"
    assert set(params) == {"error", "error_description"}


def test_challenge_holds_only_printable_ascii_and_a_bounded_description() -> None:
    detail = "line\r\nSet-Cookie: x=1\t\u00e9\u2028" + "x" * 500
    _, headers, _ = http.problem(errors.InvalidToken(detail), "cid-1")
    assert re.fullmatch(r"[\x20-\x7e]+", headers["WWW-Authenticate"])
    _, params = parse_challenge(headers["WWW-Authenticate"])
    assert len(params["error_description"]) <= 200


def test_use_dpop_nonce_problem_carries_the_fresh_nonce_header() -> None:
    error = errors.UseDpopNonce("nonce required", scheme="DPoP", headers={"DPoP-Nonce": "n-1"})
    _, headers, _ = http.problem(error, "cid-1")
    assert headers["DPoP-Nonce"] == "n-1"
    assert headers["WWW-Authenticate"].startswith('DPoP error="use_dpop_nonce"')


# --- correlation id -----------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["req-123", "01J9ZX3K2Q.abc:def_1", "a" * 128])
def test_well_formed_correlation_id_is_echoed(given: str) -> None:
    assert http.correlation_id({"x-correlation-id": given}) == given


@pytest.mark.parametrize(
    "given",
    ["has space", "line\nbreak", "a" * 400, "", "crlf\r\nSet-Cookie: x=1", "ünïcode"],
    ids=["space", "newline", "400_chars", "empty", "header_injection", "non_ascii"],
)
def test_unsafe_correlation_id_is_replaced_by_a_fresh_uuid(given: str) -> None:
    generated = http.correlation_id({"X-Correlation-Id": given})
    assert generated != given
    assert str(uuid.UUID(generated)) == generated


def test_correlation_id_with_a_trailing_newline_is_replaced() -> None:
    assert http.correlation_id({"X-Correlation-Id": "abc\n"}) != "abc\n"


def test_missing_correlation_id_is_generated() -> None:
    first, second = http.correlation_id(None), http.correlation_id({})
    assert first != second
    assert str(uuid.UUID(first)) == first


def test_a_confirmed_request_keeps_every_field_and_finds_headers_as_header_does() -> None:
    from stellaops_signer.domain.binding import Principal

    event = {
        "httpMethod": "POST",
        "resource": http.SIGN_PATH,
        "headers": {"X-StellaOps-Tenant": "t-1", "x-stellaops-tenant": "second", "Idempotency-Key": "k"},
        "queryStringParameters": {"digest": "sha256:" + "0" * 64},
        "body": "{}",
        "requestContext": {
            "authorizer": {"correlationId": "corr-1"},
            "identity": {"clientCert": {"clientCertPem": "-----BEGIN CERTIFICATE-----"}},
        },
    }
    request = http.ApiRequest.from_event(event, lambda_context=None)
    principal = Principal("sub", "client", "t-1", "inst", frozenset({"signer.sign"}), "dpop", "jkt")
    assert request.confirmed(principal) == dataclasses.replace(request, principal=principal)
    for name in ("x-stellaops-tenant", "X-STELLAOPS-TENANT", "idempotency-key", "Authorization"):
        assert request.header(name) == http.header(event["headers"], name)
