"""sign_dsse: ``POST /api/v1/signer/sign/dsse`` and ``GET /api/v1/signer/keys``; last step of SigningPipeline.

Direct input ``{"opToken": str, "request": {...the §3.2 body...}, "idempotencyKey"?: str}``
→ the §3.2 200 body; failures raise the error named after the spec's code (e.g. ``InvalidRequest``).
"""

from typing import Any

from aws_lambda_powertools.event_handler import Response

from stellaops_signer import http
from stellaops_signer.domain.statement import SignRequest
from stellaops_signer.observability import logger, metrics
from stellaops_signer.usecases.sign_dsse import RequestMeta, keys_document
from stellaops_signer.wiring import container

app = http.create_resolver()


@app.post(http.SIGN_PATH)
def sign() -> Response[str]:
    event = app.current_event
    result = container().sign_dsse(
        http.principal_from_context(event.request_context.authorizer.get_context()),
        lambda: SignRequest.parse(event.decoded_body),
        RequestMeta(
            correlation_id=app.context["correlation_id"],
            route=http.SIGN_PATH,
            tenant_header=http.header(event.headers, http.TENANT_HEADER),
            idempotency_key=http.header(event.headers, http.IDEMPOTENCY_HEADER),
        ),
    )
    return http.json_response(result.body, result.headers)


@app.get(http.KEYS_PATH)
def keys() -> Response[str]:
    http.principal_from_context(app.current_event.request_context.authorizer.get_context())
    return http.json_response(keys_document(container().key_signer))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return app.resolve(event, context)
    signer = container()
    principal = signer.authenticator.authenticate_iam(event.get("opToken"))
    result = signer.sign_dsse(
        principal,
        lambda: SignRequest.from_mapping(event.get("request")),
        RequestMeta(
            correlation_id=http.correlation_id(event.get("headers")),
            route="pipeline:SignDsse",
            idempotency_key=event.get("idempotencyKey"),
        ),
    )
    return result.body
