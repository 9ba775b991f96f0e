"""Signing keys over time (spec §3.5, §4, §5.5): per-tenant KMS keys, retired keys that never sign but
stay published with their window, and rotation as the operator's guide describes it — performed
against moto, with signatures made before and after verified offline from one saved ``/keys``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.verify import Refused, verify_answer
from stellaops_signer import wiring
from stellaops_signer.domain.errors import ConfigurationError
from tests.conftest import load_event, poe_for
from tests.functions.conftest import sign_event

EVENT = load_event("sign_dsse/sign-dsse.json")
BODY = json.loads(EVENT["body"])
HEADERS = {k: v for k, v in EVENT["headers"].items() if k != "Idempotency-Key"}
TENANT_B = {"tid": "tenant-b", "inst": "inst-9"}


def _new_key(aws: Any, alias: str | None = None, *, tag: str = "active", spec: str = "ECC_NIST_P256") -> str:
    kms = aws.client("kms")
    usage = "SIGN_VERIFY" if spec.startswith("ECC") else "ENCRYPT_DECRYPT"
    arn: str = kms.create_key(
        KeySpec=spec, KeyUsage=usage, Tags=[{"TagKey": "stellaops-signer", "TagValue": tag}]
    )["KeyMetadata"]["Arn"]
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


def _configure(
    monkeypatch: pytest.MonkeyPatch, tenants: dict[str, str] | None = None, retired: Any = None
) -> None:
    monkeypatch.setenv("SIGNER_TENANT_SIGNING_KEYS", json.dumps(tenants) if tenants else "")
    monkeypatch.setenv("SIGNER_RETIRED_SIGNING_KEYS", json.dumps(retired) if retired else "")
    wiring.reset()


def _sign(handlers: Any, licensing: Any, tenant_b: bool = False) -> dict[str, Any]:
    if tenant_b:
        body = {**BODY, "poe": {"format": "jwt", "value": poe_for(licensing, "tenant-b", "inst-9")}}
        context = {**EVENT["requestContext"]["authorizer"], **TENANT_B}
        headers = {k: v for k, v in HEADERS.items() if k != "X-StellaOps-Tenant"}
        answer = handlers["sign_dsse"](sign_event(body, context=context, headers=headers))
    else:
        answer = handlers["sign_dsse"](sign_event(BODY, headers=HEADERS))
    assert answer["statusCode"] == 200, answer["body"]
    result: dict[str, Any] = json.loads(answer["body"])
    return result


def _keys(handlers: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(handlers["sign_dsse"](load_event("sign_dsse/keys.json"))["body"])
    return document


def _default_arn(aws: Any) -> str:
    return str(aws.physical["SigningKey"]["Arn"])


# --- per-tenant keys ------------------------------------------------------------------------------


def test_a_tenant_with_its_own_key_signs_with_it_and_others_with_the_default(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_key = _new_key(aws, "alias/tenant-b-signing")
    _configure(monkeypatch, {"tenant-b": "alias/tenant-b-signing"})
    theirs, ours = _sign(handlers, licensing, tenant_b=True), _sign(handlers, licensing)
    assert theirs["bundle"]["signingIdentity"]["keyId"] == tenant_key
    assert ours["bundle"]["signingIdentity"]["keyId"] == _default_arn(aws)
    assert (
        theirs["bundle"]["dsse"]["signatures"][0]["keyid"] != ours["bundle"]["dsse"]["signatures"][0]["keyid"]
    )
    by_tenant = {r["tenant"]: r["key_id"] for r in aws.audit_records() if r["decision"] == "allow"}
    assert by_tenant == {"tenant-b": tenant_key, "tenant-a": _default_arn(aws)}
    keys = _keys(handlers)
    for answer in (theirs, ours):
        verify_answer(answer, keys)


def test_public_keys_are_read_once_per_container_per_key(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _new_key(aws, "alias/tenant-b-signing")
    _configure(monkeypatch, {"tenant-b": "alias/tenant-b-signing"})
    reads: list[str] = []
    client = wiring.container().kms_keys.default._client  # type: ignore[attr-defined]
    client.meta.events.register(
        "provide-client-params.kms.GetPublicKey", lambda params, **_: reads.append(params["KeyId"])
    )
    for _ in range(2):  # (tenant-b's dev plan allows 2 a second)
        _sign(handlers, licensing)
        _sign(handlers, licensing, tenant_b=True)
    assert sorted(reads) == sorted(["alias/stellaops-signer", "alias/tenant-b-signing"])


@pytest.mark.parametrize("problem", ["symmetric", "missing", "retired-but-configured", "not-json", "no-arn"])
def test_a_misconfigured_key_stops_the_cold_start_naming_it(
    aws: Any, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    if problem == "symmetric":
        _configure(monkeypatch, {"tenant-b": _new_key(aws, spec="SYMMETRIC_DEFAULT")})
        expected = "must be ECC_NIST_P256 with SIGN_VERIFY"
    elif problem == "missing":
        _configure(monkeypatch, {"tenant-b": "alias/nobody-made-this"})
        expected = "alias/nobody-made-this"
    elif problem == "retired-but-configured":
        arn = _new_key(aws)
        _configure(monkeypatch, {"tenant-b": arn}, [{"keyArn": arn, "notAfter": "2027-01-01T00:00:00Z"}])
        expected = f"{arn} is listed as retired but still signs"
    elif problem == "not-json":
        monkeypatch.setenv("SIGNER_TENANT_SIGNING_KEYS", "{tenant-b: key}")
        wiring.reset()
        expected = "SIGNER_TENANT_SIGNING_KEYS is not valid JSON"
    else:
        _configure(monkeypatch, None, [{"keyArn": "alias/old", "notAfter": "2027-01-01T00:00:00Z"}])
        expected = "SIGNER_RETIRED_SIGNING_KEYS must be a JSON list"
    with pytest.raises(ConfigurationError, match=expected):
        wiring.container().prepare_signing()


def test_in_lambda_the_sign_function_prepares_its_keys_at_import(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As Lambda runs it (its runtime variables set), a bad key fails the init, not a request."""
    from local.gateway import load_handler

    _configure(monkeypatch, {"tenant-b": "alias/nobody-made-this"})
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "SignDsseFunction")
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.12")
    with pytest.raises(ConfigurationError, match="alias/nobody-made-this"):
        load_handler("functions/sign_dsse", "sign_dsse_cold_start")


