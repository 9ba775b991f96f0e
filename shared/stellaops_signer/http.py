"""The HTTP edge: API Gateway events in, problem+json and JSON out, one error table.

Everything the handlers share about HTTP lives here so that each ``functions/*/app.py``
stays a few lines: the resolver with its error middleware, the authorizer context, the
correlation id and the RFC 7807 body.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import (
    AuthenticationError,
    InternalError,
    InvalidToken,
    NotFound,
    SignerError,
)
from stellaops_signer.observability import count_outcome, logger

SIGN_PATH = "/api/v1/signer/sign/dsse"
VERIFY_PATH = "/api/v1/signer/verify/referrers"
QUOTA_PATH = "/api/v1/signer/quota"
KEYS_PATH = "/api/v1/signer/keys"

CORRELATION_HEADER = "X-Correlation-Id"
TENANT_HEADER = "X-StellaOps-Tenant"
IDEMPOTENCY_HEADER = "Idempotency-Key"
PROBLEM_TYPE_BASE = "https://stellaops.dev/problems/"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
_SAFE_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DPOP_ALGORITHMS = "ES256 EdDSA"


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (API Gateway keeps the client's spelling)."""
    if not headers:
        return None
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def correlation_id(headers: Mapping[str, str] | None) -> str:
    """Echo a well-formed ``X-Correlation-Id``; otherwise mint one (never echo arbitrary bytes)."""
    given = header(headers, CORRELATION_HEADER)
    if given and _SAFE_CORRELATION_ID.match(given):
        return given
    return str(uuid.uuid4())


_NOT_TEMPLATE_SAFE = re.compile(r'["\\]|[^\x20-\x7e]')


def template_safe(text: str, limit: int = 200) -> str:
    """Text a gateway response template may substitute into JSON: no quote, backslash or control
    character (gateway templates cannot escape), and bounded, since details may echo the caller."""
    return _NOT_TEMPLATE_SAFE.sub("'", text)[:limit]


def challenge(error: AuthenticationError) -> str:
    """The ``WWW-Authenticate`` value for a 401 (RFC 6750 §3, RFC 9449 §7.1)."""
    parts = [f'error="{error.code}"', f'error_description="{template_safe(error.detail)}"']
    if error.scheme == "DPoP":
        parts.append(f'algs="{DPOP_ALGORITHMS}"')
    return f"{error.scheme} " + ", ".join(parts)


