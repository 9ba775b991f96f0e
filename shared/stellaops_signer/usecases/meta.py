"""What the edge knows of a request besides its body, shared by the use cases."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from stellaops_signer.domain.sizing import LAMBDA_RESPONSE_BYTES


@dataclass(frozen=True, slots=True)
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
    lambda_context: Any = None
    started: float = field(default_factory=time.perf_counter)
