"""Settings: each function's, read once per container from the environment the template sets (spec §4).

A function's settings are a small model composed of the parts it uses (``AuthenticateSettings`` is
``TokenSettings`` + ``DpopSettings`` + ``AuditSettings``…). A field without a default is required:
unset or empty, it stops the cold start with a ConfigurationError naming its environment variable;
so does a malformed value. There are no silent defaults for trust material.

Plain classes rather than pydantic models or dataclasses: settings are parsed once per container,
and pydantic alone costs about 100 ms of cold import (decision 0006), dataclasses ~30 ms here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

from stellaops_signer.domain.errors import ConfigurationError
from stellaops_signer.domain.predicates import DEFAULT_PREDICATE_TYPES
from stellaops_signer.domain.quota import Plan

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonValue

__all__ = [
    "AllSettings",
    "AuditSettings",
    "AuthenticateSettings",
    "CacheSettings",
    "CheckQuotaSettings",
    "DpopSettings",
    "LicensingSettings",
    "QuotaSettings",
    "ReleaseSettings",
    "Setting",
    "Settings",
    "SignDsseSettings",
    "SigningSettings",
    "TokenSettings",
    "VerifyReleaseSettings",
    "load",
    "settings_of",
    "variable_of",
]

_KMS_KEY = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key/[0-9a-f-]+|alias/[\w/+=,.@-]+))|alias/[\w/+=,.@-]+"
)
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
Parse = Callable[[str, str], object]  # (variable, raw) → value; raises ConfigurationError
T = TypeVar("T")


def _text(variable: str, raw: str) -> str:
    return raw


def _list(variable: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _boolean(variable: str, raw: str) -> bool:
    if raw.lower() not in _BOOLEANS:
        raise ConfigurationError(f"{variable} must be true or false")
    return _BOOLEANS[raw.lower()]


def _integer(low: int, high: int) -> Parse:
    def parse(variable: str, raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ConfigurationError(f"{variable} must be an integer from {low} to {high}")
        return int(raw)

    return parse


def _json(variable: str, raw: str) -> JsonValue:
    try:
        return json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} is not valid JSON") from None


def _plans(variable: str, raw: str) -> dict[str, Plan]:
    plans = _json(variable, raw)
    if not isinstance(plans, dict):
        raise ConfigurationError(f"{variable} must be a JSON object of plans")
    return {plan: Plan.parse(plan, limits) for plan, limits in plans.items()}


def _https_origin(variable: str, raw: str) -> str:
    url = urlsplit(raw)
    if url.scheme != "https" or not url.hostname or url.query or url.fragment:
        raise ConfigurationError(f"{variable} must be an https:// origin (with an optional path)")
    return raw


def _signing_mode(variable: str, raw: str) -> str:
    if raw not in ("kms", "keyless"):
        raise ConfigurationError(f"{variable} must be kms or keyless")
    return raw


def _tenant_keys(variable: str, raw: str) -> dict[str, str]:
    keys = _json(variable, raw)
    if not isinstance(keys, dict) or not all(
        isinstance(t, str) and t and isinstance(k, str) and _KMS_KEY.fullmatch(k) for t, k in keys.items()
    ):
        raise ConfigurationError(f"{variable} must be a JSON object of tenant → KMS key ARN or alias")
    return dict(keys)


def _retired(variable: str, raw: str) -> tuple[tuple[str, datetime], ...]:
    """``[{"keyArn": "arn:aws:kms:…:key/…", "notAfter": "<RFC 3339>"}, …]``: key ARNs, not aliases
    (an alias moves; a retired key is one key)."""
    message = f"{variable} must be a JSON list of {{keyArn: <KMS key ARN>, notAfter: <RFC 3339 time>}}"
    value = _json(variable, raw)
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


@dataclass(frozen=True)
class Setting:
    """One setting of a settings class: its environment variable, how it is parsed, its default
    (``REQUIRED``: none, the function cannot start without it)."""

    variable: str
    parse: Parse
    default: Callable[[], object] | None  # None: required


def _required(variable: str, parse: Parse = _text) -> Any:  # Any: the field's annotation is its type
    """A setting read from ``variable`` that the function cannot start without."""
    return Setting(variable, parse, None)


def _optional(variable: str, default: T, parse: Parse = _text) -> T:
    """A setting read from ``variable``, ``default`` when it is unset or empty."""
    return cast("T", Setting(variable, parse, lambda: default))


def _optional_mapping(variable: str, parse: Parse) -> Mapping[str, str]:
    return cast("Mapping[str, str]", Setting(variable, parse, dict))


class Settings:
    """Frozen settings: each class attribute that is a ``Setting`` becomes the instance's value.

    Not dataclasses: a dataclass per part and per function (multiple inheritance, 40 fields) cost
    ~30 ms of every cold import; these classes cost nothing to define."""

    def __init__(self, values: Mapping[str, object]) -> None:
        for name, setting in settings_of(type(self)).items():
            value = values[name] if name in values else setting.default() if setting.default else None
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"settings are read-only: {name}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(settings_of(type(self)))})"


def settings_of(model: type[Settings]) -> dict[str, Setting]:
    """Every ``Setting`` of ``model`` and its parts, by attribute name."""
    found = _SETTINGS.get(model)
    if found is None:
        found = {}
        for part in reversed(model.__mro__):
            found.update({n: v for n, v in vars(part).items() if isinstance(v, Setting)})
        _SETTINGS[model] = found
    return found


_SETTINGS: dict[type[Settings], dict[str, Setting]] = {}


# --- the parts ---------------------------------------------------------------------------------


class TokenSettings(Settings):
    """Every function: the Authority's OpToks."""

    authority_issuer: str = _required("SIGNER_AUTHORITY_ISSUER")
    authority_jwks: str = _optional("SIGNER_AUTHORITY_JWKS", "")
    authority_jwks_url: str = _optional("SIGNER_AUTHORITY_JWKS_URL", "")
    max_token_lifetime_seconds: int = _optional("SIGNER_MAX_TOKEN_LIFETIME_SECONDS", 600, _integer(1, 86400))

    def _check_tokens(self) -> None:
        _key_set_given(self.authority_jwks, self.authority_jwks_url, "SIGNER_AUTHORITY_JWKS")


