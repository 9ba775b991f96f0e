"""The DPoP replay cache under a race: many Lambda "instances" (each its own container and
DynamoDB client) present one proof at once, against moto's server over HTTP. Exactly one wins."""

from __future__ import annotations

import threading
from typing import Any

from local.dpop import DpopKey
from stellaops_signer import http
from stellaops_signer.adapters.replay import DynamoDbReplayStore
from stellaops_signer.config import AllSettings, load
from stellaops_signer.domain.errors import InvalidDpopProof
from stellaops_signer.wiring import Container
from tests.conftest import PUBLIC_BASE_URL
from tests.functions.conftest import authorizer_event, token_for
from tests.moto_server import MotoServer

INSTANCES = 8


def _race(action: Any) -> list[Any]:
    barrier = threading.Barrier(INSTANCES)
    results: list[Any] = [None] * INSTANCES

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(INSTANCES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_one_key_remembered_by_many_instances_at_once_has_one_winner(moto_server: MotoServer) -> None:
    stores = [
        DynamoDbReplayStore(moto_server.dynamodb(), moto_server.environment["SIGNER_REPLAY_TABLE"])
        for _ in range(INSTANCES)
    ]
    results = _race(lambda i: stores[i].remember("same-proof", expires_at=2_000_000_000))
    assert results.count(None) == 1
    assert all(isinstance(r, InvalidDpopProof) for r in results if r is not None)


def test_one_proof_raced_through_many_authorizer_instances_is_allowed_once(
    moto_server: MotoServer, authority: Any
) -> None:
    settings = load(AllSettings, {**moto_server.environment, "SIGNER_REQUIRE_DPOP_NONCE": "false"})
    containers = [Container(settings, session=moto_server.session) for _ in range(INSTANCES)]
    key = DpopKey()
    token = token_for(authority, None, cnf={"jkt": key.thumbprint})
    event = authorizer_event(token, None, scheme="DPoP")
    proof = key.proof("POST", PUBLIC_BASE_URL + "/api/v1/signer/sign/dsse", access_token=token)
    event["headers"]["DPoP"] = proof
    event["multiValueHeaders"]["DPoP"] = [proof]
    for container in containers:  # cold starts happen before the race
        container.authenticator  # noqa: B018

    def decide(index: int) -> str:
        c = containers[index]
        answer = http.authorizer_answer(event, c.authenticator, c.record_authentication_denial)
        effect = answer["policyDocument"]["Statement"][0]["Effect"]
        return f"{effect}:{(answer.get('context') or {}).get('errorCode', '')}"

    results = _race(decide)
    assert results.count("Allow:") == 1, results
    assert results.count("Deny:invalid_dpop_proof") == INSTANCES - 1, results