def problem(error: SignerError, correlation: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and RFC 7807 body of a refusal."""
    headers = {"Content-Type": PROBLEM_JSON, CORRELATION_HEADER: correlation, **error.headers}
    if isinstance(error, AuthenticationError):
        headers["WWW-Authenticate"] = challenge(error)
    body = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "correlationId": correlation,
    }
    return error.status, headers, body


def problem_response(error: SignerError, correlation: str) -> Response[str]:
    status, headers, body = problem(error, correlation)
    return Response(status_code=status, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def json_response(
    body: Mapping[str, Any], headers: Mapping[str, str] | None = None, status: int = 200
) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers=dict(headers or {}),
    )


def _errors_as_problems(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    correlation = correlation_id(app.current_event.headers)
    app.append_context(correlation_id=correlation)  # type: ignore[no-untyped-call]
    logger.set_correlation_id(correlation)
    try:
        response = next_middleware(app)
        count_outcome("ok" if response.status_code < 400 else str(response.status_code))
    except SignerError as error:
        logger.info("request refused", extra={"code": error.code, "status": error.status})
        count_outcome(error.code)
        response = problem_response(error, correlation)
    except Exception:
        logger.exception("unexpected error")
        count_outcome(InternalError.code)
        response = problem_response(InternalError("an unexpected error occurred"), correlation)
    response.headers[CORRELATION_HEADER] = correlation
    return response


def create_resolver() -> APIGatewayRestResolver:
    """A REST-API resolver whose every answer is JSON or problem+json with a correlation id."""
    app = APIGatewayRestResolver()
    app.use(middlewares=[_errors_as_problems])

    @app.not_found
    def _not_found(_: Exception) -> Response[str]:
        correlation = correlation_id(app.current_event.headers)
        return problem_response(NotFound("no such route"), correlation)

    return app


def is_proxy_event(event: Mapping[str, Any]) -> bool:
    """True for an API Gateway REST proxy event; False for a direct (Step Functions) invocation."""
    return "httpMethod" in event and "requestContext" in event


# --- authorizer context: how the authorizer hands the proven principal to the functions ---------


def principal_context(principal: Principal, correlation: str) -> dict[str, str]:
    """Authorizer ``context`` (string values only, as API Gateway requires)."""
    return {
        "sub": principal.subject,
        "clientId": principal.client_id,
        "tid": principal.tenant,
        "inst": principal.installation,
        "scope": " ".join(sorted(principal.scopes)),
        "binding": principal.binding,
        "senderKey": principal.sender_key,
        "correlationId": correlation,
    }


def principal_from_context(context: Mapping[str, Any] | None) -> Principal:
    """Rebuild the principal the authorizer proved; a request without one is refused."""
    if not context or not context.get("tid") or not context.get("sub"):
        raise InvalidToken("the request was not authenticated")
    binding = context.get("binding")
    if binding not in ("mtls", "dpop"):
        raise InvalidToken("the request was not sender-constrained")
    return Principal(
        subject=str(context["sub"]),
        client_id=str(context.get("clientId", "")),
        tenant=str(context["tid"]),
        installation=str(context.get("inst", "")),
        scopes=frozenset(str(context.get("scope", "")).split()),
        binding=binding,
        sender_key=str(context.get("senderKey", "")),
    )


def denial_context(error: SignerError, correlation: str) -> dict[str, str]:
    """Authorizer ``context`` of a denial: the gateway response renders it (template.yaml)."""
    _, headers, _ = problem(error, correlation)
    return {
        "errorCode": error.code,
        "errorTitle": error.title,
        "errorDetail": template_safe(error.detail),
        "wwwAuthenticate": headers.get("WWW-Authenticate", ""),
        "dpopNonce": headers.get("DPoP-Nonce", ""),
        "correlationId": correlation,
    }


def is_authorizer_event(event: Mapping[str, Any]) -> bool:
    return event.get("type") == "REQUEST" and "methodArn" in event


def authorizer_answer(event: Mapping[str, Any], authenticate: Any, record_denial: Any) -> dict[str, Any]:
    """Answer a REST REQUEST authorizer event: Allow with the principal, or Deny with the
    problem the gateway response renders as a 401 (template.yaml ``GatewayResponses``).

    ``authenticate(RequestFacts) -> Principal``; ``record_denial(error, facts, correlation)``.
    Unexpected errors propagate: API Gateway then answers 500 (fail closed).
    """
    from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
        APIGatewayAuthorizerRequestEvent,
        APIGatewayAuthorizerResponse,
    )

    from stellaops_signer.usecases.authenticate import RequestFacts

    request = APIGatewayAuthorizerRequestEvent(dict(event))
    headers = request.headers or {}
    correlation = correlation_id(headers)
    logger.set_correlation_id(correlation)
    client_cert = request.request_context.identity.client_cert
    facts = RequestFacts(
        method=request.http_method,
        path=request.path,
        authorization=header(headers, "Authorization"),
        dpop_proof=header(headers, "DPoP"),
        client_cert_pem=client_cert.client_cert_pem if client_cert else None,
    )
    try:
        principal = authenticate(facts)
    except AuthenticationError as error:
        logger.info("authentication refused", extra={"code": error.code, "path": facts.path})
        count_outcome(error.code)
        record_denial(error, facts, correlation)
        answer = APIGatewayAuthorizerResponse.from_route_arn(
            request.method_arn, "anonymous", context=denial_context(error, correlation)
        )
        answer.deny_all_routes()
        return answer.asdict()
    count_outcome("authenticated")
    answer = APIGatewayAuthorizerResponse.from_route_arn(
        request.method_arn, principal.subject, context=principal_context(principal, correlation)
    )
    arn = request.parsed_arn
    answer.allow_route(arn.http_method or "*", arn.resource)
    return answer.asdict()
