"""The signing request and the in-toto Statement built from it (spec §3.2, §3.6, §5.6)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import rfc8785

from stellaops_signer.domain.errors import InvalidRequest, SignerError, UnsupportedPredicateType
from stellaops_signer.domain.predicates import (
    DEFAULT_PREDICATE_TYPES,
    PredicateCatalogue,
    is_reachability_related,
    is_vex_related,
)
from stellaops_signer.domain.statement import SignRequest, Statement

SHA256 = "0123456789abcdef" * 4
SHA512 = "fedcba9876543210" * 8
IMAGE_DIGEST = "sha256:" + "ab" * 32


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid request (spec §3.2); ``overrides`` replace top-level fields."""
    body: dict[str, Any] = {
        "subject": [{"name": "scan/report.json", "digest": {"sha256": SHA256}}],
        "predicateType": "stella.ops/sbom@v1",
        "predicate": {"components": [{"name": "openssl", "version": "3.0.13"}], "score": 7.5},
        "scannerImageDigest": IMAGE_DIGEST,
        "poe": {"format": "jwt", "value": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
        "options": {"signingMode": "kms", "returnBundle": "dsse"},
    }
    body.update(overrides)
    return body


def parse(body: Any) -> SignRequest:
    return SignRequest.parse(json.dumps(body))


def build(body: Any, catalogue: PredicateCatalogue | None = None) -> Statement:
    return Statement.build(parse(body), catalogue or PredicateCatalogue())


def assert_invalid_request(raw: str | bytes | None) -> InvalidRequest:
    """Spec §3.6: schema, subject, digest, field or JSON errors are 400 invalid_request."""
    with pytest.raises(InvalidRequest) as caught:
        Statement.build(SignRequest.parse(raw), PredicateCatalogue())
    assert type(caught.value) is InvalidRequest
    assert (caught.value.code, caught.value.status) == ("invalid_request", 400)
    return caught.value


def with_subject(**fields: Any) -> dict[str, Any]:
    subject = {"name": "scan/report.json", "digest": {"sha256": SHA256}}
    subject.update(fields)
    return request_body(subject=[subject])


# --- the Statement and its canonical payload ----------------------------------------------------


def test_statement_payload_is_the_jcs_of_the_in_toto_statement() -> None:
    body = request_body()
    statement = build(body)
    assert statement.payload == rfc8785.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": body["subject"],
            "predicateType": body["predicateType"],
            "predicate": body["predicate"],
        }
    )
    assert statement.predicate_type == "stella.ops/sbom@v1"
    assert [s.name for s in statement.subjects] == ["scan/report.json"]


def test_equal_requests_give_byte_identical_payloads() -> None:
    assert build(request_body()).payload == build(copy.deepcopy(request_body())).payload


def test_field_order_in_the_request_does_not_change_the_payload() -> None:
    body = request_body(
        subject=[{"name": "a", "digest": {"sha256": SHA256, "sha512": SHA512}}],
        predicate={"b": 1, "a": {"y": 2, "x": [3]}},
    )
    reordered = {key: body[key] for key in reversed(list(body))}
    reordered["subject"] = [{"digest": {"sha512": SHA512, "sha256": SHA256}, "name": "a"}]
    reordered["predicate"] = {"a": {"x": [3], "y": 2}, "b": 1}
    assert json.dumps(reordered) != json.dumps(body)
    assert build(reordered).payload == build(body).payload


def test_options_default_to_dsse_bundle_and_configured_signing_mode() -> None:
    body = request_body()
    del body["options"]
    options = parse(body).options
    assert (options.signingMode, options.returnBundle) == (None, "dsse")


def test_subject_digest_may_hold_sha256_and_sha512() -> None:
    statement = build(with_subject(digest={"sha256": SHA256, "sha512": SHA512}))
    assert statement.subjects[0].digest == {"sha256": SHA256, "sha512": SHA512}


def test_subject_digest_may_hold_sha512_alone() -> None:
    assert build(with_subject(digest={"sha512": SHA512})).subjects[0].digest == {"sha512": SHA512}


