"""The signing request's schema (``domain/statement.py``, written with ``pydantic_core``'s builders)
against its oracle: the pydantic ``BaseModel``\\ s of the same fields, as pydantic itself turns them
into a schema. Every body of a corpus of valid and hostile ones gets the same verdict from both, the
same values when valid and the same first error (location and message) when not (decision 0019)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from stellaops_signer.domain.errors import InvalidRequest
from stellaops_signer.domain.statement import IMAGE_DIGEST_PATTERN, MAX_SUBJECTS, SignRequest
from stellaops_signer.domain.statement import (
    _digest_is_lowercase_hex_of_known_algorithm as _digest_rule,
)

# --- the oracle: the request as pydantic models (what domain/statement.py held until decision 0019) ---


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OracleSubject(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    digest: dict[str, str]

    @field_validator("digest")
    @classmethod
    def _digest(cls, digest: dict[str, str]) -> dict[str, str]:
        # The rule itself is the module's (test_unit_statement.py holds it to the spec): what is
        # compared here is the schema around it.
        return _digest_rule(digest)


class OracleProofOfEntitlement(_Strict):
    format: Literal["jwt"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class OracleSigningOptions(_Strict):
    signingMode: Literal["kms", "keyless"] | None = None
    returnBundle: Literal["dsse", "sigstore"] = "dsse"


class OracleSignRequest(_Strict):
    subject: Annotated[list[OracleSubject], Field(min_length=1, max_length=MAX_SUBJECTS)]
    predicateType: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    predicate: dict[str, Any]
    scannerImageDigest: Annotated[str, StringConstraints(pattern=IMAGE_DIGEST_PATTERN)]
    poe: OracleProofOfEntitlement
    options: OracleSigningOptions = OracleSigningOptions()

    @field_validator("subject")
    @classmethod
    def _unique(cls, subjects: list[OracleSubject]) -> list[OracleSubject]:
        if len({s.name for s in subjects}) != len(subjects):
            raise ValueError("subject names must be unique")
        return subjects


def oracle(data: Any) -> dict[str, Any] | str:
    """The oracle's verdict: the valid request as plain data, or the first error as ``SignRequest``
    words it (a model names its class where a plain object schema says "a valid dictionary")."""
    try:
        return OracleSignRequest.model_validate(data).model_dump()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        message = first["msg"]
        if first["type"] == "model_type":
            message = "Input should be a valid dictionary"
        return f"{where}: {message}"


def ours(data: Any) -> dict[str, Any] | str:
    try:
        request = SignRequest.from_mapping(data)
    except InvalidRequest as refusal:
        return refusal.detail
    return {
        "subject": [{"name": s.name, "digest": s.digest} for s in request.subject],
        "predicateType": request.predicateType,
        "predicate": request.predicate,
        "scannerImageDigest": request.scannerImageDigest,
        "poe": {"format": request.poe.format, "value": request.poe.value},
        "options": {
            "signingMode": request.options.signingMode,
            "returnBundle": request.options.returnBundle,
        },
    }


# --- the corpus ----------------------------------------------------------------------------------------

SHA256, SHA512 = "0123456789abcdef" * 4, "fedcba9876543210" * 8
VALID: dict[str, Any] = {
    "subject": [{"name": "scan/report.json", "digest": {"sha256": SHA256}}],
    "predicateType": "stella.ops/sbom@v1",
    "predicate": {"components": [{"name": "openssl"}], "score": 7.5},
    "scannerImageDigest": "sha256:" + "ab" * 32,
    "poe": {"format": "jwt", "value": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"},
    "options": {"signingMode": "kms", "returnBundle": "sigstore"},
}
#: Values of every JSON type, and strings at the edges of the schema's patterns and lengths.
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1.5, float("nan"), 2**70, "", "x", " ", "jwt", "JWT", "kms", "keyless",
    "dsse", "sigstore", "sha256:" + "ab" * 32 + "\n", "sha256:" + "AB" * 32, "sha512:" + SHA512,
    "a" * 256, "a" * 257, "a" * 1024, "a" * 1025, "a" * 16384, "a" * 16385, b"bytes", [], [1], [{}],
    {}, {"sha256": SHA256}, {"sha512": SHA512}, {"sha256": SHA256.upper()}, {"md5": "0" * 32},
    {"sha256": SHA256[:-1]}, {"sha256": 1}, {1: "x"}, {"name": "n", "digest": {"sha256": SHA256}},
    ("a", "b"),
]  # fmt: skip
PATHS: list[tuple[str | int, ...]] = [
    ("subject",), ("subject", 0), ("subject", 0, "name"), ("subject", 0, "digest"),
    ("subject", 0, "digest", "sha256"), ("predicateType",), ("predicate",), ("predicate", "score"),
    ("scannerImageDigest",), ("poe",), ("poe", "format"), ("poe", "value"), ("options",),
    ("options", "signingMode"), ("options", "returnBundle"),
]  # fmt: skip
OBJECTS: list[tuple[str | int, ...]] = [(), ("subject", 0), ("subject", 0, "digest"), ("poe",), ("options",)]


def _at(body: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        body = body[part]
    return body


def corpus() -> Iterator[tuple[str, Any]]:
    yield "valid", VALID
    yield "no options", {k: v for k, v in VALID.items() if k != "options"}
    yield "empty options", {**VALID, "options": {}}
    for top in (None, [], "x", 1, [VALID]):
        yield f"top level {top!r:.20}", top
    for path in PATHS:
        for value in HOSTILE:
            body = copy.deepcopy(VALID)
            _at(body, path[:-1])[path[-1]] = value
            yield f"{path} = {value!r:.30}", body
        body = copy.deepcopy(VALID)
        del _at(body, path[:-1])[path[-1]]
        yield f"{path} missing", body
    for path in OBJECTS:
        for extra in ("extra", "_type", "Subject", ""):
            body = copy.deepcopy(VALID)
            _at(body, path)[extra] = 1
            yield f"{path} + {extra!r}", body
    subject = VALID["subject"][0]
    for name, subjects in {
        "two subjects": [subject, {**subject, "name": "other"}],
        "duplicate names": [subject, dict(subject)],
        "duplicate after others": [subject, {**subject, "name": "b"}, {**subject, "name": "b"}],
        "the most subjects": [{**subject, "name": f"s{i}"} for i in range(MAX_SUBJECTS)],
        "one too many": [{**subject, "name": f"s{i}"} for i in range(MAX_SUBJECTS + 1)],
        "bad second subject": [subject, {"name": "b", "digest": {}}],
        "two digests": [{**subject, "digest": {"sha256": SHA256, "sha512": SHA512}}],
        "one bad of two digests": [{**subject, "digest": {"sha256": SHA256, "sha512": "x"}}],
    }.items():
        yield name, {**VALID, "subject": subjects}
    yield "many problems", {"subject": [], "predicateType": "", "extra": 1}


CASES = list(corpus())


def test_the_schema_decides_as_pydantic_models_do() -> None:
    differences = {name: (ours(body), oracle(body)) for name, body in CASES if ours(body) != oracle(body)}
    assert differences == {}


def test_the_corpus_has_both_verdicts() -> None:
    verdicts = [isinstance(oracle(body), str) for _, body in CASES]
    assert sum(verdicts) > 500 and verdicts.count(False) > 20


def test_a_parsed_request_is_frozen_and_its_subjects_a_tuple() -> None:
    request = SignRequest.parse(json.dumps(VALID))
    assert isinstance(request.subject, tuple)
    with pytest.raises(AttributeError):
        request.predicateType = "other"  # type: ignore[misc]
