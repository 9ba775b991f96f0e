"""RFC 3161 timestamps (spec §5.5) from a Time-Stamp Authority, checked before they are returned.

The ASN.1 is rfc3161-client's (the library sigstore-python uses): the request (SHA-256 of the
signature bytes, a nonce, ``certReq``) and the answer's verification — status granted, the
token's CMS signature by a TSA certificate that chains to ``TimestampAuthorityCertificates``
with the timeStamping purpose, our nonce, our imprint. The DER ``TimeStampResp`` itself is what
the answer carries. 5xx and timeouts are retried with backoff; anything else fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import requests
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from stellaops_signer.adapters.retrying import post_with_retries
from stellaops_signer.domain.errors import SigningUnavailable
from stellaops_signer.observability import logger
from stellaops_signer.ports import Clock

MAX_ANSWER_BYTES = 64 * 1024
#: How far the TSA's clock may be from ours before its time is not believed.
MAX_CLOCK_DIFFERENCE_SECONDS = 300
SHA256_OID = "2.16.840.1.101.3.4.2.1"


class Rfc3161Timestamper:
    """``timestamp(signature)`` → the DER TimeStampResp; raises SigningUnavailable."""

    def __init__(
        self,
        url: str,
        certificates: tuple[x509.Certificate, ...],
        clock: Clock,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._roots = [c for c in certificates if c.subject == c.issuer]
        self._intermediates = [c for c in certificates if c.subject != c.issuer]
        if not self._roots:
            raise ValueError("TimestampAuthorityCertificates needs the TSA's root certificate")
        self._clock = clock
        self._http = session or requests.Session()
        self._sleep = sleep
        #: Milliseconds of the last round trip, for the bench.
        self.last_ms = 0.0

    def timestamp(self, signature: bytes) -> bytes:
        started = time.perf_counter()
        request = (
            TimestampRequestBuilder()
            .data(signature)
            .hash_algorithm(HashAlgorithm.SHA256)  # the library's default is SHA-512
            .nonce(nonce=True)
            .cert_request(cert_request=True)
            .build()
        )
        body = self._exchange(request.as_bytes())
        try:
            response = decode_timestamp_response(body)
        except ValueError:
            raise SigningUnavailable(
                "the timestamp authority answered something other than a TimeStampResp"
            ) from None
        builder = VerifierBuilder(roots=list(self._roots), intermediates=list(self._intermediates))
        if request.nonce is None:
            raise SigningUnavailable("the timestamp request has no nonce")
        verifier = builder.nonce(request.nonce).build()
        try:
            verifier.verify_message(response, signature)
        except (VerificationError, ValueError) as exc:  # ValueError: a refusal carries no token to read
            raise SigningUnavailable(f"the timestamp does not verify: {exc}") from None
        if response.tst_info.message_imprint.hash_algorithm.dotted_string != SHA256_OID:
            raise SigningUnavailable("the timestamp authority answered another hash than asked for")
        gen_time = response.tst_info.gen_time
        gen_time = gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
        now = datetime.fromtimestamp(self._clock.now(), UTC)
        if abs((gen_time - now).total_seconds()) > MAX_CLOCK_DIFFERENCE_SECONDS:
            raise SigningUnavailable("the timestamp authority's time is too far from ours")
        self.last_ms = (time.perf_counter() - started) * 1000
        logger.info("timestamp", extra={"tsaMs": self.last_ms})
        return body

    def _exchange(self, request: bytes) -> bytes:
        headers = {"Content-Type": "application/timestamp-query", "Accept": "application/timestamp-reply"}
        status, body = post_with_retries(
            self._http,
            self._url,
            "the timestamp authority",
            limit=MAX_ANSWER_BYTES,
            sleep=self._sleep,
            data=request,
            headers=headers,
        )
        if status != 200:
            raise SigningUnavailable(f"the timestamp authority answered {status}")
        return body


__all__ = [
    "MAX_ANSWER_BYTES",
    "MAX_CLOCK_DIFFERENCE_SECONDS",
    "SHA256_OID",
    "Rfc3161Timestamper",
]