class AuditSettings(Settings):
    """Every function: where decisions are recorded."""

    audit_table: str = _required("SIGNER_AUDIT_TABLE")
    audit_retention_days: int = _optional("SIGNER_AUDIT_RETENTION_DAYS", 400, _integer(1, 36500))


class DpopSettings(Settings):
    """The authorizer: proofs of possession (RFC 9449) for the public URL, nonces, replay."""

    public_base_url: str = _required("SIGNER_PUBLIC_BASE_URL", _https_origin)
    nonce_secret_arn: str = _required("SIGNER_NONCE_SECRET_ARN")
    replay_table: str = _required("SIGNER_REPLAY_TABLE")
    require_dpop_nonce: bool = _optional("SIGNER_REQUIRE_DPOP_NONCE", True, _boolean)
    dpop_nonce_ttl_seconds: int = _optional("SIGNER_DPOP_NONCE_TTL_SECONDS", 300, _integer(1, 3600))


class CacheSettings(Settings):
    """The verdict and introspection cache (release verdicts, confirmed PoEs)."""

    cache_table: str = _required("SIGNER_CACHE_TABLE")


class LicensingSettings(Settings):
    """Proofs of Entitlement and the plans they name."""

    licensing_issuer: str = _required("SIGNER_LICENSING_ISSUER")
    licensing_jwks: str = _optional("SIGNER_LICENSING_JWKS", "")
    licensing_jwks_url: str = _optional("SIGNER_LICENSING_JWKS_URL", "")
    licensing_introspect_url: str = _optional("SIGNER_LICENSING_INTROSPECT_URL", "")
    plans: Mapping[str, Plan] = _required("SIGNER_PLANS", _plans)
    poe_cache_ttl_seconds: int = _optional("SIGNER_POE_CACHE_TTL_SECONDS", 300, _integer(0, 86400))

    def _check_licensing(self) -> None:
        _key_set_given(self.licensing_jwks, self.licensing_jwks_url, "SIGNER_LICENSING_JWKS")


class QuotaSettings(Settings):
    """Plan quotas: the counters and leases, and the key that seals a pipeline's reservation."""

    quota_table: str = _required("SIGNER_QUOTA_TABLE")
    reservation_secret_arn: str = _required("SIGNER_RESERVATION_SECRET_ARN")


class ReleaseSettings(Settings):
    """Release integrity: which scanner images are genuine, from which registries."""

    release_trusted_keys: str = _required("SIGNER_RELEASE_TRUSTED_KEYS")
    scanner_repositories: tuple[str, ...] = _required("SIGNER_SCANNER_REPOSITORIES", _list)
    registry_allow_list: tuple[str, ...] = _required("SIGNER_REGISTRY_ALLOW_LIST", _list)
    registry_ca_bundle: str = _optional("SIGNER_REGISTRY_CA_BUNDLE", "")
    #: Not a template parameter: plain HTTP to loopback services, for the tests and make run only.
    registry_insecure_loopback: bool = _optional("SIGNER_REGISTRY_INSECURE_LOOPBACK", False, _boolean)


