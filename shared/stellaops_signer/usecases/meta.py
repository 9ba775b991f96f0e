"""What the edge knows of a request besides its body, shared by the use cases."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the edge knows of a request besides its body."""

    correlation_id: str
    route: str
    tenant_header: str | None = None
    idempotency_key: str | None = None
    #: The size of the request body (``maxArtifactBytes`` applies to it).
    body_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
