"""``signer-client``: sign a file through the Signer's HTTPS API and verify the answer.

Gets an OpTok from the Authority (client credentials over mTLS, bound to a DPoP key by
default), calls ``POST /api/v1/signer/sign/dsse`` with a DPoP proof per request (retrying
once when the Signer asks for a nonce) over mTLS, then verifies the DSSE envelope with the
key published at ``/api/v1/signer/keys`` and checks that the signed Statement names the
file's digest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import requests

from local.dpop import DpopKey
from local.scanner_release import SCANNER_DIGEST
from local.verify import Refused, verify_answer

ROOT = Path(__file__).resolve().parent.parent
#: The scanner release the local stack publishes, signs and trusts.
LOCAL_SCANNER_DIGEST = SCANNER_DIGEST


class Failure(Exception):
    """What the client tells a person instead of a traceback: one message, one exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: What to do about each refusal code (spec §3.6), for people.
ADVICE = {
    "invalid_token": "get a fresh token from the Authority (is the client certificate the token's?)",
    "invalid_dpop_proof": "send a fresh DPoP proof signed by the key the token is bound to",
    "use_dpop_nonce": "retry with the DPoP-Nonce the Signer sent",
    "insufficient_scope": "ask the Authority for a token with the signer.sign scope",
    "tenant_mismatch": "use a token, PoE and X-StellaOps-Tenant of the same tenant",
    "entitlement_denied": "get a valid Proof-of-Entitlement from Licensing",
    "release_untrusted": "sign with a genuine, cosign-signed scanner release",
    "idempotency_conflict": "use a new Idempotency-Key for another request, or wait for the first",
    "artifact_too_large": "sign a smaller request, or split it",
    "plan_throttled": "wait and retry",
    "quota_exhausted": "wait for the daily reset, or ask for a larger plan",
    "release_unverifiable": "retry later: the release registry could not be read",
    "entitlement_unavailable": "retry later: Licensing could not be reached",
    "signing_unavailable": "retry later",
    "audit_unavailable": "retry later",
}


def refusal(answer: requests.Response, what: str) -> Failure:
    """A person's message for a refused call: title, detail, what to do, when to retry."""
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    title, code = problem.get("title") or f"HTTP {answer.status_code}", problem.get("code", "")
    lines = [
        f"{what} refused: {title} ({answer.status_code} {code})".rstrip(),
        f"  {problem.get('detail', answer.reason)}",
    ]
    if code in ADVICE:
        lines.append(f"  what to do: {ADVICE[code]}")
    if "Retry-After" in answer.headers:
        lines.append(f"  retry after: {answer.headers['Retry-After']} s")
    if problem.get("correlationId"):
        lines.append(f"  correlation id: {problem['correlationId']}")
    return Failure("\n".join(lines))


