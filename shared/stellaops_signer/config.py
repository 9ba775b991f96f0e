"""Settings: read once per container from the environment the template sets (spec §4).

A missing or malformed security setting raises ConfigurationError naming the variable,
which stops the cold start. There are no silent defaults for trust material.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from stellaops_signer.domain.errors import ConfigurationError
from stellaops_signer.domain.predicates import DEFAULT_PREDICATE_TYPES
from stellaops_signer.domain.quota import Plan

#: Setting name → environment variable (names fixed by template.yaml).
ENVIRONMENT = {
    "public_base_url": "SIGNER_PUBLIC_BASE_URL",
    "authority_issuer": "SIGNER_AUTHORITY_ISSUER",
    "authority_jwks_url": "SIGNER_AUTHORITY_JWKS_URL",
    "authority_jwks": "SIGNER_AUTHORITY_JWKS",
    "licensing_issuer": "SIGNER_LICENSING_ISSUER",
    "licensing_jwks_url": "SIGNER_LICENSING_JWKS_URL",
    "licensing_jwks": "SIGNER_LICENSING_JWKS",
    "licensing_introspect_url": "SIGNER_LICENSING_INTROSPECT_URL",
    "plans": "SIGNER_PLANS",
    "release_trusted_keys": "SIGNER_RELEASE_TRUSTED_KEYS",
    "scanner_repositories": "SIGNER_SCANNER_REPOSITORIES",
    "registry_allow_list": "SIGNER_REGISTRY_ALLOW_LIST",
    "allowed_predicate_types": "SIGNER_ALLOWED_PREDICATE_TYPES",
    "require_dpop_nonce": "SIGNER_REQUIRE_DPOP_NONCE",
    "fulcio_url": "SIGNER_FULCIO_URL",
    "fulcio_root_certificates": "SIGNER_FULCIO_ROOT_CERTIFICATES",
    "keyless_key_reuse_seconds": "SIGNER_KEYLESS_KEY_REUSE_SECONDS",
    "keyless_identity_token_url": "SIGNER_KEYLESS_IDENTITY_TOKEN_URL",
    "keyless_client_secret_arn": "SIGNER_KEYLESS_CLIENT_SECRET_ARN",
    "timestamp_authority_url": "SIGNER_TIMESTAMP_AUTHORITY_URL",
    "timestamp_authority_certificates": "SIGNER_TIMESTAMP_AUTHORITY_CERTIFICATES",
    "default_signing_mode": "SIGNER_DEFAULT_SIGNING_MODE",
    "max_token_lifetime_seconds": "SIGNER_MAX_TOKEN_LIFETIME_SECONDS",
    "dpop_nonce_ttl_seconds": "SIGNER_DPOP_NONCE_TTL_SECONDS",
    "poe_cache_ttl_seconds": "SIGNER_POE_CACHE_TTL_SECONDS",
    "audit_retention_days": "SIGNER_AUDIT_RETENTION_DAYS",
    "kms_key_id": "SIGNER_KMS_KEY_ID",
    "tenant_signing_keys": "SIGNER_TENANT_SIGNING_KEYS",
    "retired_signing_keys": "SIGNER_RETIRED_SIGNING_KEYS",
    "audit_table": "SIGNER_AUDIT_TABLE",
    "replay_table": "SIGNER_REPLAY_TABLE",
    "quota_table": "SIGNER_QUOTA_TABLE",
    "cache_table": "SIGNER_CACHE_TABLE",
    "idempotency_table": "SIGNER_IDEMPOTENCY_TABLE",
    "nonce_secret_arn": "SIGNER_NONCE_SECRET_ARN",
    "payload_bucket": "SIGNER_PAYLOAD_BUCKET",
    "registry_ca_bundle": "SIGNER_REGISTRY_CA_BUNDLE",
    "max_attestation_bytes": "SIGNER_MAX_ATTESTATION_BYTES",
    "reservation_secret_arn": "SIGNER_RESERVATION_SECRET_ARN",
    # Not a template parameter: plain HTTP to loopback registries, for the tests and make run only.
    "registry_insecure_loopback": "SIGNER_REGISTRY_INSECURE_LOOPBACK",
}
_LISTS = {"scanner_repositories", "registry_allow_list", "allowed_predicate_types"}
#: Integer settings and their bounds (inclusive).
_BOUNDED = {
    "max_token_lifetime_seconds": (1, 86400),
    "dpop_nonce_ttl_seconds": (1, 3600),
    "poe_cache_ttl_seconds": (0, 86400),
    "audit_retention_days": (1, 36500),
    "max_attestation_bytes": (0, 10 * 1024 * 1024),
    # a Fulcio certificate lives 10 minutes: a reuse window must end well before it does
    "keyless_key_reuse_seconds": (0, 300),
}
_KMS_KEY = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[0-9a-f-]+|alias/[\w/+=,.@-]+))|alias/[\w/+=,.@-]+"
)
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_SIGNING_MODES = ("kms", "keyless")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the functions read; each function requires the ones it uses (``require``).

    Plain dataclasses rather than a pydantic model: the settings are parsed once per
    container and pydantic alone costs about 100 ms of cold import (decision 0006).
    """

    public_base_url: str = ""
    authority_issuer: str = ""
    authority_jwks_url: str = ""
    authority_jwks: str = ""
    licensing_issuer: str = ""
    licensing_jwks_url: str = ""
    licensing_jwks: str = ""
    licensing_introspect_url: str = ""
    plans: Mapping[str, Plan] = field(default_factory=dict)
    release_trusted_keys: str = ""
    scanner_repositories: tuple[str, ...] = ()
    registry_allow_list: tuple[str, ...] = ()
    allowed_predicate_types: tuple[str, ...] = DEFAULT_PREDICATE_TYPES
    require_dpop_nonce: bool = True
    fulcio_url: str = ""
    fulcio_root_certificates: str = ""
    #: 0: a fresh key and certificate per signing (decision 0012).
    keyless_key_reuse_seconds: int = 0
    keyless_identity_token_url: str = ""
    keyless_client_secret_arn: str = ""
    timestamp_authority_url: str = ""
    timestamp_authority_certificates: str = ""
    default_signing_mode: str = "kms"
    max_token_lifetime_seconds: int = 600
    dpop_nonce_ttl_seconds: int = 300
    poe_cache_ttl_seconds: int = 300
    audit_retention_days: int = 400
    kms_key_id: str = ""
    #: tenant → KMS key ARN or alias (spec §4 ``TenantSigningKeys``).
    tenant_signing_keys: Mapping[str, str] = field(default_factory=dict)
    #: (key ARN, end of its signing window) of each retired key (spec §4 ``RetiredSigningKeys``).
    retired_signing_keys: tuple[tuple[str, datetime], ...] = ()
    audit_table: str = ""
    replay_table: str = ""
    quota_table: str = ""
    cache_table: str = ""
    idempotency_table: str = ""
    nonce_secret_arn: str = ""
    payload_bucket: str = ""
    registry_ca_bundle: str = ""
    #: 0: only the carrier's limit (spec §3.2).
    max_attestation_bytes: int = 0
    reservation_secret_arn: str = ""
    registry_insecure_loopback: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Parse the environment; raises ConfigurationError naming the offending variable."""
        values: dict[str, Any] = {}
        for name, variable in ENVIRONMENT.items():
            raw = environ.get(variable, "").strip()
            if raw:
                values[name] = _parse(name, variable, raw)
        if values.get("public_base_url"):
            url = urlsplit(values["public_base_url"])
            if url.scheme != "https" or not url.hostname or url.query or url.fragment:
                raise ConfigurationError(
                    "SIGNER_PUBLIC_BASE_URL must be an https:// origin (with an optional path)"
                )
        return cls(**values)

    def require(self, *names: str) -> None:
        """Stop the cold start if any of ``names`` is unset."""
        missing = [ENVIRONMENT[n] for n in names if not getattr(self, n)]
        if missing:
            raise ConfigurationError("missing required setting(s): " + ", ".join(missing))


def _parse(name: str, variable: str, raw: str) -> Any:
    if name == "tenant_signing_keys":
        keys = _json(variable, raw)
        if not isinstance(keys, dict) or not all(
            isinstance(t, str) and t and isinstance(k, str) and _KMS_KEY.fullmatch(k) for t, k in keys.items()
        ):
            raise ConfigurationError(f"{variable} must be a JSON object of tenant → KMS key ARN or alias")
        return dict(keys)
    if name == "retired_signing_keys":
        return _retired(variable, _json(variable, raw))
    if name in _LISTS:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if name == "plans":
        try:
            plans = json.loads(raw)
        except ValueError:
            raise ConfigurationError(f"{variable} is not valid JSON") from None
        if not isinstance(plans, dict):
            raise ConfigurationError(f"{variable} must be a JSON object of plans")
        return {plan: Plan.parse(plan, limits) for plan, limits in plans.items()}
    if name in _BOUNDED:
        low, high = _BOUNDED[name]
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ConfigurationError(f"{variable} must be an integer from {low} to {high}")
        return int(raw)
    if name in ("require_dpop_nonce", "registry_insecure_loopback"):
        if raw.lower() not in _BOOLEANS:
            raise ConfigurationError(f"{variable} must be true or false")
        return _BOOLEANS[raw.lower()]
    if name == "default_signing_mode" and raw not in _SIGNING_MODES:
        raise ConfigurationError(f"{variable} must be kms or keyless")
    return raw


def _json(variable: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} is not valid JSON") from None


def _retired(variable: str, value: Any) -> tuple[tuple[str, datetime], ...]:
    """``[{"keyArn": "arn:aws:kms:…:key/…", "notAfter": "<RFC 3339>"}, …]``: key ARNs, not aliases
    (an alias moves; a retired key is one key)."""
    message = f"{variable} must be a JSON list of {{keyArn: <KMS key ARN>, notAfter: <RFC 3339 time>}}"
    if not isinstance(value, list):
        raise ConfigurationError(message)
    retired = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"keyArn", "notAfter"}:
            raise ConfigurationError(message)
        arn, not_after = entry["keyArn"], entry["notAfter"]
        if not isinstance(arn, str) or not _KMS_KEY.fullmatch(arn) or ":key/" not in arn:
            raise ConfigurationError(message)
        try:
            moment = datetime.fromisoformat(str(not_after).replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(message) from None
        if moment.tzinfo is None:
            raise ConfigurationError(message)
        retired.append((arn, moment.astimezone(UTC)))
    return tuple(retired)


__all__ = ["ENVIRONMENT", "Settings"]
