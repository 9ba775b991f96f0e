"""Licensing's introspection endpoint (RFC 7662 style): is this PoE active and not revoked?"""

from __future__ import annotations

import json

import requests

from stellaops_signer.domain.errors import EntitlementUnavailable

TIMEOUT = (3.05, 3.0)
MAX_ANSWER_BYTES = 64 * 1024


class HttpIntrospection:
    """``POST <url>`` with ``token=<PoE>`` form-encoded (RFC 7662 §2.1).

    Answers True only for ``{"active": true}`` without ``"revoked": true`` (§2.2); a JSON object
    saying otherwise is False. Anything else — unreachable, a status other than 200, not a JSON
    object, ``active`` not a boolean — raises EntitlementUnavailable: the answer is unknown,
    not negative.
    """

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self._url = url
        # Trust as the runtime has it (public roots on Lambda; the local stack's REQUESTS_CA_BUNDLE names
        # its dev CA): unlike registries, these endpoints are the installation's own (decision 0011).
        self._http = session or requests.Session()

    def __call__(self, poe: str) -> bool:
        try:
            with self._http.post(
                self._url,
                data={"token": poe},
                headers={"Accept": "application/json"},
                timeout=TIMEOUT,
                stream=True,
                allow_redirects=False,
            ) as answer:
                status = answer.status_code
                body = answer.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise EntitlementUnavailable("Licensing cannot be reached to confirm the licence") from exc
        if status != 200 or len(body) > MAX_ANSWER_BYTES:
            raise EntitlementUnavailable(f"Licensing answered {status} when asked to confirm the licence")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if not isinstance(document, dict) or type(document.get("active")) is not bool:
            raise EntitlementUnavailable("Licensing answered something other than an introspection answer")
        revoked = document.get("revoked", False)
        if type(revoked) is not bool:
            raise EntitlementUnavailable("Licensing answered a malformed revoked member")
        return document["active"] and not revoked


__all__ = ["MAX_ANSWER_BYTES", "TIMEOUT", "HttpIntrospection"]
