"""Release verdicts (spec §5.3) from candidate signatures: trusted only when every trusted
signature agrees on the digest, the cosign type and a calendar release version."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from stellaops_signer.domain.release import (
    COSIGN_TYPE,
    CandidateSignature,
    ReleaseVerdict,
    evaluate,
    parse_trusted_keys,
    trust_configuration_hash,
)

DIGEST = "sha256:" + "a" * 64
RELEASE_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RELEASE_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


KEYS = parse_trusted_keys(pem(RELEASE_KEY) + pem(OTHER_RELEASE_KEY))


def payload(digest: str = DIGEST, version: str | None = "2.4.1 (2027.06)", type_: str = COSIGN_TYPE) -> bytes:
    optional = {"org.opencontainers.image.version": version} if version is not None else {}
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": "registry.example/stellaops/scanner"},
                "image": {"docker-manifest-digest": digest},
                "type": type_,
            },
            "optional": optional,
        }
    ).encode()


def signed(data: bytes, key: Any = RELEASE_KEY, source: str = "referrers") -> CandidateSignature:
    signature = base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()
    return CandidateSignature("registry.example/stellaops/scanner", data, signature, source)


def test_a_signature_by_a_release_key_makes_the_scanner_trusted_with_its_version_and_year() -> None:
    verdict = evaluate(DIGEST, [signed(payload())], KEYS)
    assert verdict.trusted and verdict.release_version == "2.4.1 (2027.06)" and verdict.release_year == 2027
    assert verdict.release_signer == KEYS[0].keyid and verdict.source == "referrers"


def test_no_signature_is_untrusted() -> None:
    assert not evaluate(DIGEST, [], KEYS).trusted


def test_signatures_by_unknown_keys_are_ignored() -> None:
    assert not evaluate(DIGEST, [signed(payload(), STRANGER)], KEYS).trusted
    verdict = evaluate(
        DIGEST, [signed(payload(version="9.9.9 (2099.01)"), STRANGER), signed(payload())], KEYS
    )
    assert verdict.trusted and verdict.release_year == 2027  # the stranger's version does not count


def test_a_trusted_payload_naming_another_digest_is_ambiguous() -> None:
    verdict = evaluate(DIGEST, [signed(payload()), signed(payload(digest="sha256:" + "b" * 64))], KEYS)
    assert not verdict.trusted and "another image digest" in verdict.reason
    assert not evaluate(DIGEST, [signed(payload(digest="sha256:" + "b" * 64))], KEYS).trusted


def test_trusted_signatures_with_different_versions_are_ambiguous() -> None:
    verdict = evaluate(
        DIGEST, [signed(payload()), signed(payload(version="2.5.0 (2027.09)"), OTHER_RELEASE_KEY)], KEYS
    )
    assert not verdict.trusted and "different release versions" in verdict.reason


def test_two_trusted_signatures_that_agree_are_trusted_and_both_named() -> None:
    verdict = evaluate(DIGEST, [signed(payload()), signed(payload(), OTHER_RELEASE_KEY)], KEYS)
    assert verdict.trusted and len(verdict.signers) == 2


@pytest.mark.parametrize("version", [None, "2.4.1", "2.4.1 (27.06)", "2.4.1 (2027.13)", "latest"])
def test_a_release_without_a_calendar_version_is_untrusted(version: str | None) -> None:
    assert not evaluate(DIGEST, [signed(payload(version=version))], KEYS).trusted


def test_a_signature_of_another_cosign_type_is_untrusted() -> None:
    assert not evaluate(DIGEST, [signed(payload(type_="cosign attestation"))], KEYS).trusted


def test_a_tampered_payload_no_longer_verifies_and_counts_as_unsigned() -> None:
    good = signed(payload())
    tampered = CandidateSignature(
        good.repository, payload(version="9.9.9 (2099.01)"), good.signature_b64, good.source
    )
    assert not evaluate(DIGEST, [tampered], KEYS).trusted


def test_malformed_signatures_are_ignored_not_fatal() -> None:
    bad = CandidateSignature("r/x", payload(), "not base64!!", "referrers")
    assert evaluate(DIGEST, [bad, signed(payload())], KEYS).trusted


def test_release_keys_must_be_p256_and_present() -> None:
    with pytest.raises(ValueError):
        parse_trusted_keys("no key here")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError):
        parse_trusted_keys(pem(rsa_key))


def test_the_trust_hash_changes_with_the_keys_or_repositories() -> None:
    base = trust_configuration_hash(KEYS, ["r/a"])
    assert base == trust_configuration_hash(tuple(reversed(KEYS)), ["r/a"])
    assert base != trust_configuration_hash(KEYS[:1], ["r/a"])
    assert base != trust_configuration_hash(KEYS, ["r/b"])


def test_verdicts_survive_the_cache_round_trip_marked_cached() -> None:
    verdict = evaluate(DIGEST, [signed(payload())], KEYS)
    again = ReleaseVerdict.from_cache(json.loads(json.dumps(verdict.to_cache())))
    assert again == ReleaseVerdict(**{**verdict.to_cache(), "cached": True})  # type: ignore[arg-type]
    assert again.to_json()["cached"] is True and verdict.to_json()["cached"] is False
