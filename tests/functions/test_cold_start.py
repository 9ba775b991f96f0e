"""Each function's cold start as Lambda runs it (its runtime variables set): its own settings model
is read and what it builds is built at import, so a missing or malformed setting stops the init
with a message naming the variable — not a request with a 500 (spec §4)."""

from __future__ import annotations

from typing import Any

import pytest

from local.gateway import load_handler
from stellaops_signer import wiring
from stellaops_signer.config import (
    AuthenticateSettings,
    CheckQuotaSettings,
    SignDsseSettings,
    VerifyReleaseSettings,
)
from stellaops_signer.domain.errors import ConfigurationError

FUNCTIONS = {
    "authenticate": AuthenticateSettings,
    "check_quota": CheckQuotaSettings,
    "verify_release": VerifyReleaseSettings,
    "sign_dsse": SignDsseSettings,
}

#: One setting each function cannot start without, and one it never reads.
CASES = [
    ("authenticate", "SIGNER_NONCE_SECRET_ARN", "SIGNER_KMS_KEY_ID"),
    ("check_quota", "SIGNER_QUOTA_TABLE", "SIGNER_REPLAY_TABLE"),
    ("verify_release", "SIGNER_SCANNER_REPOSITORIES", "SIGNER_PLANS"),
    ("sign_dsse", "SIGNER_KMS_KEY_ID", "SIGNER_NONCE_SECRET_ARN"),
]


def _as_lambda(monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", function)
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    wiring.reset()


@pytest.mark.parametrize(("function", "required", "unread"), CASES)
def test_a_missing_setting_stops_the_cold_start_naming_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, function: str, required: str, unread: str
) -> None:
    _as_lambda(monkeypatch, function)
    monkeypatch.delenv(required)
    with pytest.raises(ConfigurationError, match=f"missing required setting\\(s\\): {required}$"):
        load_handler(f"functions/{function}", f"{function}_cold_start")


@pytest.mark.parametrize(("function", "required", "unread"), CASES)
def test_a_function_starts_without_what_it_never_reads(
    aws: Any, monkeypatch: pytest.MonkeyPatch, function: str, required: str, unread: str
) -> None:
    _as_lambda(monkeypatch, function)
    monkeypatch.delenv(unread)
    load_handler(f"functions/{function}", f"{function}_cold_start")
    built = wiring.container()
    assert type(built.settings) is FUNCTIONS[function]  # its own model, built at the cold start
    wiring.reset()


@pytest.mark.parametrize(
    ("function", "variable", "raw"),
    [
        ("authenticate", "SIGNER_PUBLIC_BASE_URL", "http://signer.example.com"),
        ("check_quota", "SIGNER_PLANS", "{not json"),
        ("verify_release", "SIGNER_REGISTRY_ALLOW_LIST", "elsewhere.example"),
        ("sign_dsse", "SIGNER_DEFAULT_SIGNING_MODE", "raw"),
    ],
)
def test_a_malformed_setting_stops_the_cold_start_naming_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, function: str, variable: str, raw: str
) -> None:
    _as_lambda(monkeypatch, function)
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ConfigurationError, match=variable):
        load_handler(f"functions/{function}", f"{function}_cold_start")
