"""The HTTP edge: API Gateway events in, problem+json and JSON out, one error table.

Everything the handlers share about HTTP lives here so that each ``functions/*/app.py``
stays a few lines: the route table dispatch with its error mapping, the authorizer
context, the correlation id and the RFC 7807 body.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from stellaops_signer.adapters.ids import random_id
from stellaops_signer.domain.binding import Principal
from stellaops_signer.domain.errors import (
    AuthenticationError,
    InternalError,
    InvalidToken,
    NotFound,
    SignerError,
)
from stellaops_signer.domain.jose import compact_json
from stellaops_signer.observability import access, count_outcome, logger

if TYPE_CHECKING:  # annotations only: nothing more is imported at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from stellaops_signer.domain.jose import JsonObject, JsonValue
    from stellaops_signer.usecases.authenticate import Authenticator

SIGN_PATH = "/api/v1/signer/sign/dsse"
VERIFY_PATH = "/api/v1/signer/verify/referrers"
QUOTA_PATH = "/api/v1/signer/quota"
KEYS_PATH = "/api/v1/signer/keys"

CORRELATION_HEADER = "X-Correlation-Id"
_CORRELATION_KEY = CORRELATION_HEADER.lower()
TENANT_HEADER = "X-StellaOps-Tenant"
IDEMPOTENCY_HEADER = "Idempotency-Key"
PROBLEM_TYPE_BASE = "https://stellaops.dev/problems/"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
_SAFE_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
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


def correlation_id(headers: Mapping[str, str] | None, minted: object = None) -> str:
    """Echo a well-formed ``X-Correlation-Id``; else the one the authorizer minted for this request
    (``minted``: one id across the authorizer, the function and the audit record); else mint one.
    Never echo arbitrary bytes."""
    return _correlation(header(headers, CORRELATION_HEADER), minted)


def _correlation(sent: object, minted: object) -> str:
    for candidate in (sent, minted):
        if isinstance(candidate, str) and _SAFE_CORRELATION_ID.fullmatch(candidate):
            return candidate
    return random_id()


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


def problem(error: SignerError, correlation: str) -> tuple[int, dict[str, str], JsonObject]:
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


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """The parts of an API Gateway REST proxy event the functions read."""

    method: str
    resource: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes | None
    authorizer: Mapping[str, JsonValue]
    correlation_id: str
    #: The mTLS client certificate API Gateway passes on (``requestContext.identity.clientCert``).
    client_cert_pem: str | None = None
    lambda_context: LambdaContext | None = None
    #: Who calls: the authorizer's principal, once ``serve`` has confirmed it against the token.
    principal: Principal | None = None
    #: The headers by lower-case name (the first of a name, as ``header`` finds it).
    lowered: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(
        cls, event: Mapping[str, JsonValue], lambda_context: LambdaContext | None = None
    ) -> ApiRequest:
        headers = event.get("headers") or {}
        raw = event.get("body")
        body = None
        if raw is not None:
            body = base64.b64decode(raw) if event.get("isBase64Encoded") else str(raw).encode("utf-8")
        context = event.get("requestContext") or {}
        certificate = ((context.get("identity") or {}).get("clientCert") or {}).get("clientCertPem")
        lowered: dict[str, str] = {}
        for name, value in headers.items():
            lowered.setdefault(name.lower(), value)
        return cls(
            method=str(event.get("httpMethod", "")),
            resource=str(event.get("resource") or context.get("resourcePath") or ""),
            headers=headers,
            query=event.get("queryStringParameters") or {},
            body=body,
            authorizer=context.get("authorizer") or {},
            correlation_id=_correlation(
                lowered.get(_CORRELATION_KEY), (context.get("authorizer") or {}).get("correlationId")
            ),
            client_cert_pem=certificate if isinstance(certificate, str) else None,
            lambda_context=lambda_context,
            lowered=lowered,
        )

    def header(self, name: str) -> str | None:
        return self.lowered.get(name.lower())

    def confirmed(self, principal: Principal) -> ApiRequest:
        """This request with its caller confirmed (``dataclasses.replace``, without its per-call
        introspection of the fields)."""
        return ApiRequest(
            self.method, self.resource, self.headers, self.query, self.body, self.authorizer,
            self.correlation_id, self.client_cert_pem, self.lambda_context, principal, self.lowered,
        )  # fmt: skip

    @property
    def route(self) -> str:
        """``METHOD /path``: how audit records and log lines name an HTTP route."""
        return f"{self.method} {self.resource}"

    @property
    def caller(self) -> Principal:
        """The confirmed principal (``serve`` sets it before any route runs)."""
        if self.principal is None:
            raise InvalidToken("the request was not authenticated")
        return self.principal


# Not frozen: made on every request's path and used at once (a frozen init costs 5x; decision 0017).
@dataclass(slots=True)
class Answer:
    body: Mapping[str, JsonValue]
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int = 200


Route = Callable[[ApiRequest], Answer]


def proxy_answer(status: int, headers: Mapping[str, str], body: Mapping[str, JsonValue]) -> JsonObject:
    """The Lambda proxy integration answer API Gateway expects."""
    return {
        "statusCode": status,
        "headers": dict(headers),
        "body": compact_json(body),
        "isBase64Encoded": False,
    }


class Gate(Protocol):
    """Who may pass from a proxy event to a route (the composition root implements it)."""

    def confirm_caller(self, claimed: Principal, request: ApiRequest) -> Principal:
        """``claimed`` if the event's token proves it; else audit the refusal and raise InvalidToken."""
        ...


