"""check_quota: ``GET /api/v1/signer/quota`` with the PoE in ``X-StellaOps-PoE`` (spec §3.4);
the CheckQuota and ReleaseQuota steps of SigningPipeline.

Direct input ``{"action": "reserve", "opToken": str, "poe": {"format": "jwt", "value": str},
"artifactBytes": int}`` → ``{"reservation": {...sealed...}, "plan": str}``; ``{"action": "release",
"opToken": str, "reservation": {...sealed...}}`` → ``{"released": bool}`` (true when this call gave
the units back; a reservation is given back once, and never after its signing succeeded).
Failures raise the errors named after the spec's codes (``PlanThrottled``, ``QuotaExhausted``…).
"""

from typing import Any

from stellaops_signer import http
from stellaops_signer.observability import instrumented
from stellaops_signer.usecases.meta import RequestMeta
from stellaops_signer.wiring import cold_start, container

POE_HEADER = "X-StellaOps-PoE"


def quota(request: http.ApiRequest) -> http.Answer:
    body, headers = container().quota_desk.status(
        request.caller,
        request.header(POE_HEADER),
        RequestMeta(
            correlation_id=request.correlation_id,
            route=request.route,
            tenant_header=request.header(http.TENANT_HEADER),
        ),
    )
    return http.Answer(body, headers)


ROUTES = {("GET", http.QUOTA_PATH): quota}

cold_start("check_quota")  # in Lambda: a missing or malformed setting stops the init


@instrumented
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return http.serve(event, ROUTES, container, context)
    signer = container()
    return signer.quota_desk.step(
        signer.tokens.authenticate_iam(event.get("opToken")),
        event.get("action"),
        poe=event.get("poe"),
        artifact_bytes=event.get("artifactBytes"),
        sealed=event.get("reservation"),
    )