def test_1024_subjects_are_accepted() -> None:
    subjects = [{"name": f"file-{i}", "digest": {"sha256": SHA256}} for i in range(1024)]
    assert len(build(request_body(subject=subjects)).subjects) == 1024


def test_subject_name_of_1024_characters_is_accepted() -> None:
    assert build(with_subject(name="n" * 1024)).subjects[0].name == "n" * 1024


# --- subject rules ------------------------------------------------------------------------------


def test_empty_subject_list_is_refused() -> None:
    assert_invalid_request(json.dumps(request_body(subject=[])))


def test_more_than_1024_subjects_are_refused() -> None:
    subjects = [{"name": f"file-{i}", "digest": {"sha256": SHA256}} for i in range(1025)]
    assert_invalid_request(json.dumps(request_body(subject=subjects)))


def test_duplicate_subject_names_are_refused() -> None:
    subjects = [
        {"name": "same", "digest": {"sha256": SHA256}},
        {"name": "same", "digest": {"sha512": SHA512}},
    ]
    assert_invalid_request(json.dumps(request_body(subject=subjects)))


def test_empty_subject_name_is_refused() -> None:
    assert_invalid_request(json.dumps(with_subject(name="")))


def test_subject_name_longer_than_1024_characters_is_refused() -> None:
    assert_invalid_request(json.dumps(with_subject(name="n" * 1025)))


@pytest.mark.parametrize(
    "digest",
    [
        {"md5": "0123456789abcdef0123456789abcdef"},
        {"sha1": "0123456789abcdef0123456789abcdef01234567"},
        {"sha256": SHA256, "sha1": "0123456789abcdef0123456789abcdef01234567"},
        {"SHA256": SHA256},
    ],
    ids=["md5", "sha1", "sha256_with_sha1", "uppercase_algorithm"],
)
def test_digest_algorithms_other_than_sha256_and_sha512_are_refused(digest: dict[str, str]) -> None:
    assert_invalid_request(json.dumps(with_subject(digest=digest)))


@pytest.mark.parametrize(
    "digest",
    [{"sha256": SHA256.upper()}, {"sha512": SHA512[:-1] + "F"}],
    ids=["sha256_uppercase", "sha512_one_uppercase"],
)
def test_digest_with_uppercase_hex_is_refused(digest: dict[str, str]) -> None:
    assert_invalid_request(json.dumps(with_subject(digest=digest)))


@pytest.mark.parametrize(
    "digest",
    [
        {"sha256": SHA256[:-1]},
        {"sha256": SHA256 + "0"},
        {"sha512": SHA256},
        {"sha256": ""},
        {"sha256": "g" * 64},
    ],
    ids=["sha256_63", "sha256_65", "sha512_of_64", "empty", "not_hex"],
)
def test_digest_of_the_wrong_length_or_not_hex_is_refused(digest: dict[str, str]) -> None:
    assert_invalid_request(json.dumps(with_subject(digest=digest)))


def test_empty_digest_is_refused() -> None:
    assert_invalid_request(json.dumps(with_subject(digest={})))


# --- field rules ---------------------------------------------------------------------------------


def test_unknown_top_level_field_is_refused() -> None:
    assert_invalid_request(json.dumps(request_body(predicateTyp="stella.ops/sbom@v1")))


@pytest.mark.parametrize(
    "body",
    [
        request_body(options={"signingMode": "kms", "returnBundel": "dsse"}),
        request_body(poe={"format": "jwt", "value": "x", "extra": 1}),
        with_subject(uri="https://example.com"),
    ],
    ids=["options", "poe", "subject"],
)
def test_unknown_nested_field_is_refused(body: dict[str, Any]) -> None:
    assert_invalid_request(json.dumps(body))


@pytest.mark.parametrize("field", ["subject", "predicateType", "predicate", "scannerImageDigest", "poe"])
def test_missing_required_field_is_refused(field: str) -> None:
    body = request_body()
    del body[field]
    assert_invalid_request(json.dumps(body))


@pytest.mark.parametrize("poe_format", ["jws", "JWT", "", None])
def test_poe_format_other_than_jwt_is_refused(poe_format: str | None) -> None:
    assert_invalid_request(json.dumps(request_body(poe={"format": poe_format, "value": "x"})))


