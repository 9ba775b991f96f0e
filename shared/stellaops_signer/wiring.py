"""The composition root: each function's settings parsed and its adapters built once per container.

``ROOTS`` is the page per function: its settings model (config.py) and what its cold start builds,
so that a missing or malformed setting stops it. ``Container`` holds the shared builders, one
section per settings part; each reads only its part, so a function can build only what its settings
describe. Nothing is built at import time: the authorizer never creates a KMS client and
``sign_dsse`` never fetches a nonce secret.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal, TypeVar, cast, overload

from stellaops_signer.adapters.clock import SystemClock
from stellaops_signer.adapters.ids import random_id
from stellaops_signer.config import (
    AllSettings,
    AuditSettings,
    AuthenticateSettings,
    CacheSettings,
    CheckQuotaSettings,
    DpopSettings,
    LicensingSettings,
    QuotaSettings,
    ReleaseSettings,
    SignDsseSettings,
    SigningSettings,
    TokenSettings,
    VerifyReleaseSettings,
    load,
)
from stellaops_signer.domain.errors import ConfigurationError

if TYPE_CHECKING:  # the use cases are imported by the functions that use them, not by every function
    from boto3.session import Session
    from botocore.client import BaseClient
    from cryptography import x509
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_ecr.client import ECRClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

    from stellaops_signer.adapters.kms import KmsKeyring
    from stellaops_signer.adapters.payloads import S3PayloadStore
    from stellaops_signer.domain.binding import Principal
    from stellaops_signer.domain.errors import SignerError
    from stellaops_signer.domain.jose import JsonObject
    from stellaops_signer.http import ApiRequest
    from stellaops_signer.ports import (
        AuditLog,
        Cache,
        Clock,
        EnvelopeSigner,
        Idempotency,
        KeySetSource,
        KeySigner,
        QuotaStore,
        ReplayStore,
        SigningCommit,
        Timestamper,
    )
    from stellaops_signer.usecases.authenticate import Authenticator, TokenVerifier
    from stellaops_signer.usecases.check_quota import QuotaDesk
    from stellaops_signer.usecases.entitlement import EntitlementChecker
    from stellaops_signer.usecases.sign_dsse import SignDsse
    from stellaops_signer.usecases.verify_release import ReleaseQuery, ReleaseVerifier

T = TypeVar("T")
Part = TypeVar("Part")
#: The settings a container may hold: one function's, or every function's (a process hosting all).
FunctionSettings = AuthenticateSettings | CheckQuotaSettings | VerifyReleaseSettings | SignDsseSettings

#: Step Functions caps a state at 256 KiB; larger results travel by reference (spec §6).
PIPELINE_INLINE_BYTES = 200 * 1024


#: The adapters a container can be handed instead of building them (fakes in the use-case tests and
#: the bench's in-memory run): ``audit``, ``quotas``, ``replay``, ``cache``, ``kms_keys``,
#: ``nonce_key``, ``reservation_key``.
ADAPTERS = frozenset({"audit", "quotas", "replay", "cache", "kms_keys", "nonce_key", "reservation_key"})


class Container:
    """Everything a function needs, built lazily and exactly once per Lambda container.

    ``adapters`` (names in ADAPTERS) are used as given instead of being built: one composition root
    for AWS and for fakes alike.
    """

    def __init__(
        self,
        settings: FunctionSettings,
        clock: Clock | None = None,
        session: Session | None = None,
        adapters: Mapping[str, object] | None = None,
    ) -> None:
        unknown = set(adapters or {}) - ADAPTERS
        if unknown:
            raise ValueError(f"not adapters of a container: {sorted(unknown)}")
        self.settings: FunctionSettings = settings
        self.clock: Clock = clock or SystemClock()
        self._session = session
        self._adapters = dict(adapters or {})

    def _given(self, name: str, build: Callable[[], T]) -> T:
        given = cast("T | None", self._adapters.get(name))  # ADAPTERS names what each one is
        return given if given is not None else build()

    def part(self, kind: type[Part]) -> Part:
        """The part ``kind`` of this container's settings; a function whose settings lack it cannot
        build what needs it (ConfigurationError)."""
        if not isinstance(self.settings, kind):
            raise ConfigurationError(f"{type(self.settings).__name__} holds no {kind.__name__}")
        return self.settings

    # --- AWS clients (boto3 is imported here, on first use, not at module import) -------------

    @cached_property
    def session(self) -> Session:
        return self._session if self._session is not None else aws_session()

    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["ecr"]) -> ECRClient: ...
    @overload
    def client(self, service: Literal["kms"]) -> KMSClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
    def client(self, service: Literal["dynamodb", "ecr", "kms", "s3", "secretsmanager"]) -> BaseClient:
        from botocore.config import Config

        from stellaops_signer.adapters.aws import insist_on_service_answers

        config = Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=5,
            tcp_keepalive=True,
        )
        return insist_on_service_answers(self.session.client(service, config=config))

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self.client("dynamodb")

    # --- adapters --------------------------------------------------------------------------

    def _key_set(self, inline: str, url: str, variable: str, unavailable: type[SignerError]) -> KeySetSource:
        from stellaops_signer.adapters.jwks import RemoteKeySet, StaticKeySet

        if inline:
            return StaticKeySet(inline, variable)
        if url:
            return RemoteKeySet(url, self.clock, unavailable)
        from stellaops_signer.domain.errors import ConfigurationError

        raise ConfigurationError(f"{variable} or its _URL form is required")

    @cached_property
    def authority_keys(self) -> KeySetSource:
        from stellaops_signer.domain.errors import InvalidToken

        settings = self.part(TokenSettings)
        return self._key_set(
            settings.authority_jwks, settings.authority_jwks_url, "SIGNER_AUTHORITY_JWKS", InvalidToken
        )

    @cached_property
    def audit(self) -> AuditLog:
        def build() -> AuditLog:
            from stellaops_signer.adapters.audit import DynamoDbAuditLog

            settings = self.part(AuditSettings)
            return DynamoDbAuditLog(
                self.dynamodb,
                settings.audit_table,
                retention_seconds=settings.audit_retention_days * 86400,
                clock=self.clock,
            )

        return self._given("audit", build)

    @cached_property
    def cache(self) -> Cache:
        def build() -> Cache:
            from stellaops_signer.adapters.cache import DynamoDbCache

            return DynamoDbCache(self.dynamodb, self.part(CacheSettings).cache_table, self.clock)

        return self._given("cache", build)

    @cached_property
    def kms_keys(self) -> KmsKeyring:
        """The default, per-tenant and retired KMS keys (their public keys read on first use)."""

        def build() -> KmsKeyring:
            from stellaops_signer.adapters.kms import KmsKeyring

            settings = self.part(SigningSettings)
            return KmsKeyring.of_kms(
                self.client("kms"),
                settings.kms_key_id,
                settings.tenant_signing_keys,
                settings.retired_signing_keys,
            )

        return self._given("kms_keys", build)

    @property
    def key_signer(self) -> KeySigner:
        """The default KMS key."""
        return self.kms_keys.default

    # --- use cases -------------------------------------------------------------------------

    @cached_property
    def tokens(self) -> TokenVerifier:
        from stellaops_signer.usecases.authenticate import TokenVerifier

        settings = self.part(TokenSettings)
        return TokenVerifier(
            authority_keys=self.authority_keys,
            issuer=settings.authority_issuer,
            max_lifetime=settings.max_token_lifetime_seconds,
            clock=self.clock,
        )

    @cached_property
    def authenticator(self) -> Authenticator:
        from stellaops_signer.adapters.replay import DynamoDbReplayStore
        from stellaops_signer.adapters.secrets import read_secret
        from stellaops_signer.domain.dpop import NonceKeeper
        from stellaops_signer.usecases.authenticate import Authenticator

        settings = self.part(DpopSettings)

        def read_nonce_key() -> bytes:
            return read_secret(self.client("secretsmanager"), settings.nonce_secret_arn)

        def replay_store() -> ReplayStore:
            return DynamoDbReplayStore(self.dynamodb, settings.replay_table)

        nonce_key, replay = self._given("nonce_key", read_nonce_key), self._given("replay", replay_store)
        return Authenticator(
            tokens=self.tokens,
            public_base_url=settings.public_base_url,
            nonces=NonceKeeper(nonce_key, settings.dpop_nonce_ttl_seconds),
            require_nonce=settings.require_dpop_nonce,
            replay=replay,
            clock=self.clock,
        )

    def confirm_caller(self, claimed: Principal, request: ApiRequest) -> Principal:
        """A proxy event's principal, confirmed against its token (``http.Gate``); a refusal is audited."""
        from stellaops_signer.domain.errors import InvalidToken

        try:
            return self.tokens.confirm(claimed, request.header("Authorization"), request.client_cert_pem)
        except InvalidToken as error:
            self.record_authentication_denial(error, request.method, request.resource, request.correlation_id)
            raise

    def record_authentication_denial(
        self, error: SignerError, method: str, path: str, correlation: str
    ) -> None:
        """Audit an authentication denial (no principal: only what was refused, where, and why)."""
        from stellaops_signer.domain.audit import AuditRecord, iso_time
        from stellaops_signer.domain.errors import SignerError

        record = AuditRecord(
            audit_id=random_id(),
            time=iso_time(self.clock.now()),
            route=f"{method} {path}",
            decision="deny",
            correlation_id=correlation,
            latency_ms=0,
            error_code=error.code,
        )
        try:
            self.audit.record(record)
        except SignerError:
            from stellaops_signer.observability import logger

            logger.warning("authentication denial not audited", extra={"code": error.code})

    @cached_property
    def release_verifier(self) -> ReleaseVerifier:
        from stellaops_signer.adapters.registry import EcrAuthorization, RegistryClient, split_repository
        from stellaops_signer.domain.release import parse_trusted_keys
        from stellaops_signer.usecases.verify_release import ReleaseVerifier

        settings = self.part(ReleaseSettings)
        try:
            keys = parse_trusted_keys(settings.release_trusted_keys)
            registries = {split_repository(repository)[0] for repository in settings.scanner_repositories}
        except ValueError as exc:
            raise ConfigurationError(f"release verification is misconfigured: {exc}") from None
        if not registries <= set(settings.registry_allow_list):
            raise ConfigurationError(
                "every SIGNER_SCANNER_REPOSITORIES registry must be in SIGNER_REGISTRY_ALLOW_LIST"
            )
        uses_ecr = any(".dkr.ecr." in registry for registry in registries)
        client = RegistryClient(
            allow_list=settings.registry_allow_list,
            insecure_loopback=settings.registry_insecure_loopback,
            ecr_token=EcrAuthorization(self.client("ecr"), self.clock) if uses_ecr else None,
            ca_bundle=registry_ca_file(settings.registry_ca_bundle) if settings.registry_ca_bundle else None,
        )
        return ReleaseVerifier(
            registry=client,
            keys=keys,
            scanner_repositories=settings.scanner_repositories,
            allow_list=settings.registry_allow_list,
            cache=self.cache,
            clock=self.clock,
        )

    @cached_property
    def licensing_keys(self) -> KeySetSource:
        from stellaops_signer.domain.errors import EntitlementUnavailable

        settings = self.part(LicensingSettings)
        return self._key_set(
            settings.licensing_jwks,
            settings.licensing_jwks_url,
            "SIGNER_LICENSING_JWKS",
            EntitlementUnavailable,
        )

    @cached_property
    def entitlements(self) -> EntitlementChecker:
        from stellaops_signer.adapters.licensing import HttpIntrospection
        from stellaops_signer.usecases.entitlement import EntitlementChecker

        settings = self.part(LicensingSettings)
        url = settings.licensing_introspect_url
        introspect = HttpIntrospection(url) if url else None
        return EntitlementChecker(
            keys=self.licensing_keys,
            issuer=settings.licensing_issuer,
            plans=settings.plans,
            clock=self.clock,
            introspect=introspect,
            cache=self.cache,
            cache_ttl=settings.poe_cache_ttl_seconds,
        )

    @cached_property
    def quotas(self) -> QuotaStore:
        def build() -> QuotaStore:
            from stellaops_signer.adapters.quota import DynamoDbQuotaStore

            return DynamoDbQuotaStore(self.dynamodb, self.part(QuotaSettings).quota_table, self.clock)

        return self._given("quotas", build)

    @cached_property
    def signing_commit(self) -> SigningCommit:
        from stellaops_signer.adapters.audit import (
            DynamoDbAuditLog,
            DynamoDbSigningCommit,
            SeparateSigningCommit,
        )
        from stellaops_signer.adapters.quota import DynamoDbQuotaStore

        audit, quotas = self.audit, self.quotas
        if isinstance(audit, DynamoDbAuditLog) and isinstance(quotas, DynamoDbQuotaStore):
            return DynamoDbSigningCommit(self.dynamodb, audit, quotas)
        return SeparateSigningCommit(audit, quotas)

    @cached_property
    def quota_desk(self) -> QuotaDesk:
        from stellaops_signer.usecases.check_quota import QuotaDesk

        return QuotaDesk(
            entitlements=self.entitlements,
            quotas=self.quotas,
            clock=self.clock,
            reservation_key=lambda: self.reservation_key,
        )

    @cached_property
    def reservation_key(self) -> bytes:
        """The MAC key of reservations handed between pipeline steps (read on first use)."""

        def build() -> bytes:
            from stellaops_signer.adapters.secrets import read_secret

            arn = self.part(QuotaSettings).reservation_secret_arn
            return read_secret(self.client("secretsmanager"), arn)

        return self._given("reservation_key", build)

    @cached_property
    def release_query(self) -> ReleaseQuery:
        from stellaops_signer.usecases.verify_release import ReleaseQuery

        return ReleaseQuery(
            verifier=self.release_verifier, audit=self.audit, clock=self.clock, new_id=random_id
        )

    def envelope_signer(self, mode: str, tenant: str) -> EnvelopeSigner | None:
        """Who signs for ``tenant`` in ``mode``: its KMS key (else the default one), or the keyless
        signer when ``FulcioUrl`` is set; None for a mode this installation does not offer."""
        if mode == "kms":
            return self.kms_keys.for_tenant(tenant)
        if mode == "keyless" and self.part(SigningSettings).fulcio_url:
            return self.keyless_signer
        return None

    def prepare_signing(self) -> KmsKeyring:
        """What a signing function does at its cold start: read every KMS key, so that a key that is
        misconfigured or unreadable stops the cold start (ConfigurationError naming it) instead of
        failing requests one by one."""
        self.kms_keys.prepare()
        if self.part(SigningSettings).fulcio_url:
            _ = self.keyless_signer
        _ = self.timestamper
        return self.kms_keys

    @cached_property
    def keyless_signer(self) -> EnvelopeSigner:
        from stellaops_signer.adapters.keyless import ClientCredentialsIdentity, FulcioClient, KeylessSigner

        settings = self.part(SigningSettings)  # load() saw that keyless signing has all its settings
        return KeylessSigner(
            fulcio=FulcioClient(self._service_url(settings.fulcio_url, "SIGNER_FULCIO_URL")),
            identity=ClientCredentialsIdentity(
                self._service_url(settings.keyless_identity_token_url, "SIGNER_KEYLESS_IDENTITY_TOKEN_URL"),
                lambda: self.keyless_credentials,
                self.clock,
            ),
            trusted=self.fulcio_certificates,
            clock=self.clock,
            reuse_seconds=settings.keyless_key_reuse_seconds,
        )

    @cached_property
    def fulcio_certificates(self) -> tuple[x509.Certificate, ...]:
        from stellaops_signer.domain.errors import ConfigurationError
        from stellaops_signer.domain.keyless import parse_certificates, roots_of

        certificates = parse_certificates(
            self.part(SigningSettings).fulcio_root_certificates, "SIGNER_FULCIO_ROOT_CERTIFICATES"
        )
        if not roots_of(certificates):
            raise ConfigurationError(
                "SIGNER_FULCIO_ROOT_CERTIFICATES needs the keyless CA's root certificate"
            )
        return certificates

    @cached_property
    def keyless_credentials(self) -> tuple[str, str]:
        """The Signer's own client id and secret at the Authority (Secrets Manager, JSON)."""
        from stellaops_signer.adapters.secrets import read_secret
        from stellaops_signer.domain.errors import ConfigurationError

        arn = self.part(SigningSettings).keyless_client_secret_arn
        try:
            value = json.loads(read_secret(self.client("secretsmanager"), arn))
            client_id, secret = value["clientId"], value["clientSecret"]
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError(
                f"the secret {arn} must be JSON with clientId and clientSecret"
            ) from None
        if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id or not secret:
            raise ConfigurationError(f"the secret {arn} must be JSON with clientId and clientSecret")
        return client_id, secret

    @cached_property
    def timestamper(self) -> Timestamper | None:
        from stellaops_signer.adapters.timestamps import Rfc3161Timestamper
        from stellaops_signer.domain.keyless import parse_certificates

        settings = self.part(SigningSettings)
        if not settings.timestamp_authority_url:
            return None
        certificates = parse_certificates(
            settings.timestamp_authority_certificates, "SIGNER_TIMESTAMP_AUTHORITY_CERTIFICATES"
        )
        try:
            return Rfc3161Timestamper(
                self._service_url(settings.timestamp_authority_url, "SIGNER_TIMESTAMP_AUTHORITY_URL"),
                certificates,
                self.clock,
            )
        except ValueError as exc:
            from stellaops_signer.domain.errors import ConfigurationError

            raise ConfigurationError(str(exc)) from None

    def _service_url(self, url: str, variable: str) -> str:
        """HTTPS only; plain HTTP to loopback under the registries' explicit test switch (spec §5.5)."""
        from urllib.parse import urlsplit

        from stellaops_signer.domain.errors import ConfigurationError

        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme == "https" or (
            parts.scheme == "http" and loopback and self.part(ReleaseSettings).registry_insecure_loopback
        ):
            return url
        raise ConfigurationError(f"{variable} must be an https:// URL")

    def keys_document(self, caller: Principal, tenant_header: str | None) -> JsonObject:
        """``GET /keys`` (spec §3.5), for any authenticated caller of the tenant it names."""
        from cryptography.hazmat.primitives.serialization import Encoding

        from stellaops_signer.domain.authorization import check_tenant

        check_tenant(caller, tenant_header)

        from stellaops_signer.domain.keyless import parse_certificates
        from stellaops_signer.usecases.sign_dsse import keys_document

        settings = self.part(SigningSettings)

        def pems(text: str, variable: str) -> list[str]:
            return [c.public_bytes(Encoding.PEM).decode("ascii") for c in parse_certificates(text, variable)]

        keyless = (
            pems(settings.fulcio_root_certificates, "SIGNER_FULCIO_ROOT_CERTIFICATES")
            if settings.fulcio_url
            else []
        )
        tsa = (
            pems(settings.timestamp_authority_certificates, "SIGNER_TIMESTAMP_AUTHORITY_CERTIFICATES")
            if settings.timestamp_authority_url
            else []
        )
        return keys_document(
            self.kms_keys.published(),
            self.release_verifier.trusted_keys,
            keyless_authorities=keyless,
            timestamp_authorities=tsa,
        )

    @cached_property
    def sign_dsse(self) -> SignDsse:
        from stellaops_signer.domain.predicates import PredicateCatalogue
        from stellaops_signer.usecases.sign_dsse import SignDsse

        settings = self.part(SigningSettings)
        return SignDsse(
            signers=self.envelope_signer,
            timestamper=self.timestamper,
            audit=self.audit,
            catalogue=PredicateCatalogue(settings.allowed_predicate_types),
            clock=self.clock,
            default_mode=settings.default_signing_mode,
            releases=self.release_verifier,
            entitlements=self.entitlements,
            quotas=self.quotas,
            commit=self.signing_commit,
            idempotency=lambda: self.idempotency,  # built (and imported) on the first keyed request
            reservation_key=lambda: self.reservation_key,  # read on the first pipeline reservation
            max_attestation_bytes=settings.max_attestation_bytes,
            new_id=random_id,
        )

    @cached_property
    def payloads(self) -> S3PayloadStore:
        from stellaops_signer.adapters.payloads import S3PayloadStore

        return S3PayloadStore(self.client("s3"), self.part(SigningSettings).payload_bucket)

    def pipeline_result(self, body: JsonObject, *, by_reference: bool = False) -> JsonObject:
        """A step's answer as Step Functions can carry it: inline up to 200 KiB, else (or when asked: a
        batch's items, whose results are gathered in one state) an S3 reference."""
        data = json.dumps(body, separators=(",", ":")).encode()
        inline = not by_reference and len(data) <= PIPELINE_INLINE_BYTES
        return body if inline else {"result": self.payloads.put(data)}

    @cached_property
    def idempotency(self) -> Idempotency:
        from stellaops_signer.adapters.idempotency import PowertoolsIdempotency

        table = self.part(SigningSettings).idempotency_table
        return PowertoolsIdempotency(self.dynamodb, table, lambda: self.payloads)


