"""sign_dsse: ``POST /api/v1/signer/sign/dsse`` and ``GET /api/v1/signer/keys``; last step of SigningPipeline.

Direct input ``{"opToken": str, "request": {...the §3.2 body...}, "reservation"?: {...sealed, from
check_quota...}, "idempotencyKey"?: str, "resultByReference"?: bool}``
→ the §3.2 200 body, or ``{"result": {"s3Uri", "sha256", "size"}}`` when it is larger than
200 KiB or ``resultByReference`` (a batch's items) asks for it; failures raise the error named after
the spec's code (e.g. ``InvalidRequest``).
"""

import dataclasses
from typing import Any

from stellaops_signer import http
from stellaops_signer.domain.statement import SignRequest
from stellaops_signer.observability import instrumented
from stellaops_signer.usecases.meta import RequestMeta, body_digest, direct_request_meta
from stellaops_signer.wiring import cold_start, container


def sign(request: http.ApiRequest) -> http.Answer:
    result = container().sign_dsse(
        request.caller,
        lambda: SignRequest.parse(request.body),
        RequestMeta(
            correlation_id=request.correlation_id,
            route=request.route,
            tenant_header=request.header(http.TENANT_HEADER),
            idempotency_key=request.header(http.IDEMPOTENCY_HEADER),
            body_bytes=len(request.body or b""),
            body_sha256=body_digest(request.body) if request.header(http.IDEMPOTENCY_HEADER) else "",
            lambda_context=request.lambda_context,
        ),
    )
    return http.Answer(result.body, result.headers)


def keys(request: http.ApiRequest) -> http.Answer:
    return http.Answer(container().keys_document(request.caller, request.header(http.TENANT_HEADER)))


ROUTES = {("POST", http.SIGN_PATH): sign, ("GET", http.KEYS_PATH): keys}
cold_start("sign_dsse")  # in Lambda: a missing setting or a misconfigured key stops the init


@instrumented
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return http.serve(event, ROUTES, container, context)
    signer = container()
    correlation = http.correlation_id(event.get("headers"))
    meta = direct_request_meta(
        event.get("request"), "pipeline:SignDsse", event.get("idempotencyKey"), correlation
    )
    result = signer.sign_dsse(
        signer.tokens.authenticate_iam(event.get("opToken")),
        lambda: SignRequest.from_mapping(event.get("request")),
        dataclasses.replace(meta, lambda_context=context),
        event.get("reservation"),
    )
    return signer.pipeline_result(result.body, by_reference=event.get("resultByReference") is True)
