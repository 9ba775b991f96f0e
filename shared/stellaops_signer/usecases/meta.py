"""What the edge knows of a request besides its body, shared by the use cases."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stellaops_signer.domain.sizing import LAMBDA_RESPONSE_BYTES

if TYPE_CHECKING:  # annotations only
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from stellaops_signer.domain.jose import JsonValue


# Not frozen: made on every request's path and used at once (a frozen init costs 5x; decision 0017).
@dataclass(slots=True)
class RequestMeta:
    """What the edge knows of a request besides its body."""

    correlation_id: str
    route: str
    tenant_header: str | None = None
    idempotency_key: str | None = None
    #: The size of the request body (``maxArtifactBytes`` applies to it).
    body_bytes: int = 0
    #: SHA-256 of the request body: what an Idempotency-Key's retries must repeat.
    body_sha256: str = ""
    #: The most an answer may weigh on its way back (None: it travels by reference, spec §6).
    carrier_limit: int | None = LAMBDA_RESPONSE_BYTES
    #: The Lambda context (remaining time), when there is one.
    lambda_context: LambdaContext | None = None
    started: float = field(default_factory=time.perf_counter)


def body_digest(body: bytes | None) -> str:
    """SHA-256 of a request body for idempotency: of its RFC 8785 form when it is JSON (a retry
    that re-serialises the same request is the same request), else of its bytes."""
    from stellaops_signer.domain.jcs import CanonicalizationError, canonicalize

    raw = body or b""
    try:
        return hashlib.sha256(canonicalize(json.loads(raw))).hexdigest()
    except (ValueError, RecursionError, CanonicalizationError):
        return hashlib.sha256(raw).hexdigest()


def direct_request_meta(
    request: JsonValue, route: str, idempotency_key: object, correlation_id: str
) -> RequestMeta:
    """A direct invocation's RequestMeta: the request's size and digest measured on its compact JSON
    (what ``maxArtifactBytes`` and an Idempotency-Key's retries are about)."""
    body = json.dumps(request, separators=(",", ":")).encode()
    return RequestMeta(
        correlation_id=correlation_id,
        route=route,
        idempotency_key=idempotency_key if isinstance(idempotency_key, str) else None,
        body_bytes=len(body),
        body_sha256=body_digest(body) if idempotency_key else "",
        carrier_limit=None,  # results over 200 KiB travel by reference (spec §6)
    )


__all__ = ["RequestMeta", "body_digest", "direct_request_meta"]