# --- /keys ---------------------------------------------------------------------------------------


def test_keys_lists_default_tenant_and_retired_keys_with_their_windows(
    aws: Any, handlers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_key, old_key = _new_key(aws, "alias/tenant-b-signing"), _new_key(aws, tag="retired")
    _configure(
        monkeypatch,
        {"tenant-b": "alias/tenant-b-signing"},
        [{"keyArn": old_key, "notAfter": "2026-11-30T12:00:00Z"}],
    )
    keys = {k["keyArn"]: k for k in _keys(handlers)["keys"]}
    assert set(keys) == {_default_arn(aws), tenant_key, old_key}
    assert [keys[a]["status"] for a in (_default_arn(aws), tenant_key, old_key)] == [
        "active",
        "active",
        "retired",
    ]
    assert keys[old_key]["notAfter"] == "2026-11-30T12:00:00Z" and "notAfter" not in keys[tenant_key]
    for key in keys.values():
        created = datetime.fromisoformat(key["notBefore"].replace("Z", "+00:00"))
        assert abs((created - datetime.now(UTC)).total_seconds()) < 120  # KMS CreationDate
        assert key["jwk"]["kid"] == key["keyid"] and key["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY")
    assert _keys(handlers)["keys"] == list(keys.values())  # stable across calls


# --- rotation, as docs/operations.md describes it -------------------------------------------------


def test_rotation_keeps_every_signature_verifiable_offline_from_one_keys_document(
    aws: Any, handlers: Any, licensing: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms = aws.client("kms")
    before = _sign(handlers, licensing)
    old_key = _default_arn(aws)
    assert before["bundle"]["signingIdentity"]["keyId"] == old_key
    # 1. create the new key (tagged active); 2. point the alias at it.
    new_key = _new_key(aws)
    kms.update_alias(AliasName="alias/stellaops-signer", TargetKeyId=new_key)
    # A warm container follows at once: KMS says which key signed, the Signer reads its public key.
    warm = _sign(handlers, licensing)
    assert warm["bundle"]["signingIdentity"]["keyId"] == new_key
    # 3. list the old key as retired (and tag it so: the functions may no longer sign with it).
    retired_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    kms.tag_resource(KeyId=old_key, Tags=[{"TagKey": "stellaops-signer", "TagValue": "retired"}])
    _configure(
        monkeypatch, None, [{"keyArn": old_key, "notAfter": retired_at.isoformat().replace("+00:00", "Z")}]
    )
    after = _sign(handlers, licensing)
    assert after["bundle"]["signingIdentity"]["keyId"] == new_key
    keys = _keys(handlers)  # the one document a verifier saves
    assert {k["keyArn"]: k["status"] for k in keys["keys"]} == {new_key: "active", old_key: "retired"}
    for answer in (before, warm, after):
        verify_answer(answer, keys)
    # The old key's signatures stay valid only inside its window, and only with a trusted time.
    late = json.loads(json.dumps(keys))
    for key in late["keys"]:
        if key["keyArn"] == old_key:
            key["notAfter"] = "2020-01-01T00:00:00Z"
    with pytest.raises(Refused, match="was retired at 2020-01-01T00:00:00Z"):
        verify_answer(before, late)
    untimed = json.loads(json.dumps(before))
    untimed["bundle"].pop("timestamps")
    with pytest.raises(Refused, match="retired and no timestamp"):
        verify_answer(untimed, keys)


def test_a_signature_timestamped_before_its_key_existed_is_refused(
    aws: Any, handlers: Any, licensing: Any
) -> None:
    answer, keys = _sign(handlers, licensing), _keys(handlers)
    keys["keys"][0]["notBefore"] = "2099-01-01T00:00:00Z"
    with pytest.raises(Refused, match="before the key"):
        verify_answer(answer, keys)


# --- which key signed what ---------------------------------------------------------------------------


def test_key_usage_is_counted_per_key(
    aws: Any,
    handlers: Any,
    licensing: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    capsys.readouterr()
    _sign(handlers, licensing)
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"KeyUsage"' in line]
    [usage] = [d for d in documents if d.get("key") == _default_arn(aws)]
    assert (usage["mode"] == "kms" and usage["KeyUsage"] == [1.0]) or usage["KeyUsage"] == 1.0