@pytest.mark.parametrize(
    "options",
    [{"signingMode": "raw"}, {"returnBundle": "cosign"}],
    ids=["signing_mode", "return_bundle"],
)
def test_option_outside_its_enumeration_is_refused(options: dict[str, str]) -> None:
    assert_invalid_request(json.dumps(request_body(options=options)))


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "AB" * 32,
        "sha512:" + "ab" * 64,
        "ab" * 32,
        "sha256:" + "ab" * 31,
        "sha256:" + "ab" * 32 + "\n",
        " sha256:" + "ab" * 32,
    ],
    ids=["uppercase", "sha512", "missing_prefix", "too_short", "trailing_newline", "leading_space"],
)
def test_malformed_scanner_image_digest_is_refused(digest: str) -> None:
    assert_invalid_request(json.dumps(request_body(scannerImageDigest=digest)))


@pytest.mark.parametrize(
    "predicate", [[], "text", 1, None, True], ids=["array", "string", "number", "null", "bool"]
)
def test_predicate_that_is_not_an_object_is_refused(predicate: Any) -> None:
    assert_invalid_request(json.dumps(request_body(predicate=predicate)))


@pytest.mark.parametrize(
    ("field", "value"),
    [("predicateType", 1), ("scannerImageDigest", None), ("subject", {"name": "a"})],
    ids=["predicate_type_number", "image_digest_null", "subject_object"],
)
def test_field_of_the_wrong_json_type_is_refused(field: str, value: Any) -> None:
    assert_invalid_request(json.dumps(request_body(**{field: value})))


# --- JSON rules (I-JSON, RFC 7493) --------------------------------------------------------------


def test_body_that_is_not_json_is_refused() -> None:
    assert_invalid_request('{"subject": [')


def test_body_that_is_a_json_array_is_refused() -> None:
    assert_invalid_request(json.dumps([request_body()]))


@pytest.mark.parametrize("body", [None, "", b""], ids=["none", "empty_str", "empty_bytes"])
def test_empty_body_is_refused(body: str | bytes | None) -> None:
    assert_invalid_request(body)


def test_body_with_invalid_utf8_is_refused() -> None:
    raw = (
        json.dumps(request_body(predicate={"k": "PLACEHOLDER"}))
        .encode()
        .replace(b"PLACEHOLDER", b"\xff\xfe\xc3")
    )
    assert_invalid_request(raw)


def test_body_not_encoded_in_utf8_is_refused() -> None:
    assert_invalid_request(json.dumps(request_body()).encode("utf-16"))


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(request_body()).replace(
            '"predicateType": "stella.ops/sbom@v1"',
            '"predicateType": "stella.ops/sbom@v1", "predicateType": "stella.ops/vex@v1"',
        ),
        json.dumps(request_body(predicate={"PLACEHOLDER": 1})).replace('"PLACEHOLDER": 1', '"a": 1, "a": 2'),
    ],
    ids=["top_level", "inside_predicate"],
)
def test_duplicate_member_names_are_refused(raw: str) -> None:
    assert_invalid_request(raw)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_literals_are_refused(literal: str) -> None:
    raw = json.dumps(request_body(predicate={"x": "PLACEHOLDER"})).replace('"PLACEHOLDER"', literal)
    assert_invalid_request(raw)


def test_number_overflowing_a_double_is_refused() -> None:
    raw = json.dumps(request_body(predicate={"x": "PLACEHOLDER"})).replace('"PLACEHOLDER"', "1e400")
    assert_invalid_request(raw)


def test_deeply_nested_body_is_refused_not_a_recursion_error() -> None:
    depth = 100_000
    raw = json.dumps(request_body(predicate={"x": "PLACEHOLDER"})).replace(
        '"PLACEHOLDER"', "[" * depth + "]" * depth
    )
    assert_invalid_request(raw)


def test_deeply_nested_predicate_mapping_is_refused_not_a_recursion_error() -> None:
    nested: Any = 1
    for _ in range(5000):
        nested = [nested]
    request = SignRequest.from_mapping(request_body(predicate={"x": nested}))
    with pytest.raises(InvalidRequest):
        Statement.build(request, PredicateCatalogue())


