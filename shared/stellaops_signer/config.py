"""Settings: read once per container from the environment the template sets (spec §4).

A missing or malformed security setting raises ConfigurationError naming the variable,
which stops the cold start. There are no silent defaults for trust material.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stellaops_signer.domain.errors import ConfigurationError
from stellaops_signer.domain.predicates import DEFAULT_PREDICATE_TYPES

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
    "default_signing_mode": "SIGNER_DEFAULT_SIGNING_MODE",
    "max_token_lifetime_seconds": "SIGNER_MAX_TOKEN_LIFETIME_SECONDS",
    "dpop_nonce_ttl_seconds": "SIGNER_DPOP_NONCE_TTL_SECONDS",
    "poe_cache_ttl_seconds": "SIGNER_POE_CACHE_TTL_SECONDS",
    "audit_retention_days": "SIGNER_AUDIT_RETENTION_DAYS",
    "kms_key_id": "SIGNER_KMS_KEY_ID",
    "audit_table": "SIGNER_AUDIT_TABLE",
    "replay_table": "SIGNER_REPLAY_TABLE",
    "quota_table": "SIGNER_QUOTA_TABLE",
    "cache_table": "SIGNER_CACHE_TABLE",
    "idempotency_table": "SIGNER_IDEMPOTENCY_TABLE",
    "nonce_secret_arn": "SIGNER_NONCE_SECRET_ARN",
    "payload_bucket": "SIGNER_PAYLOAD_BUCKET",
}
_LISTS = {"scanner_repositories", "registry_allow_list", "allowed_predicate_types"}
_JSON = {"plans"}


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    qps: int = Field(ge=1)
    concurrency: int = Field(ge=1)
    maxArtifactBytes: int = Field(ge=1)
    dailySignatures: int = Field(ge=1)


class Settings(BaseModel):
    """Every setting the functions read; each function requires the ones it uses (``require``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_base_url: str = ""
    authority_issuer: str = ""
    authority_jwks_url: str = ""
    authority_jwks: str = ""
    licensing_issuer: str = ""
    licensing_jwks_url: str = ""
    licensing_jwks: str = ""
    licensing_introspect_url: str = ""
    plans: dict[str, Plan] = Field(default_factory=dict)
    release_trusted_keys: str = ""
    scanner_repositories: tuple[str, ...] = ()
    registry_allow_list: tuple[str, ...] = ()
    allowed_predicate_types: tuple[str, ...] = DEFAULT_PREDICATE_TYPES
    require_dpop_nonce: bool = True
    fulcio_url: str = ""
    default_signing_mode: Literal["kms", "keyless"] = "kms"
    max_token_lifetime_seconds: int = Field(default=600, ge=1, le=86400)
    dpop_nonce_ttl_seconds: int = Field(default=300, ge=1, le=3600)
    poe_cache_ttl_seconds: int = Field(default=300, ge=0, le=86400)
    audit_retention_days: int = Field(default=400, ge=1)
    kms_key_id: str = ""
    audit_table: str = ""
    replay_table: str = ""
    quota_table: str = ""
    cache_table: str = ""
    idempotency_table: str = ""
    nonce_secret_arn: str = ""
    payload_bucket: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Settings:
        """Parse the environment; raises ConfigurationError naming the offending variable."""
        values: dict[str, Any] = {}
        for name, variable in ENVIRONMENT.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            if name in _LISTS:
                values[name] = tuple(item.strip() for item in raw.split(",") if item.strip())
            elif name in _JSON:
                try:
                    values[name] = json.loads(raw)
                except ValueError:
                    raise ConfigurationError(f"{variable} is not valid JSON") from None
            else:
                values[name] = raw
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            variable = ENVIRONMENT.get(str(first["loc"][0]), str(first["loc"][0]))
            raise ConfigurationError(f"{variable}: {first['msg']}") from None
        if settings.public_base_url:
            url = urlsplit(settings.public_base_url)
            if url.scheme != "https" or not url.hostname or url.query or url.fragment:
                raise ConfigurationError(
                    "SIGNER_PUBLIC_BASE_URL must be an https:// origin (with an optional path)"
                )
        return settings

    def require(self, *names: str) -> None:
        """Stop the cold start if any of ``names`` is unset."""
        missing = [ENVIRONMENT[n] for n in names if not getattr(self, n)]
        if missing:
            raise ConfigurationError("missing required setting(s): " + ", ".join(missing))
