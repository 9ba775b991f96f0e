"""check_quota: ``GET /api/v1/signer/quota`` with the PoE in ``X-StellaOps-PoE`` (spec §3.4);
the CheckQuota and ReleaseQuota steps of SigningPipeline.

Direct input ``{"action": "reserve", "opToken": str, "poe": {"format": "jwt", "value": str},
"artifactBytes": int}`` → ``{"reservation": {...}, "plan": str}``; ``{"action": "release",
"reservation": {...}}`` → ``{"released": true}`` (the reservation is given back, refunded).
Failures raise the errors named after the spec's codes (``PlanThrottled``, ``QuotaExhausted``…).
"""

from typing import Any

from stellaops_signer import http
from stellaops_signer.domain.errors import InvalidRequest
from stellaops_signer.observability import logger, metrics
from stellaops_signer.usecases.meta import RequestMeta
from stellaops_signer.wiring import container

POE_HEADER = "X-StellaOps-PoE"


def quota(request: http.ApiRequest) -> http.Answer:
    body = container().quota_desk.status(
        http.principal_from_context(request.authorizer),
        request.header(POE_HEADER),
        RequestMeta(
            correlation_id=request.correlation_id,
            route=http.QUOTA_PATH,
            tenant_header=request.header(http.TENANT_HEADER),
        ),
    )
    return http.Answer(body)


ROUTES = {("GET", http.QUOTA_PATH): quota}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return http.serve(event, ROUTES, context)
    desk = container().quota_desk
    if event.get("action") == "release":
        reservation = http.reservation_from(event.get("reservation"))
        if reservation is None:
            raise InvalidRequest("release needs the reservation")
        return desk.release(reservation, refund=True)
    if event.get("action") != "reserve":
        raise InvalidRequest("action must be reserve or release")
    principal = container().tokens.authenticate_iam(event.get("opToken"))
    poe = (event.get("poe") or {}).get("value")
    artifact_bytes = event.get("artifactBytes")
    if type(artifact_bytes) is not int or artifact_bytes < 0:
        raise InvalidRequest("artifactBytes must be a non-negative integer")
    return desk.reserve(principal, poe, artifact_bytes)