def registry_ca_file(pem: str) -> str:
    """A CA file for registry TLS: the public roots (certifi) plus ``RegistryCaBundle``'s private CAs,
    written once per container (requests takes a path). Malformed PEM stops the cold start."""
    import hashlib
    import tempfile
    from pathlib import Path

    import certifi
    from cryptography import x509

    from stellaops_signer.domain.errors import ConfigurationError

    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError:
        raise ConfigurationError("SIGNER_REGISTRY_CA_BUNDLE holds no PEM certificate") from None
    if not all(_is_ca(c) for c in certificates):
        raise ConfigurationError("SIGNER_REGISTRY_CA_BUNDLE must hold CA certificates")
    bundle = Path(certifi.where()).read_text() + "\n" + pem.strip() + "\n"
    path = Path(tempfile.gettempdir()) / f"registry-ca-{hashlib.sha256(bundle.encode()).hexdigest()[:16]}.pem"
    if not path.exists():
        path.write_text(bundle)
    return str(path)


def _is_ca(certificate: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


@functools.cache
def aws_session() -> Session:
    """One boto3 session per process: its service models load once, whatever the container."""
    import boto3

    return boto3.session.Session()


# --- one root per function: its settings, and what its cold start builds ----------------------------


@dataclass(frozen=True)
class FunctionRoot:
    """A function's composition: the settings model it reads (and nothing more) and what its cold
    start builds, so that a missing or malformed setting stops the cold start, not a request."""

    settings: type[FunctionSettings]
    prepare: Callable[[Container], object]


ROOTS: dict[str, FunctionRoot] = {
    # The authorizer and the pipeline's Authenticate step: tokens, proofs of possession, the audit.
    "authenticate": FunctionRoot(AuthenticateSettings, lambda c: (c.tokens, c.audit, c.part(DpopSettings))),
    # GET /quota and the CheckQuota/ReleaseQuota steps: PoEs, plans and their counters.
    "check_quota": FunctionRoot(CheckQuotaSettings, lambda c: (c.tokens, c.audit, c.quota_desk)),
    # GET /verify/referrers and the VerifyRelease step: the release verifier and its trust.
    "verify_release": FunctionRoot(VerifyReleaseSettings, lambda c: (c.tokens, c.audit, c.release_query)),
    # POST /sign/dsse, GET /keys and the SignDsse step: every KMS key read now (prepare_signing).
    "sign_dsse": FunctionRoot(SignDsseSettings, lambda c: (c.tokens, c.sign_dsse, c.prepare_signing())),
}


def in_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and os.environ.get("AWS_EXECUTION_ENV"))


