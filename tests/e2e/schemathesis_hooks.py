"""schemathesis hooks for fuzzing the local stack from ``docs/openapi.yaml`` (``tests/e2e/test_openapi.py``).

Loaded by ``st run`` (``SCHEMATHESIS_HOOKS``), in its own process; ``STELLAOPS_FUZZ_STACK`` names the
stack's facts (``stack.json``). What they do, and nothing else:

- put a fresh certificate-bound OpToken of scanner-1 (``Authorization: Bearer``) on every request, and
  scanner-1's live PoE in ``X-StellaOps-PoE`` on ``/quota``: the credentials schemathesis cannot make;
- narrow the description, before it is loaded, to what this caller may send: its tenant in
  ``X-StellaOps-Tenant``, its PoE in ``poe.value``, the scanner release the stack trusts in
  ``scannerImageDigest`` and the stack's registry in ``repository`` (the file can only say "a string"),
  with the sign example made of them. Valid requests then get past the tenant, entitlement and
  release gates to the quotas, the registry client and the signature, and every other value of those
  fields is a negative case, which must be refused (``negative_data_rejection``);
- pace signings under tenant-a's plan (10 a second), so that they are not all answered 429.
"""

from __future__ import annotations

import copy
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import schemathesis

from local.client import LOCAL_SCANNER_DIGEST, SignerClient

SIGN, VERIFY, QUOTA = "/api/v1/signer/sign/dsse", "/api/v1/signer/verify/referrers", "/api/v1/signer/quota"
SIGNINGS_PER_SECOND = 8

_stack = json.loads(Path(os.environ["STELLAOPS_FUZZ_STACK"]).read_text())
_client = SignerClient(_stack, binding="mtls")
_poe = _client.poe()
_tenant = str(jwt.decode(_client.token(), options={"verify_signature": False})["tid"])
_registry = str(_stack["registry"]).partition("://")[2]


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    components = raw_schema["components"]
    components["parameters"]["Tenant"]["schema"] = {"type": "string", "enum": [_tenant]}
    components["schemas"]["ProofOfEntitlement"]["properties"]["value"] = {
        "type": "string",
        "enum": [_poe["value"]],
    }
    raw_schema["components"]["schemas"]["SignRequest"]["properties"]["scannerImageDigest"] = {
        "type": "string",
        "enum": [LOCAL_SCANNER_DIGEST],
    }
    for parameter in raw_schema["paths"][VERIFY]["get"]["parameters"]:
        if parameter.get("name") == "repository":
            name = parameter["schema"]["pattern"].removeprefix("^[^/]+/")
            parameter["schema"] = {"type": "string", "pattern": "^" + re.escape(_registry) + "/" + name}
    examples = raw_schema["paths"][SIGN]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for example in examples.values():
        example["value"] = {
            **copy.deepcopy(example["value"]),
            "poe": dict(_poe),
            "scannerImageDigest": LOCAL_SCANNER_DIGEST,
        }


@schemathesis.auth(refresh_interval=None, retry_on=[])
class CertificateBoundToken:
    """A token per request (they cost the local Authority one ES256 signature)."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return _client.token()

    def set(self, case: schemathesis.Case, token: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        if case.operation.path == QUOTA:
            case.headers["X-StellaOps-PoE"] = _poe["value"]


class _Pace:
    def __init__(self, per_second: int) -> None:
        self._gap = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._next > now:
                time.sleep(self._next - now)
            self._next = max(now, self._next) + self._gap


_pace = _Pace(SIGNINGS_PER_SECOND)


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    if case.operation.path == SIGN:
        _pace.wait()
