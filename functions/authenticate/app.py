"""authenticate: the API's Lambda REQUEST authorizer, and the first step of SigningPipeline.

Authorizer event → Allow (context: sub, clientId, tid, inst, scope, binding, senderKey,
correlationId) or Deny (context: errorCode, errorTitle, errorDetail, wwwAuthenticate,
dpopNonce, correlationId), rendered as a 401 by the gateway responses.
Direct input ``{"opToken": str, "tenant"?: str}`` → ``{"principal": {...the Allow context...}}``;
failures raise ``InvalidToken`` (or ``TenantMismatch`` when ``tenant`` is not the token's).
"""

from typing import Any

from stellaops_signer import http
from stellaops_signer.observability import instrumented
from stellaops_signer.wiring import cold_start, container

cold_start("authenticate")  # in Lambda: a missing or malformed setting stops the init


@instrumented
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    signer = container()
    if http.is_authorizer_event(event):
        return http.authorizer_answer(event, signer.authenticator, signer.record_authentication_denial)
    principal = signer.tokens.authenticate_step(event.get("opToken"), event.get("tenant"))
    return {"principal": http.principal_context(principal, http.correlation_id(event.get("headers")))}
