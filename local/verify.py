"""Offline verification of a Signer answer (spec §7 ``signer-client verify``): no network, only the
answer, a saved ``/keys`` document and the files the Statement is about.

In order: the payload type and the Statement's shape; the RFC 3161 timestamps (rfc3161-client,
against the timestamp authorities ``/keys`` publishes, over the signature bytes) — the earliest
is the signing time; the signer — a published KMS key named by the keyid (a retired key only when
a timestamp puts the signature inside its window), or the keyless leaf certificate, chained to
the published CA roots and valid at the signing time (no timestamp: valid now); the DSSE
signature over the PAE; each file's SHA-256 among the subjects. Each refusal is one ``Refused``
with a one-line reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

from stellaops_signer.domain.dsse import IN_TOTO_PAYLOAD_TYPE, pae
from stellaops_signer.domain.errors import SigningUnavailable
from stellaops_signer.domain.keyless import verify_chain
from stellaops_signer.domain.statement import STATEMENT_TYPE


class Refused(Exception):
    """The answer does not verify; the message says why, in one line."""


@dataclass(frozen=True)
class Verified:
    predicate_type: str
    signer: str
    #: The trusted time of the signature (its earliest timestamp), if it has one.
    signed_at: datetime | None
    subjects: tuple[str, ...]

    def summary(self) -> str:
        when = self.signed_at.isoformat().replace("+00:00", "Z") if self.signed_at else "no trusted time"
        return f"verified: {self.predicate_type} signed by {self.signer} at {when}"


def _b64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise Refused(f"{what} is not base64") from None


def _certificates(pems: Sequence[str]) -> list[x509.Certificate]:
    return [c for pem in pems for c in x509.load_pem_x509_certificates(pem.encode("ascii"))]


def verify_answer(
    answer: dict[str, Any], keys: dict[str, Any], files: Sequence[Path] = (), now: datetime | None = None
) -> Verified:
    """Verify a saved answer (or its ``bundle``) against a saved ``/keys`` document; raises Refused."""
    now = now or datetime.now(UTC)
    bundle = answer.get("bundle", answer)
    try:
        envelope = bundle["dsse"]
        payload_type = envelope["payloadType"]
        payload = _b64(envelope["payload"], "the payload")
        [signature_entry] = envelope["signatures"]
    except (KeyError, TypeError, ValueError):
        raise Refused("the answer holds no DSSE envelope with one signature") from None
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise Refused(f"the payload type is {payload_type!r}, not an in-toto Statement")
    statement = _statement(payload)
    signature = _b64(signature_entry.get("sig"), "the signature")
    signed_at = _timestamp_time(bundle.get("timestamps", []), signature, keys)
    if bundle.get("certificateChain"):
        public_key, signer = _keyless_signer(bundle["certificateChain"], keys, signed_at or now, signed_at)
    else:
        public_key, signer = _kms_signer(signature_entry.get("keyid"), keys, signed_at)
    try:
        public_key.verify(signature, pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Refused("the DSSE signature does not verify over this payload") from None
    digests = {d.get("sha256") for d in (s.get("digest", {}) for s in statement["subject"])}
    for path in files:
        if hashlib.sha256(path.read_bytes()).hexdigest() not in digests:
            raise Refused(f"{path.name}: its SHA-256 is not among the signed subjects")
    return Verified(
        predicate_type=statement["predicateType"],
        signer=signer,
        signed_at=signed_at,
        subjects=tuple(str(s.get("name")) for s in statement["subject"]),
    )


def _statement(payload: bytes) -> dict[str, Any]:
    try:
        statement = json.loads(payload)
    except ValueError:
        raise Refused("the payload is not JSON") from None
    if (
        not isinstance(statement, dict)
        or statement.get("_type") != STATEMENT_TYPE
        or not isinstance(statement.get("subject"), list)
        or not statement["subject"]
        or not all(isinstance(s, dict) and isinstance(s.get("digest"), dict) for s in statement["subject"])
        or not isinstance(statement.get("predicateType"), str)
        or "predicate" not in statement
    ):
        raise Refused("the payload is not an in-toto Statement v1")
    return statement


def _timestamp_time(encoded: Any, signature: bytes, keys: dict[str, Any]) -> datetime | None:
    """The earliest verified timestamp's time, or None without timestamps."""
    if not encoded:
        return None
    if not isinstance(encoded, list):
        raise Refused("the timestamps are malformed")
    authorities = [a.get("certificates", []) for a in keys.get("timestampAuthorities", [])]
    if not authorities:
        raise Refused("the answer is timestamped but the keys document names no timestamp authority")
    times = []
    for text in encoded:
        try:
            response = decode_timestamp_response(_b64(text, "a timestamp"))
        except ValueError:
            raise Refused("a timestamp is not an RFC 3161 TimeStampResp") from None
        times.append(_verified_time(response, signature, authorities))
    return min(times)


