"""The signing request and the in-toto Statement v1 built from it (spec §3.2)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from stellaops_signer.domain.errors import InvalidRequest, UnsupportedPredicateType
from stellaops_signer.domain.jcs import CanonicalizationError, canonicalize
from stellaops_signer.domain.jose import JsonObject, JsonValue, strict_json
from stellaops_signer.domain.predicates import PredicateCatalogue

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_SUBJECTS = 1024
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")

ImageDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Subject(_Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    digest: dict[str, str]

    @field_validator("digest")
    @classmethod
    def _digest_is_lowercase_hex_of_known_algorithm(cls, digest: dict[str, str]) -> dict[str, str]:
        if not digest:
            raise ValueError("digest needs sha256 and/or sha512")
        for algorithm, value in digest.items():
            length = _DIGEST_LENGTHS.get(algorithm)
            if length is None:
                raise ValueError(f"digest algorithm {algorithm!r} is not accepted (sha256, sha512)")
            if len(value) != length or not _HEX.issuperset(value):
                raise ValueError(f"{algorithm} digest must be {length} lowercase hex characters")
        return digest


class ProofOfEntitlement(_Strict):
    format: Literal["jwt"]
    value: Annotated[str, StringConstraints(min_length=1, max_length=16384)]


class SigningOptions(_Strict):
    signingMode: Literal["kms", "keyless"] | None = None
    returnBundle: Literal["dsse", "sigstore"] = "dsse"


class SignRequest(_Strict):
    """The body of ``POST /api/v1/signer/sign/dsse``; unknown fields are refused."""

    subject: Annotated[list[Subject], Field(min_length=1, max_length=MAX_SUBJECTS)]
    predicateType: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    predicate: JsonObject
    scannerImageDigest: ImageDigest
    poe: ProofOfEntitlement
    options: SigningOptions = SigningOptions()

    @field_validator("subject")
    @classmethod
    def _subject_names_are_unique(cls, subjects: list[Subject]) -> list[Subject]:
        names = [s.name for s in subjects]
        if len(set(names)) != len(names):
            raise ValueError("subject names must be unique")
        return subjects

    @classmethod
    def parse(cls, body: str | bytes | None) -> SignRequest:
        """Parse a JSON body; raises InvalidRequest with a detail naming the first problem."""
        return cls.from_mapping(parse_json_object(body))

    @classmethod
    def from_mapping(cls, data: JsonValue) -> SignRequest:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise InvalidRequest(f"{where}: {first['msg']}") from None


def parse_json_object(body: str | bytes | None) -> JsonObject:
    """Parse I-JSON (RFC 7493): no duplicate names, no NaN/Infinity; the top level is an object."""
    if body is None or body == "" or body == b"":
        raise InvalidRequest("a JSON body is required")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body  # RFC 8259 §8.1: UTF-8 only
    except UnicodeDecodeError as error:
        raise InvalidRequest(f"the body is not UTF-8 (byte {error.start})") from None
    try:
        value = strict_json(text)  # RFC 7493 §2.3: no duplicate names; no NaN or infinite numbers
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:
        raise InvalidRequest("the body is not valid JSON (nested too deeply)") from None
    except ValueError as error:
        raise InvalidRequest(f"the body is not I-JSON: {error} in a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the body must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Statement:
    """An in-toto Statement v1 and its canonical bytes: the exact payload that gets signed."""

    predicate_type: str
    subjects: tuple[Subject, ...]
    payload: bytes

    @classmethod
    def build(cls, request: SignRequest, catalogue: PredicateCatalogue) -> Statement:
        """Build the Statement of a request; raises UnsupportedPredicateType or InvalidRequest."""
        if request.predicateType not in catalogue:
            allowed = ", ".join(sorted(catalogue.allowed))
            raise UnsupportedPredicateType(
                f"predicateType {request.predicateType!r} is not allowed; this installation signs: {allowed}"
            )
        document = {
            "_type": STATEMENT_TYPE,
            "subject": [{"name": s.name, "digest": s.digest} for s in request.subject],
            "predicateType": request.predicateType,
            "predicate": request.predicate,
        }
        try:
            payload = canonicalize(document)
        except CanonicalizationError as exc:
            raise InvalidRequest(f"predicate: {exc}") from None
        except RecursionError:
            raise InvalidRequest("predicate: nested too deeply") from None
        return cls(request.predicateType, tuple(request.subject), payload)


__all__ = [
    "MAX_SUBJECTS",
    "STATEMENT_TYPE",
    "ImageDigest",
    "ProofOfEntitlement",
    "SignRequest",
    "SigningOptions",
    "Statement",
    "Subject",
    "parse_json_object",
]
