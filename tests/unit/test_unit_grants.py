"""Least privilege, read from template.yaml: each function is granted the tables, secrets and bucket
its settings name — no more, no fewer — and on its tables only the DynamoDB actions the adapters
call (no grant is left over from code that is gone)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from stellaops_signer.config import (
    AuthenticateSettings,
    CheckQuotaSettings,
    Settings,
    SignDsseSettings,
    VerifyReleaseSettings,
    settings_of,
)
from tests.conftest import ROOT

#: Which template resource (or parameter) a setting names.
RESOURCES = {
    "SIGNER_AUDIT_TABLE": "AuditTable",
    "SIGNER_REPLAY_TABLE": "ReplayTable",
    "SIGNER_QUOTA_TABLE": "QuotaTable",
    "SIGNER_CACHE_TABLE": "CacheTable",
    "SIGNER_IDEMPOTENCY_TABLE": "IdempotencyTable",
    "SIGNER_NONCE_SECRET_ARN": "DpopNonceSecret",
    "SIGNER_RESERVATION_SECRET_ARN": "ReservationMacSecret",
    "SIGNER_KEYLESS_CLIENT_SECRET_ARN": "KeylessClientSecret",
    "SIGNER_PAYLOAD_BUCKET": "PayloadBucket",
}
FUNCTIONS = {
    "AuthenticateFunction": AuthenticateSettings,
    "CheckQuotaFunction": CheckQuotaSettings,
    "VerifyReleaseFunction": VerifyReleaseSettings,
    "SignDsseFunction": SignDsseSettings,
}
#: The DynamoDB actions the adapters call on each table (boto3 method → IAM action).
TABLE_ACTIONS = {
    "AuditTable": {"dynamodb:PutItem"},  # put_item; the commit transaction's Put
    "ReplayTable": {"dynamodb:PutItem"},
    "QuotaTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},  # the commit transaction's Update too
    "CacheTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
    # Powertools' idempotency persistence layer
    "IdempotencyTable": {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    },
}


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _tag)
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_Loader)


def _names(resource: Any) -> set[str]:
    """The template resources a policy's Resource refers to (Ref, GetAtt, ${X} in a Sub)."""
    if isinstance(resource, dict):
        (kind, value), *_ = resource.items()
        if kind == "Ref":
            return {value}
        if kind == "GetAtt":
            return {value.split(".")[0]}
        if kind == "Sub":
            return set(
                re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", value if isinstance(value, str) else "")
            )
        return set().union(*(_names(v) for v in (value if isinstance(value, list) else [value])))
    if isinstance(resource, list):
        return set().union(*(_names(r) for r in resource))
    return set()


def _statements(function: str) -> list[dict[str, Any]]:
    found = []
    for policy in TEMPLATE["Resources"][function]["Properties"]["Policies"]:
        if isinstance(policy, dict) and "Statement" in policy:
            found += policy["Statement"]
    return found


def _granted(function: str) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for statement in _statements(function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for name in _names(statement["Resource"]) & set(RESOURCES.values()):
            granted.setdefault(name, set()).update(actions)
    return granted


def _named(model: type[Settings]) -> set[str]:
    return {RESOURCES[s.variable] for s in settings_of(model).values() if s.variable in RESOURCES}


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_a_function_is_granted_exactly_what_its_settings_name(function: str) -> None:
    assert set(_granted(function)) == _named(FUNCTIONS[function])


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_on_its_tables_a_function_may_do_only_what_the_adapters_do(function: str) -> None:
    for table, actions in _granted(function).items():
        if table in TABLE_ACTIONS:
            assert actions == TABLE_ACTIONS[table], (function, table)
