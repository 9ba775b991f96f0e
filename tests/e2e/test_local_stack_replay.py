"""Idempotent replays over HTTPS + mTLS (spec §5.4): the gates run before a stored answer leaves."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from stellaops_signer.domain.binding import certificate_thumbprint
from tests.e2e.conftest import session_for
from tests.e2e.test_local_stack import BODY, SIGN

pytestmark = pytest.mark.e2e


def _token(stack: dict[str, Any], authority: Any, **claims: Any) -> str:
    pem = Path(stack["clients"]["scanner-1"]["cert"]).read_text()
    return str(
        authority.mint(
            {**authority.claims_for("scanner-1", cnf={"x5t#S256": certificate_thumbprint(pem)}), **claims}
        )
    )


def _post(stack: dict[str, Any], token: str, key: str, **headers: str) -> Any:
    return session_for(stack, "scanner-1").post(
        stack["signer"] + SIGN,
        json=BODY,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key, **headers},
        timeout=20,
    )


def test_a_replay_is_answered_only_after_the_gates_pass(stack: dict[str, Any], stack_authority: Any) -> None:
    key = f"e2e-{uuid.uuid4()}"
    first = _post(stack, _token(stack, stack_authority), key)
    assert first.status_code == 200, first.text
    again = _post(stack, _token(stack, stack_authority), key)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    verify_only = _post(stack, _token(stack, stack_authority, scope="signer.verify"), key)
    assert (verify_only.status_code, verify_only.json()["code"]) == (403, "insufficient_scope")
    other_tenant = _post(stack, _token(stack, stack_authority), key, **{"X-StellaOps-Tenant": "tenant-b"})
    assert (other_tenant.status_code, other_tenant.json()["code"]) == (403, "tenant_mismatch")
    assert "bundle" not in verify_only.json() and "bundle" not in other_tenant.json()
