"""verify_release: ``GET /api/v1/signer/verify/referrers?digest=sha256:<hex>[&repository=<registry>/<path>]``
(spec §3.3); the VerifyRelease step of SigningPipeline.

Direct input ``{"opToken": str, "digest": "sha256:…"}`` → ``{"verdict": {...the §3.3 body...}}``;
an untrusted scanner raises ``ReleaseUntrusted``, a registry failure ``ReleaseUnverifiable``.
"""

from typing import Any

from stellaops_signer import http
from stellaops_signer.observability import instrumented
from stellaops_signer.usecases.meta import RequestMeta
from stellaops_signer.wiring import cold_start, container


def referrers(request: http.ApiRequest) -> http.Answer:
    verdict = container().release_query(
        request.caller,
        request.query.get("digest"),
        request.query.get("repository"),
        RequestMeta(
            correlation_id=request.correlation_id,
            route=request.route,
            tenant_header=request.header(http.TENANT_HEADER),
        ),
    )
    return http.Answer(verdict.to_json())


ROUTES = {("GET", http.VERIFY_PATH): referrers}

cold_start("verify_release")  # in Lambda: a missing or malformed setting stops the init


@instrumented
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return http.serve(event, ROUTES, container, context)
    signer = container()
    verdict = signer.release_query.require_trusted(
        signer.tokens.authenticate_iam(event.get("opToken")),
        event.get("digest"),
        event.get("repository"),
        RequestMeta(correlation_id=http.correlation_id(event.get("headers")), route="pipeline:VerifyRelease"),
    )
    return {"verdict": verdict.to_json()}