class SigningSettings(Settings):
    """Signing: the KMS keys, the predicate catalogue, the size rule, idempotent answers, keyless
    signing (when ``FulcioUrl`` is set) and timestamps (when ``TimestampAuthorityUrl`` is)."""

    kms_key_id: str = _required("SIGNER_KMS_KEY_ID")
    #: tenant → KMS key ARN or alias (spec §4 ``TenantSigningKeys``).
    tenant_signing_keys: Mapping[str, str] = _optional_mapping("SIGNER_TENANT_SIGNING_KEYS", _tenant_keys)
    #: (key ARN, end of its signing window) of each retired key (spec §4 ``RetiredSigningKeys``).
    retired_signing_keys: tuple[tuple[str, datetime], ...] = _optional(
        "SIGNER_RETIRED_SIGNING_KEYS", (), _retired
    )
    allowed_predicate_types: tuple[str, ...] = _optional(
        "SIGNER_ALLOWED_PREDICATE_TYPES", DEFAULT_PREDICATE_TYPES, _list
    )
    default_signing_mode: str = _optional("SIGNER_DEFAULT_SIGNING_MODE", "kms", _signing_mode)
    #: 0: only the carrier's limit (spec §3.2).
    max_attestation_bytes: int = _optional("SIGNER_MAX_ATTESTATION_BYTES", 0, _integer(0, 10 * 1024 * 1024))
    idempotency_table: str = _required("SIGNER_IDEMPOTENCY_TABLE")
    payload_bucket: str = _required("SIGNER_PAYLOAD_BUCKET")
    fulcio_url: str = _optional("SIGNER_FULCIO_URL", "")
    fulcio_root_certificates: str = _optional("SIGNER_FULCIO_ROOT_CERTIFICATES", "")
    #: 0: a fresh key and certificate per signing (decision 0012); a Fulcio certificate lives
    #: 10 minutes, so a reuse window must end well before it does.
    keyless_key_reuse_seconds: int = _optional("SIGNER_KEYLESS_KEY_REUSE_SECONDS", 0, _integer(0, 300))
    keyless_identity_token_url: str = _optional("SIGNER_KEYLESS_IDENTITY_TOKEN_URL", "")
    keyless_client_secret_arn: str = _optional("SIGNER_KEYLESS_CLIENT_SECRET_ARN", "")
    timestamp_authority_url: str = _optional("SIGNER_TIMESTAMP_AUTHORITY_URL", "")
    timestamp_authority_certificates: str = _optional("SIGNER_TIMESTAMP_AUTHORITY_CERTIFICATES", "")

    def _check_signing(self) -> None:
        if self.fulcio_url:  # keyless signing needs all of its parts
            _require_together(
                self,
                "SIGNER_FULCIO_URL",
                "fulcio_root_certificates",
                "keyless_identity_token_url",
                "keyless_client_secret_arn",
            )
        if self.timestamp_authority_url:
            _require_together(self, "SIGNER_TIMESTAMP_AUTHORITY_URL", "timestamp_authority_certificates")


# --- each function's -------------------------------------------------------------------------------


class AuthenticateSettings(TokenSettings, DpopSettings, AuditSettings):
    """``authenticate``: the REQUEST authorizer and the pipeline's Authenticate step."""


class CheckQuotaSettings(TokenSettings, AuditSettings, LicensingSettings, QuotaSettings, CacheSettings):
    """``check_quota``: ``GET /quota`` and the pipeline's CheckQuota and ReleaseQuota steps."""


class VerifyReleaseSettings(TokenSettings, AuditSettings, ReleaseSettings, CacheSettings):
    """``verify_release``: ``GET /verify/referrers`` and the pipeline's VerifyRelease step."""


class SignDsseSettings(
    TokenSettings,
    AuditSettings,
    LicensingSettings,
    QuotaSettings,
    ReleaseSettings,
    SigningSettings,
    CacheSettings,
):
    """``sign_dsse``: ``POST /sign/dsse``, ``GET /keys`` and the pipeline's SignDsse step."""


class AllSettings(AuthenticateSettings, CheckQuotaSettings, VerifyReleaseSettings, SignDsseSettings):
    """Every function's, for a process that hosts them all (the local stack, the tests)."""


S = TypeVar("S", bound=Settings)


def load(model: type[S], environ: Mapping[str, str]) -> S:
    """``model`` read from ``environ``; raises ConfigurationError naming every required variable that
    is unset (or empty), or the first malformed one."""
    values: dict[str, object] = {}
    missing: list[str] = []
    for name, setting in settings_of(model).items():
        raw = environ.get(setting.variable, "").strip()
        if raw:
            values[name] = setting.parse(setting.variable, raw)
        elif setting.default is None:
            missing.append(setting.variable)
    if missing:
        raise ConfigurationError("missing required setting(s): " + ", ".join(sorted(set(missing))))
    settings = model(values)
    for part in model.__mro__:
        for name, check in vars(part).items():
            if name.startswith("_check_") and callable(check):
                check(settings)
    return settings


def variable_of(model: type[Settings], name: str) -> str:
    """The environment variable of ``model``'s setting ``name`` (for messages)."""
    return settings_of(model)[name].variable


def _key_set_given(inline: str, url: str, variable: str) -> None:
    if not inline and not url:
        raise ConfigurationError(f"{variable} or its _URL form is required")


def _require_together(settings: Settings, because: str, *names: str) -> None:
    missing = [variable_of(type(settings), n) for n in names if not getattr(settings, n)]
    if missing:
        raise ConfigurationError(f"{because} is set: missing required setting(s): " + ", ".join(missing))