def cold_start(function: str) -> None:
    """Called by ``function``'s module at import. In Lambda (one function per process): its container
    from its own settings model, prepared now, inside the init phase, so that a missing or malformed
    setting stops the cold start with a ConfigurationError naming it (the runtime reports it)
    rather than answering requests with 500s. Outside Lambda (the local stack, the tests: every
    function in one process) nothing is built at import; ``container()`` is built on first use."""
    if in_lambda():
        root = ROOTS[function]
        install(Container(load(root.settings, os.environ)))
        root.prepare(container())


_current: list[Container] = []


def container() -> Container:
    """This process's container: the one its function's cold start built (Lambda), else one with
    every function's settings, built from the environment on first use."""
    if not _current:
        _current.append(Container(load(AllSettings, os.environ)))
    return _current[0]


def install(replacement: Container) -> None:
    """Make ``replacement`` this process's container (the bench's in-memory run, use-case tests)."""
    _current[:] = [replacement]


def reset() -> None:
    """Forget the container (tests and the local stack change the environment between runs)."""
    _current.clear()


__all__ = [
    "ADAPTERS",
    "ROOTS",
    "Container",
    "FunctionRoot",
    "FunctionSettings",
    "cold_start",
    "container",
    "in_lambda",
    "install",
    "reset",
]
