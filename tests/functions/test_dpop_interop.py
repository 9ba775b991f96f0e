"""Proofs made by an independent DPoP implementation (npm ``dpop``, run with Node.js) are
accepted or refused by the authorizer exactly as the RFC says — the server is not only
tested against its own client."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PUBLIC_BASE_URL, ROOT
from tests.functions.conftest import authorizer_event, token_for

SCRIPT = ROOT / "tests" / "interop" / "dpop_proof.mjs"
URL = PUBLIC_BASE_URL + "/api/v1/signer/sign/dsse"


def node(*args: str) -> str:
    assert (ROOT / "tests" / "interop" / "node_modules" / "dpop").is_dir(), (
        "run make test (npm ci tests/interop)"
    )
    run = subprocess.run(["node", str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=True)
    return run.stdout


class NodeCaller:
    def __init__(self, tmp_path: Path, authority: Any, alg: str = "ES256") -> None:
        self.key_file = tmp_path / f"dpop-{alg}.json"
        facts = json.loads(node("keypair", alg, str(self.key_file)))
        self.jkt = facts["jkt"]
        self.token = token_for(authority, None, cnf={"jkt": self.jkt})

    def proof(self, htm: str = "POST", htu: str = URL, nonce: str = "") -> str:
        return node("proof", str(self.key_file), htm, htu, self.token, nonce)


def _decide(handlers: Any, token: str, proof: str) -> dict[str, Any]:
    event = authorizer_event(token, None, scheme="DPoP")
    event["headers"]["DPoP"] = proof
    event["multiValueHeaders"]["DPoP"] = [proof]
    answer = handlers["authenticate"](event)
    return {"effect": answer["policyDocument"]["Statement"][0]["Effect"], **(answer.get("context") or {})}


def test_thumbprints_agree_with_the_independent_implementation(tmp_path: Path, authority: Any) -> None:
    from stellaops_signer.domain.tokens import jwk_thumbprint

    facts = json.loads(node("keypair", "ES256", str(tmp_path / "k.json")))
    assert jwk_thumbprint(facts["jwk"]) == facts["jkt"]


def test_independent_es256_proofs_follow_the_nonce_dance_and_are_allowed(
    aws: Any, handlers: Any, authority: Any, tmp_path: Path
) -> None:
    caller = NodeCaller(tmp_path, authority)
    first = _decide(handlers, caller.token, caller.proof())
    assert (first["effect"], first["errorCode"]) == ("Deny", "use_dpop_nonce")
    allowed = _decide(handlers, caller.token, caller.proof(nonce=first["dpopNonce"]))
    assert (
        allowed["effect"] == "Allow" and allowed["senderKey"] == caller.jkt and allowed["binding"] == "dpop"
    )


def test_independent_proofs_for_another_method_or_uri_are_refused(
    aws: Any, handlers: Any, authority: Any, tmp_path: Path
) -> None:
    caller = NodeCaller(tmp_path, authority)
    nonce = _decide(handlers, caller.token, caller.proof())["dpopNonce"]
    for proof in (
        caller.proof(htm="GET", nonce=nonce),
        caller.proof(htu=PUBLIC_BASE_URL + "/x", nonce=nonce),
    ):
        refused = _decide(handlers, caller.token, proof)
        assert (refused["effect"], refused["errorCode"]) == ("Deny", "invalid_dpop_proof")


def test_an_independent_proof_replayed_is_refused(
    aws: Any, handlers: Any, authority: Any, tmp_path: Path
) -> None:
    caller = NodeCaller(tmp_path, authority)
    nonce = _decide(handlers, caller.token, caller.proof())["dpopNonce"]
    proof = caller.proof(nonce=nonce)
    assert _decide(handlers, caller.token, proof)["effect"] == "Allow"
    assert _decide(handlers, caller.token, proof)["errorCode"] == "invalid_dpop_proof"


@pytest.mark.parametrize("alg", ["Ed25519"])
def test_fully_specified_ed25519_alg_is_not_the_eddsa_the_signer_accepts(
    aws: Any, handlers: Any, authority: Any, tmp_path: Path, alg: str
) -> None:
    """npm dpop 2.x names Ed25519 proofs alg "Ed25519" (fully specified); spec §3.1 accepts "EdDSA"."""
    caller = NodeCaller(tmp_path, authority, alg)
    refused = _decide(handlers, caller.token, caller.proof())
    assert (refused["effect"], refused["errorCode"]) == ("Deny", "invalid_dpop_proof")