@pytest.mark.parametrize("value", [2**60, -(2**53)], ids=["2_pow_60", "minus_2_pow_53"])
def test_integer_outside_the_i_json_range_is_refused_when_the_statement_is_built(value: int) -> None:
    request = parse(request_body(predicate={"big": value}))
    with pytest.raises(InvalidRequest) as caught:
        Statement.build(request, PredicateCatalogue())
    assert (caught.value.code, caught.value.status) == ("invalid_request", 400)


@pytest.mark.parametrize(
    "body",
    [
        with_subject(name="\ud800"),
        request_body(predicate={"x": "\udc00"}),
        request_body(predicate={"\ud800": 1}),
    ],
    ids=["subject_name", "predicate_value", "predicate_key"],
)
def test_lone_surrogate_is_refused(body: dict[str, Any]) -> None:
    assert_invalid_request(json.dumps(body))  # json.dumps writes it as a \ud800 escape


# --- predicate catalogue (spec §5.6) ------------------------------------------------------------


def test_default_catalogue_is_the_spec_list() -> None:
    assert set(PredicateCatalogue().allowed) == {
        "stella.ops/sbom@v1",
        "stella.ops/report@v1",
        "stella.ops/promotion@v1",
        "stella.ops/vex@v1",
        "stella.ops/vexDecision@v1",
        "stella.ops/graph@v1",
        "stella.ops/replay@v1",
        "stella.ops/policy@v1",
        "stella.ops/evidence@v1",
        "https://slsa.dev/provenance/v1",
        "https://cyclonedx.org/bom",
        "https://spdx.dev/Document",
    }


@pytest.mark.parametrize("predicate_type", DEFAULT_PREDICATE_TYPES)
def test_every_default_predicate_type_is_signed(predicate_type: str) -> None:
    assert build(request_body(predicateType=predicate_type)).predicate_type == predicate_type


@pytest.mark.parametrize(
    "predicate_type",
    ["stella.ops/unknown@v1", "stella.ops/sbom@v2", "STELLA.OPS/SBOM@V1", "stella.ops/sbom@v1 "],
)
def test_predicate_type_outside_the_catalogue_is_refused(predicate_type: str) -> None:
    with pytest.raises(UnsupportedPredicateType) as caught:
        build(request_body(predicateType=predicate_type))
    assert (caught.value.code, caught.value.status) == ("unsupported_predicate_type", 400)


def test_custom_catalogue_allows_its_types_and_only_those() -> None:
    catalogue = PredicateCatalogue(["https://example.com/custom@v1"])
    assert build(request_body(predicateType="https://example.com/custom@v1"), catalogue).payload
    with pytest.raises(UnsupportedPredicateType):
        build(request_body(predicateType="stella.ops/sbom@v1"), catalogue)


@pytest.mark.parametrize(
    ("predicate_type", "expected"),
    [
        ("stella.ops/vex@v1", True),
        ("stella.ops/vexDecision@v1", True),
        ("stella.ops/sbom@v1", False),
        ("stella.ops/graph@v1", False),
        ("https://cyclonedx.org/bom", False),
    ],
)
def test_vex_related_types_are_vex_and_vex_decision(predicate_type: str, expected: bool) -> None:
    assert is_vex_related(predicate_type) is expected


@pytest.mark.parametrize(
    ("predicate_type", "expected"),
    [
        ("stella.ops/graph@v1", True),
        ("stella.ops/replay@v1", True),
        ("stella.ops/vex@v1", False),
        ("stella.ops/sbom@v1", False),
        ("https://slsa.dev/provenance/v1", False),
    ],
)
def test_reachability_related_types_are_graph_and_replay(predicate_type: str, expected: bool) -> None:
    assert is_reachability_related(predicate_type) is expected


def test_request_errors_are_signer_errors_with_the_spec_codes() -> None:
    assert issubclass(InvalidRequest, SignerError) and issubclass(UnsupportedPredicateType, SignerError)
    assert (InvalidRequest.code, InvalidRequest.status) == ("invalid_request", 400)
    assert (UnsupportedPredicateType.code, UnsupportedPredicateType.status) == (
        "unsupported_predicate_type",
        400,
    )