def serve(
    event: Mapping[str, JsonValue],
    routes: Mapping[tuple[str, str], Route],
    gate: Callable[[], Gate],
    lambda_context: LambdaContext | None = None,
) -> JsonObject:
    """Dispatch a REST proxy event to its route once its caller is confirmed: the authorizer's
    context and a valid token for the same principal (spec §6). Every answer is JSON or
    problem+json and carries the correlation id. Unknown errors become a generic 500 with the
    stack in the log only."""
    started = time.perf_counter()
    request = ApiRequest.from_event(event, lambda_context)
    correlation = request.correlation_id
    logger.set_correlation_id(correlation)
    try:
        route = routes.get((request.method, request.resource))
        if route is None:
            raise NotFound("no such route")
        principal = gate().confirm_caller(principal_from_context(request.authorizer), request)
        request = request.confirmed(principal)
        answer = route(request)
    except SignerError as error:
        count_outcome(error.code)
        _access(request, error.status, error.code, started, "")
        return proxy_answer(*problem(error, correlation))
    except Exception:
        logger.exception("unexpected error")
        count_outcome(InternalError.code)
        _access(request, 500, InternalError.code, started, "")
        return proxy_answer(*problem(InternalError("an unexpected error occurred"), correlation))
    count_outcome("ok")
    _access(request, answer.status, "", started, str(answer.body.get("auditId", "")))
    headers = {"Content-Type": JSON, CORRELATION_HEADER: correlation, **answer.headers}
    nonce = request.authorizer.get("dpopNonce")
    if nonce:  # RFC 9449 §8.2: a fresh nonce on successful answers too
        headers["DPoP-Nonce"] = str(nonce)
    return proxy_answer(answer.status, headers, answer.body)


def _access(request: ApiRequest, status: int, code: str, started: float, audit_id: str) -> None:
    """The one INFO line of a request (spec §5.7): route, status, code, latency, tenant, auditId —
    never a token, a proof or a PoE."""
    tenant = request.principal.tenant if request.principal else str(request.authorizer.get("tid", ""))
    access(
        {
            "route": request.route,
            "status": status,
            "code": code,
            "latencyMs": round((time.perf_counter() - started) * 1000, 1),
            "tenant": tenant,
            "auditId": audit_id,
        }
    )


def is_proxy_event(event: Mapping[str, JsonValue]) -> bool:
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


