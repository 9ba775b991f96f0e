"""A local API Gateway (REST) for the Signer: HTTPS with required client certificates.

It reads ``template.yaml`` for the routes, the authorizer and the gateway responses,
runs the REQUEST authorizer, builds the REST proxy event (with
``requestContext.identity.clientCert`` as API Gateway's mTLS custom domain does) and
invokes the function handler in process, as Lambda would.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509

from local.tls import peer_certificate_pem

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION, API_ID, STAGE = "123456789012", "us-east-1", "local", "v1"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


class LambdaContext:
    """The parts of the Lambda context object that Powertools reads."""

    def __init__(self, function_name: str, timeout_seconds: float = 30.0) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def load_handler(code_uri: str, name: str) -> Any:
    path = ROOT / code_uri / "app.py"
    spec = importlib.util.spec_from_file_location(f"functions_{name}_app", path)
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: dict[str, str]  # header → mapping expression ('static' or context.authorizer.x)
    template: str


class Api:
    """What the gateway knows of the API, read from the template."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        resources = template["Resources"]
        self.functions: dict[str, str] = {}
        self.routes: list[Route] = []
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            self.functions[logical_id] = props["CodeUri"]
            for event in (props.get("Events") or {}).values():
                if event.get("Type") == "Api":
                    spec = event["Properties"]
                    self.routes.append(Route(spec["Method"].upper(), spec["Path"], logical_id))
        api = next(r for r in resources.values() if r["Type"] == "AWS::Serverless::Api")["Properties"]
        auth = api.get("Auth", {})
        authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
        self.authorizer = authorizer["FunctionArn"]["Fn::GetAtt"][0]
        self.identity_headers = list(authorizer.get("Identity", {}).get("Headers", []) or [])
        self.responses: dict[str, GatewayResponse] = {}
        for kind, spec in (api.get("GatewayResponses") or {}).items():
            headers = dict((spec.get("ResponseParameters") or {}).get("Headers") or {})
            templates = spec.get("ResponseTemplates") or {}
            self.responses[kind] = GatewayResponse(
                int(spec.get("StatusCode", 0)), headers, next(iter(templates.values()), "")
            )
        for resource in resources.values():  # the raw AWS::ApiGateway::GatewayResponse form
            if resource["Type"] == "AWS::ApiGateway::GatewayResponse":
                props = resource["Properties"]
                headers = {
                    k.removeprefix("gatewayresponse.header."): v
                    for k, v in (props.get("ResponseParameters") or {}).items()
                }
                templates = props.get("ResponseTemplates") or {}
                self.responses[props["ResponseType"]] = GatewayResponse(
                    int(props.get("StatusCode", 0)), headers, next(iter(templates.values()), "")
                )

    def route(self, method: str, path: str) -> Route | None:
        return next((r for r in self.routes if r.method == method and r.path == path), None)

    def render(
        self,
        kind: str,
        authorizer: Mapping[str, Any],
        default_status: int,
        request_id: str = "",
        message: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        """A gateway response as API Gateway renders it: header mappings (``'static'`` or
        ``context.*``) and plain ``$context.*`` substitution in the body template."""
        response = self.responses.get(kind) or self.responses.get(
            "DEFAULT_5XX" if default_status >= 500 else "DEFAULT_4XX"
        )
        if response is None:
            return default_status, {"Content-Type": "application/json"}, b'{"message":"error"}'
        context = {f"authorizer.{k}": str(v) for k, v in authorizer.items()}
        context.update({"requestId": request_id, "error.messageString": json.dumps(message)})

        def value(expression: str) -> str:
            if expression.startswith("'") and expression.endswith("'"):
                return expression[1:-1]
            if expression.startswith("context."):
                return context.get(expression.removeprefix("context."), "")
            return ""

        headers = {name: value(str(expr)) for name, expr in response.headers.items()}
        headers = {k: v for k, v in headers.items() if v}
        body = re.sub(r"\$context\.([\w.]+)", lambda m: context.get(m.group(1), ""), response.template)
        return response.status or default_status, headers, body.encode()


def client_cert_context(pem: str | None) -> dict[str, Any] | None:
    if pem is None:
        return None
    cert = x509.load_pem_x509_certificate(pem.encode())
    return {
        "clientCertPem": pem,
        "subjectDN": cert.subject.rfc4514_string(),
        "issuerDN": cert.issuer.rfc4514_string(),
        "serialNumber": format(cert.serial_number, "x"),
        "validity": {
            "notBefore": cert.not_valid_before_utc.strftime("%b %d %H:%M:%S %Y GMT"),
            "notAfter": cert.not_valid_after_utc.strftime("%b %d %H:%M:%S %Y GMT"),
        },
    }


class Gateway:
    def __init__(self, template: Mapping[str, Any]) -> None:
        self.api = Api(template)
        self.handlers = {name: load_handler(code_uri, name) for name, code_uri in self.api.functions.items()}

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self.handlers[function](event, LambdaContext(function))

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        client_cert_pem: str | None,
        source_ip: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        path = url.path
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        request_id = str(uuid.uuid4())
        route = self.api.route(method, path)
        if route is None:
            return self.api.render(
                "MISSING_AUTHENTICATION_TOKEN", {}, 403, request_id, "Missing Authentication Token"
            )
        if len(body) > MAX_BODY_BYTES:
            return self.api.render("REQUEST_TOO_LARGE", {}, 413, request_id, "Request Too Long")
        lowered = {k.lower() for k in headers}
        identity = {
            "sourceIp": source_ip,
            "userAgent": headers.get("User-Agent", ""),
            "clientCert": client_cert_context(client_cert_pem),
        }
        request_context = {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "stage": STAGE,
            "requestId": request_id,
            "resourcePath": route.path,
            "httpMethod": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "domainName": "127.0.0.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": identity,
        }
        common = {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "pathParameters": None,
            "stageVariables": None,
        }
        if any(h.lower() not in lowered for h in self.api.identity_headers):
            return self.api.render("UNAUTHORIZED", {}, 401, request_id, "Unauthorized")
        authorizer_event = {
            "type": "REQUEST",
            "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{route.path}",
            **common,
            "requestContext": request_context,
        }
        started = time.perf_counter()
        try:
            decision = self.invoke(self.api.authorizer, authorizer_event)
            statement = decision["policyDocument"]["Statement"][0]
            allowed = statement["Effect"] == "Allow"
        except Exception:
            return self.api.render("AUTHORIZER_FAILURE", {}, 500, request_id, "Internal server error")
        context = dict(decision.get("context") or {})
        if not allowed:
            return self.api.render("ACCESS_DENIED", context, 403, request_id, "Forbidden")
        # A body that is not UTF-8 cannot travel as a JSON string: base64, so the function
        # (not the gateway) decides what it is.
        binary = bool(body) and (not _is_text(headers) or not _is_utf8(body))
        proxy_event = {
            **common,
            "body": (base64.b64encode(body).decode() if binary else body.decode()) if body else None,
            "isBase64Encoded": binary,
            "requestContext": {
                **request_context,
                "authorizer": {
                    **context,
                    "principalId": decision["principalId"],
                    "integrationLatency": int((time.perf_counter() - started) * 1000),
                },
            },
        }
        try:
            answer = self.invoke(route.function, proxy_event)
        except Exception:
            # Lambda reports a function error: API Gateway answers 502 from DEFAULT_5XX.
            return self.api.render("DEFAULT_5XX", {}, 502, request_id, "Internal server error")
        out_headers = {k: str(v) for k, v in (answer.get("headers") or {}).items()}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(str(v) for v in values)
        raw = answer.get("body") or ""
        data = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
        return int(answer["statusCode"]), out_headers, data


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_text(headers: Mapping[str, str]) -> bool:
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
    return "json" in content_type or content_type.startswith("text/")


def access_line(
    method: str, target: str, status: int, headers: Mapping[str, str], data: bytes, started: float
) -> str:
    """``POST /api/v1/signer/sign/dsse 200 - 38.2 ms <correlation id>``: method, path, status, the
    problem's code (or -), latency, correlation id. Never a header value but the correlation id."""
    code = "-"
    if status >= 400 and _is_text(headers):
        try:
            code = str(json.loads(data).get("code") or "-")
        except (ValueError, AttributeError):
            code = "-"
    correlation = next((v for k, v in headers.items() if k.lower() == "x-correlation-id"), "-")
    path = urlsplit(target).path
    return f"{method} {path} {status} {code} {(time.perf_counter() - started) * 1000:.1f} ms {correlation}"


def handler_for(gateway: Gateway, log: Any = None) -> type:
    class GatewayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms delayed-ACK stalls
        server_version = "signer-local-gateway"

        def log_message(self, fmt: str, *args: Any) -> None:
            if log:
                log(fmt % args)

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            pass  # one access line of our own per request (below), not http.server's

        def _serve(self) -> None:
            started = time.perf_counter()
            declared = self.headers.get("Content-Length", "0").strip() or "0"
            if not declared.isdigit():
                # Like API Gateway's front door: a malformed length is the client's error, and
                # the connection cannot be reused (the body's end is unknown).
                self.close_connection = True
                self._answer(400, {"Content-Type": "application/json"}, b'{"message":"Bad Request"}', started)
                return
            length = int(declared)
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # not read: answered before the body arrives
                status, out_headers, data = gateway.api.render(
                    "REQUEST_TOO_LARGE", {}, 413, str(uuid.uuid4()), "Request Too Long"
                )
                self._answer(status, out_headers, data, started)
                return
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            status, out_headers, data = gateway.handle(
                self.command, self.path, headers, body, peer_certificate_pem(self), self.client_address[0]
            )
            self._answer(status, out_headers, data, started)

        def _answer(self, status: int, out_headers: dict[str, str], data: bytes, started: float) -> None:
            if log:
                log(access_line(self.command, self.path, status, out_headers, data, started))
            self.send_response(status)
            for name, value in out_headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        # API Gateway answers every method; one without a route is MISSING_AUTHENTICATION_TOKEN.
        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
        do_HEAD = do_OPTIONS = do_TRACE = do_QUERY = do_CONNECT = _serve

    return GatewayHandler
