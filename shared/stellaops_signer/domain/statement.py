"""The signing request and the in-toto Statement v1 built from it (spec §3.2).

The request is validated by pydantic's own engine, ``pydantic_core``, from a schema written with
its ``core_schema`` builders: the same schema a pydantic ``BaseModel`` of these fields generates
(a test holds the two to the same verdicts and errors), without pydantic's Python layer, which
costs ``sign_dsse`` about 150 ms of every cold start (decision 0019).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic_core import SchemaValidator, ValidationError
from pydantic_core import core_schema as cs

from stellaops_signer.domain.errors import InvalidRequest, UnsupportedPredicateType
from stellaops_signer.domain.jcs import CanonicalizationError, canonicalize
from stellaops_signer.domain.jose import JsonObject, JsonValue, strict_json
from stellaops_signer.domain.predicates import PredicateCatalogue

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
MAX_SUBJECTS = 1024
IMAGE_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Subject:
    name: str
    digest: dict[str, str]


@dataclass(frozen=True, slots=True)
class ProofOfEntitlement:
    format: Literal["jwt"]
    value: str


@dataclass(frozen=True, slots=True)
class SigningOptions:
    signingMode: Literal["kms", "keyless"] | None = None
    returnBundle: Literal["dsse", "sigstore"] = "dsse"


@dataclass(frozen=True, slots=True)
class SignRequest:
    """The body of ``POST /api/v1/signer/sign/dsse``, validated; unknown fields are refused."""

    subject: tuple[Subject, ...]
    predicateType: str
    predicate: JsonObject
    scannerImageDigest: str
    poe: ProofOfEntitlement
    options: SigningOptions = SigningOptions()

    @classmethod
    def parse(cls, body: str | bytes | None) -> SignRequest:
        """Parse a JSON body; raises InvalidRequest with a detail naming the first problem."""
        return cls.from_mapping(parse_json_object(body))

    @classmethod
    def from_mapping(cls, data: JsonValue) -> SignRequest:
        try:
            request: SignRequest = _VALIDATOR.validate_python(data)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise InvalidRequest(f"{where}: {first['msg']}") from None
        return request


def _digest_is_lowercase_hex_of_known_algorithm(digest: dict[str, str]) -> dict[str, str]:
    if not digest:
        raise ValueError("digest needs sha256 and/or sha512")
    for algorithm, value in digest.items():
        length = _DIGEST_LENGTHS.get(algorithm)
        if length is None:
            raise ValueError(f"digest algorithm {algorithm!r} is not accepted (sha256, sha512)")
        if len(value) != length or not _HEX.issuperset(value):
            raise ValueError(f"{algorithm} digest must be {length} lowercase hex characters")
    return digest


def _subject_names_are_unique(subjects: list[Subject]) -> tuple[Subject, ...]:
    if len({s.name for s in subjects}) != len(subjects):
        raise ValueError("subject names must be unique")
    return tuple(subjects)


#: Each object schema carries it (a typed dict validates its members with its own config, not the
#: validator's): no coercion — a string is a string, a list a list — and no unknown member.
_STRICT = cs.CoreConfig(strict=True, extra_fields_behavior="forbid")


def _object(
    build: Callable[..., object],
    fields: Mapping[str, cs.CoreSchema],
    optional: Mapping[str, cs.CoreSchema] = {},
) -> cs.CoreSchema:
    """A JSON object of exactly these members (the optional ones with their default), built into
    ``build(**members)`` once valid: what a strict, ``extra="forbid"`` pydantic model validates."""
    members = {name: cs.typed_dict_field(schema) for name, schema in fields.items()}
    members |= {name: cs.typed_dict_field(schema, required=False) for name, schema in optional.items()}
    return cs.no_info_after_validator_function(
        lambda valid: build(**valid), cs.typed_dict_schema(members, extra_behavior="forbid", config=_STRICT)
    )


def _text(max_length: int) -> cs.CoreSchema:
    return cs.str_schema(min_length=1, max_length=max_length)


_SUBJECT = _object(
    Subject,
    {
        "name": _text(max_length=1024),
        "digest": cs.no_info_after_validator_function(
            _digest_is_lowercase_hex_of_known_algorithm, cs.dict_schema(cs.str_schema(), cs.str_schema())
        ),
    },
)
_OPTIONS = _object(
    SigningOptions,
    {},
    {
        "signingMode": cs.with_default_schema(
            cs.nullable_schema(cs.literal_schema(["kms", "keyless"])), default=None
        ),
        "returnBundle": cs.with_default_schema(cs.literal_schema(["dsse", "sigstore"]), default="dsse"),
    },
)
_VALIDATOR = SchemaValidator(
    _object(
        SignRequest,
        {
            "subject": cs.no_info_after_validator_function(
                _subject_names_are_unique, cs.list_schema(_SUBJECT, min_length=1, max_length=MAX_SUBJECTS)
            ),
            "predicateType": _text(max_length=256),
            "predicate": cs.dict_schema(cs.str_schema(), cs.any_schema()),
            "scannerImageDigest": cs.str_schema(pattern=IMAGE_DIGEST_PATTERN),
            "poe": _object(
                ProofOfEntitlement,
                {"format": cs.literal_schema(["jwt"]), "value": _text(max_length=16384)},
            ),
        },
        {"options": cs.with_default_schema(_OPTIONS, default=SigningOptions())},
    ),
    _STRICT,
)


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
    "IMAGE_DIGEST_PATTERN",
    "MAX_SUBJECTS",
    "STATEMENT_TYPE",
    "ProofOfEntitlement",
    "SignRequest",
    "SigningOptions",
    "Statement",
    "Subject",
    "parse_json_object",
]