def _verified_time(response: Any, signature: bytes, authorities: list[list[str]]) -> datetime:
    for chain in authorities:
        certificates = _certificates(chain)
        roots = [c for c in certificates if c.subject == c.issuer]
        intermediates = [c for c in certificates if c.subject != c.issuer]
        if not roots:
            continue
        try:
            VerifierBuilder(roots=roots, intermediates=intermediates).build().verify_message(
                response, signature
            )
        except (VerificationError, ValueError):
            continue
        gen_time: datetime = response.tst_info.gen_time
        return gen_time if gen_time.tzinfo else gen_time.replace(tzinfo=UTC)
    raise Refused("a timestamp does not verify against the published timestamp authorities")


def _keyless_signer(
    chain: Any, keys: dict[str, Any], at: datetime, signed_at: datetime | None
) -> tuple[ec.EllipticCurvePublicKey, str]:
    if not isinstance(chain, list) or not all(isinstance(c, str) for c in chain):
        raise Refused("the certificate chain is malformed")
    authorities = (keys.get("keyless") or {}).get("certificateAuthorities") or []
    try:
        trusted = _certificates(authorities)
        leaf = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    except ValueError:
        raise Refused("a certificate does not parse") from None
    public_key = leaf.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Refused("the leaf certificate holds no ECDSA key")
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if signed_at is None and leaf.not_valid_after_utc < at:
        raise Refused("the certificate has expired and no timestamp says when it signed")
    try:
        identity = verify_chain(chain, trusted, spki, at)
    except SigningUnavailable as refused:
        raise Refused(
            f"the certificate chain does not verify at {at.isoformat()}: {refused.detail}"
        ) from None
    return public_key, f"{identity.subject} (issuer {identity.issuer}, certificate {identity.serial})"


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"the keys document has a malformed time {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _kms_signer(
    keyid: Any, keys: dict[str, Any], signed_at: datetime | None
) -> tuple[ec.EllipticCurvePublicKey, str]:
    published = {k.get("keyid"): k for k in keys.get("keys", []) if isinstance(k, dict)}
    key = published.get(keyid)
    if key is None:
        raise Refused(f"the signature's key {keyid!r} is not published in the keys document")
    window = (_moment(key.get("notBefore")), _moment(key.get("notAfter")))
    if key.get("status", "active") == "retired":
        if signed_at is None:
            raise Refused(f"the key {keyid} is retired and no timestamp says when it signed")
        if window[1] is None or signed_at > window[1]:
            raise Refused(
                f"the key {keyid} was retired at {key.get('notAfter')}, before this signature's time"
            )
    if signed_at is not None and window[0] is not None and signed_at < window[0]:
        raise Refused(f"the signature's time is before the key {keyid} existed ({key.get('notBefore')})")
    public_key = load_pem_public_key(str(key.get("publicKeyPem", "")).encode("ascii"))
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Refused(f"the published key {keyid} is not an ECDSA key")
    return public_key, f"{key.get('keyArn', keyid)} (keyid {keyid})"