class SignerClient:
    """Calls the Signer as a scanner would: DPoP-bound by default (a fresh proof per request,
    one retry when the server asks for a nonce), or certificate-bound (``binding="mtls"``)."""

    def __init__(
        self, stack: dict[str, Any], client: str = "scanner-1", binding: str = "dpop", verbose: bool = False
    ) -> None:
        self.stack = stack
        if client not in stack["clients"]:
            known = ", ".join(sorted(stack["clients"]))
            raise Failure(f"no client certificate {client!r} in the local stack (known: {known})", 2)
        identity = stack["clients"][client]
        self.verbose = verbose
        self.http = requests.Session()
        self.http.trust_env = False  # this machine sets REQUESTS_CA_BUNDLE: use our CA, not the env's
        self.http.verify = stack["ca"]
        self.http.cert = (identity["cert"], identity["key"])
        self.dpop = DpopKey() if binding == "dpop" else None
        #: The last DPoP-Nonce the Signer handed out (RFC 9449 §8).
        self.nonce: str | None = None

    def token(self, scope: str = "signer.sign") -> str:
        url = self.stack["authority"] + "/token"
        headers = {"DPoP": self.dpop.proof("POST", url)} if self.dpop else {}
        answer = self._send(
            "POST", url, data={"grant_type": "client_credentials", "scope": scope}, headers=headers
        )
        if answer.status_code != 200:
            error = _json_or_empty(answer).get("error", answer.status_code)
            raise Failure(f"the Authority refused a token: {error}")
        return str(answer.json()["access_token"])

    def poe(self) -> dict[str, str]:
        """This installation's Proof-of-Entitlement from Licensing, bound to the DPoP key if any."""
        data = {"cnf_jkt": self.dpop.thumbprint} if self.dpop else {}
        answer = self._send("POST", self.stack["licensing"] + "/license/poe", data=data)
        if answer.status_code != 200:
            error = _json_or_empty(answer).get("error", answer.status_code)
            raise Failure(f"Licensing refused a Proof-of-Entitlement: {error}")
        return dict(answer.json())

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP exchange; a stack that is not running is a message, not a traceback."""
        try:
            answer = self.http.request(method, url, timeout=30, **kwargs)
        except requests.ConnectionError:
            raise Failure(f"cannot reach {url}: is the local stack running (make run)?", 3) from None
        except requests.RequestException as error:
            raise Failure(f"{url}: {error}", 3) from None
        if self.verbose:
            _show(answer)
        return answer

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        """One API call; with DPoP, retried once if the answer is ``use_dpop_nonce``."""
        url = self.stack["signer"] + path
        extra = kwargs.pop("headers", {})
        for attempt in (1, 2):
            headers = dict(extra)
            if self.dpop:
                headers["Authorization"] = f"DPoP {token}"
                headers["DPoP"] = self.dpop.proof(method, url, access_token=token, nonce=self.nonce)
            else:
                headers["Authorization"] = f"Bearer {token}"
            answer = self._send(method, url, headers=headers, **kwargs)
            self.nonce = answer.headers.get("DPoP-Nonce", self.nonce)
            challenge = answer.headers.get("WWW-Authenticate", "")
            if (
                attempt == 1
                and self.dpop
                and answer.status_code == 401
                and 'error="use_dpop_nonce"' in challenge
            ):
                continue
            return answer
        return answer

    def sign_file(
        self,
        path: Path,
        predicate_type: str,
        predicate: dict[str, Any],
        *,
        mode: str | None = None,
        bundle: str = "dsse",
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Sign ``path``, then verify the answer offline against the published keys (``local.verify``)."""
        if not path.is_file():
            raise Failure(f"{path}: not a file to sign", 2)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        options: dict[str, str] = {"returnBundle": bundle}
        if mode:
            options["signingMode"] = mode
        body = {
            "subject": [{"name": path.name, "digest": {"sha256": digest}}],
            "predicateType": predicate_type,
            "predicate": predicate,
            "scannerImageDigest": LOCAL_SCANNER_DIGEST,
            "poe": self.poe(),
            "options": options,
        }
        token = self.token()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self.call("POST", "/api/v1/signer/sign/dsse", token, json=body, headers=headers)
        if answer.status_code != 200:
            raise refusal(answer, "signing")
        result: dict[str, Any] = answer.json()
        keys = self.call("GET", "/api/v1/signer/keys", token).json()
        try:
            verify_answer(result, keys, [path])
        except Refused as refused:
            raise Failure(f"the answer does not verify: {refused}") from None
        return result

    def quota(self) -> dict[str, Any]:
        """``GET /quota`` for this client's licence (its PoE in ``X-StellaOps-PoE``, the raw JWT)."""
        token, poe = self.token(), self.poe()
        answer = self.call("GET", "/api/v1/signer/quota", token, headers={"X-StellaOps-PoE": poe["value"]})
        if answer.status_code != 200:
            raise refusal(answer, "the quota question")
        return dict(answer.json())


_SECRET_HEADERS = frozenset({"authorization", "dpop", "x-stellaops-poe"})


def _show(answer: requests.Response) -> None:
    """``-v``: the exchange's headers, on standard error; token, proof and PoE values never shown."""

    def shown(headers: Any) -> str:
        return "\n".join(
            f"    {k}: {'<' + str(len(v)) + ' characters, not shown>' if k.lower() in _SECRET_HEADERS else v}"
            for k, v in headers.items()
        )

    request = answer.request
    print(f"> {request.method} {request.url}\n{shown(request.headers)}", file=sys.stderr)
    print(f"< {answer.status_code} {answer.reason}\n{shown(answer.headers)}", file=sys.stderr)


def _json_or_empty(answer: requests.Response) -> dict[str, Any]:
    try:
        value = answer.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
    except Failure as failure:
        print(failure, file=sys.stderr)
        code = failure.exit_code
    raise SystemExit(code)


def build_parser() -> argparse.ArgumentParser:
    """The command line, every option with its help text."""
    parser = argparse.ArgumentParser(prog="signer-client", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stack",
        type=Path,
        default=ROOT / ".local" / "stack.json",
        help="the local stack's facts (make run writes them)",
    )
    parser.add_argument("--client", default="scanner-1", help="client certificate name under .local/pki")
    parser.add_argument("--binding", choices=("dpop", "mtls"), default="dpop", help="how the token is bound")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show each request's and answer's headers (never token values)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign", help="sign a file and verify the answer")
    sign.add_argument("file", type=Path, help="the file the Statement is about (its SHA-256 is the subject)")
    sign.add_argument(
        "--predicate-type", default="stella.ops/evidence@v1", help="one of the predicate catalogue"
    )
    sign.add_argument("--predicate", type=Path, help="JSON file with the predicate (default: file facts)")
    sign.add_argument("--out", type=Path, help="write the whole answer here")
    sign.add_argument("--mode", choices=("kms", "keyless"), help="signing mode (default: the installation's)")
    sign.add_argument(
        "--bundle", choices=("dsse", "sigstore"), default="dsse", help="also ask for a Sigstore bundle"
    )
    sign.add_argument("--idempotency-key", help="retries with this key get the first answer, uncharged")
    sub.add_parser("keys", help="print the verification keys (save them for verify --keys)")
    sub.add_parser("quota", help="print this client's plan, limits and usage")
    check = sub.add_parser("verify", help="verify a saved answer offline against a saved /keys document")
    check.add_argument("answer", type=Path, help="the answer saved by sign --out")
    check.add_argument("files", type=Path, nargs="*", help="files whose SHA-256 must be among the subjects")
    check.add_argument(
        "--keys", type=Path, required=True, help="the /keys document saved by the keys command"
    )
    flow = sub.add_parser(
        "pipeline",
        help="run a SigningPipeline execution (an events/signing_pipeline/ input, fresh token and PoE) "
        "in the local stack's moto and print each item's outcome",
    )
    flow.add_argument("input", type=Path, help="the execution input, single or batch")
    return parser