def principal_from_context(context: Mapping[str, JsonValue] | None) -> Principal:
    """Rebuild the principal the authorizer proved; a request without one is refused."""
    if not context or not context.get("tid") or not context.get("sub"):
        raise InvalidToken("the request was not authenticated")
    binding = context.get("binding")
    if binding not in ("mtls", "dpop"):
        raise InvalidToken("the request was not sender-constrained")
    return Principal(  # subject, client id, tenant, installation, scopes, binding, sender key
        str(context["sub"]),
        str(context.get("clientId", "")),
        str(context["tid"]),
        str(context.get("inst", "")),
        frozenset(str(context.get("scope", "")).split()),
        binding,
        str(context.get("senderKey", "")),
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


def all_values(event: Mapping[str, JsonValue], name: str) -> tuple[str, ...]:
    """Every value of a header, from ``multiValueHeaders`` (REST events keep only the last in
    ``headers``)."""
    lowered = name.lower()
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == lowered:
            return tuple(values or ())
    single = header(event.get("headers"), name)
    return (single,) if single is not None else ()


def is_authorizer_event(event: Mapping[str, JsonValue]) -> bool:
    return event.get("type") == "REQUEST" and "methodArn" in event


#: ``arn:<partition>:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>``, the
#: ``methodArn`` of a REST REQUEST authorizer event; anything else is not answered (an exception:
#: API Gateway then answers 500, fail closed).
_METHOD_ARN = re.compile(
    r"(arn:aws[a-z-]*:execute-api:[a-z0-9-]+:\d{12}:[A-Za-z0-9]+/[A-Za-z0-9_-]+)"
    r"/(GET|POST|PUT|PATCH|HEAD|DELETE|OPTIONS)/([/.a-zA-Z0-9_{}+-]+)"
)


def authorizer_policy(
    method_arn: str, principal_id: str, allow: bool, context: Mapping[str, str]
) -> JsonObject:
    """The authorizer's IAM policy: Allow exactly the invoked method and path, or Deny every route of
    the stage (API Gateway's format; the same document Powertools' ``APIGatewayAuthorizerResponse``
    builds, without its per-request objects)."""
    match = _METHOD_ARN.fullmatch(method_arn)
    if match is None:
        raise ValueError("not the methodArn of a REST API method")
    stage, method, path = match.groups()
    resource = f"{stage}/{method}/{path.lstrip('/')}" if allow else f"{stage}/*/*"
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allow else "Deny",
                    "Resource": [resource],
                }
            ],
        },
        "context": dict(context),
    }


def authorizer_answer(
    event: Mapping[str, JsonValue],
    authenticator: Authenticator,
    record_denial: Callable[[SignerError, str, str, str], None],
) -> JsonObject:
    """Answer a REST REQUEST authorizer event: Allow with the principal, or Deny with the
    problem the gateway response renders as a 401 (template.yaml ``GatewayResponses``).
    Both carry a fresh DPoP nonce for the answer's ``DPoP-Nonce`` header.

    ``record_denial(error, method, path, correlation)`` audits a refusal. Unexpected errors
    propagate: API Gateway then answers 500 (fail closed).
    """
    from stellaops_signer.usecases.authenticate import RequestFacts

    lowered: dict[str, str] = {}
    for name, value in (event.get("headers") or {}).items():
        lowered.setdefault(name.lower(), value)  # the first of a name, as ``header`` finds it
    correlation = _correlation(lowered.get(_CORRELATION_KEY), None)
    logger.set_correlation_id(correlation)
    identity = (event.get("requestContext") or {}).get("identity") or {}
    client_cert = (identity.get("clientCert") or {}).get("clientCertPem")
    facts = RequestFacts(
        method=str(event.get("httpMethod", "")),
        path=str(event.get("path", "")),
        authorization=lowered.get("authorization"),
        dpop_proofs=all_values(event, "DPoP"),
        client_cert_pem=client_cert if isinstance(client_cert, str) else None,
    )
    method_arn = str(event["methodArn"])
    try:
        principal = authenticator.authenticate(facts)
    except AuthenticationError as error:
        access({"route": f"{facts.method} {facts.path}", "status": error.status, "code": error.code})
        count_outcome(error.code)
        record_denial(error, facts.method, facts.path, correlation)
        error.headers.setdefault("DPoP-Nonce", authenticator.fresh_nonce())
        return authorizer_policy(method_arn, "anonymous", False, denial_context(error, correlation))
    # An allowed request is counted once, by its outcome in the function it reaches (``serve``).
    context = {**principal_context(principal, correlation), "dpopNonce": authenticator.fresh_nonce()}
    return authorizer_policy(method_arn, principal.subject, True, context)


__all__ = [
    "CORRELATION_HEADER",
    "DPOP_ALGORITHMS",
    "IDEMPOTENCY_HEADER",
    "JSON",
    "KEYS_PATH",
    "PROBLEM_JSON",
    "PROBLEM_TYPE_BASE",
    "QUOTA_PATH",
    "SIGN_PATH",
    "TENANT_HEADER",
    "VERIFY_PATH",
    "Answer",
    "ApiRequest",
    "Gate",
    "Route",
    "all_values",
    "authorizer_answer",
    "authorizer_policy",
    "challenge",
    "correlation_id",
    "denial_context",
    "header",
    "is_authorizer_event",
    "is_proxy_event",
    "principal_context",
    "principal_from_context",
    "problem",
    "proxy_answer",
    "serve",
    "template_safe",
]