def _stack(path: Path) -> dict[str, Any]:
    try:
        stack: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise Failure(f"{path} not found: start the local stack first (make run)", 3) from None
    except (OSError, ValueError) as error:
        raise Failure(f"{path}: {error}", 2) from None
    return stack


def _run(args: argparse.Namespace) -> int:
    if args.command == "verify":
        return _verify(args.answer, args.keys, args.files)
    stack = _stack(args.stack)
    if args.command == "pipeline":
        try:
            execution_input = json.loads(args.input.read_text())
        except (OSError, ValueError) as error:
            raise Failure(f"{args.input}: {error}", 2) from None
        return _print_pipeline(run_pipeline(stack, execution_input))
    client = SignerClient(stack, args.client, args.binding, verbose=args.verbose)
    if args.command == "keys":
        answer = client.call("GET", "/api/v1/signer/keys", client.token())
        if answer.status_code != 200:
            raise refusal(answer, "the keys question")
        print(json.dumps(answer.json(), indent=2))
        return 0
    if args.command == "quota":
        print(json.dumps(client.quota(), indent=2))
        return 0
    if not args.file.is_file():
        raise Failure(f"{args.file}: not a file to sign", 2)
    try:
        predicate = (
            json.loads(args.predicate.read_text())
            if args.predicate
            else {"file": args.file.name, "size": args.file.stat().st_size}
        )
    except (OSError, ValueError) as error:
        raise Failure(f"cannot read the input: {error}", 2) from None
    result = client.sign_file(
        args.file,
        args.predicate_type,
        predicate,
        mode=args.mode,
        bundle=args.bundle,
        idempotency_key=args.idempotency_key,
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    summary = {
        "verified": True,
        "auditId": result["auditId"],
        "bundleSha256": result["bundleSha256"],
        "keyid": result["bundle"]["dsse"]["signatures"][0]["keyid"],
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


def run_pipeline(
    stack: dict[str, Any], execution_input: dict[str, Any], timeout: float = 120.0
) -> dict[str, Any]:
    """Start a SigningPipeline execution in the local stack's moto with ``execution_input`` (its token
    and PoEs replaced by fresh ones of scanner-1: an AWS principal's pipeline, binding ``iam``) and wait
    for it; the ``DescribeExecution`` answer."""
    import time
    import uuid

    import boto3

    caller = SignerClient(stack, binding="mtls")  # an unbound PoE: direct invocations prove no key
    execution_input = json.loads(json.dumps(execution_input))
    execution_input["opToken"] = caller.token()
    poe = caller.poe()
    for item in execution_input.get("requests", [execution_input]):
        item["request"]["poe"] = poe
    sfn = boto3.session.Session(region_name="us-east-1").client(
        "stepfunctions",
        endpoint_url=stack["aws"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    started = sfn.start_execution(
        stateMachineArn=stack["signingPipeline"],
        name=f"local-{uuid.uuid4()}",
        input=json.dumps(execution_input),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=started["executionArn"])
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise SystemExit(f"the execution still runs after {timeout:.0f} s")


def _print_pipeline(described: dict[str, Any]) -> int:
    if described["status"] != "SUCCEEDED":
        print(f"execution {described['status']}: {described.get('error')} {described.get('cause', '')[:300]}")
        return 1
    output = json.loads(described["output"])
    for number, result in enumerate(output.get("results", [output]), start=1):
        if "error" in result:
            cause = json.loads(result.get("cause") or "{}").get("errorMessage", "")
            print(f"item {number}: refused, {result['error']}: {cause}")
        else:
            where = result.get("result", {}).get("s3Uri") or f"auditId {result.get('auditId')}"
            print(f"item {number}: signed ({where})")
    return 0


def _verify(answer: Path, keys: Path, files: list[Path]) -> int:
    """``signer-client verify``: one line, exit 0 when verified, 1 with the reason when not."""
    try:
        verified = verify_answer(json.loads(answer.read_text()), json.loads(keys.read_text()), files)
    except Refused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"refused: cannot read the inputs: {error}", file=sys.stderr)
        return 2
    print(verified.summary())
    return 0


if __name__ == "__main__":
    main()
