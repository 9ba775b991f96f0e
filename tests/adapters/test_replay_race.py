"""The DPoP replay cache under a race: many Lambda "instances" (each its own container and
DynamoDB client) present one proof at once, against moto's server over HTTP. Exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local import moto_kms
from local.dpop import DpopKey
from local.provision import Provisioner, load_template
from local.stack import free_port, local_parameters
from stellaops_signer import http
from stellaops_signer.adapters.replay import DynamoDbReplayStore
from stellaops_signer.config import Settings
from stellaops_signer.domain.errors import InvalidDpopProof
from stellaops_signer.wiring import Container
from tests.conftest import PUBLIC_BASE_URL
from tests.functions.conftest import authorizer_event, token_for

INSTANCES = 8


@pytest.fixture(scope="module")
def moto_server(authority: Any, release: Any, licensing: Any) -> Iterator[dict[str, Any]]:
    import boto3
    from moto.server import ThreadedMotoServer

    moto_kms.apply()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's server shares its backends with every mock in this process: start from nothing.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10)
    session = boto3.session.Session(region_name="us-east-1")
    provisioner = Provisioner(
        _EndpointSession(session, endpoint),
        load_template(),
        local_parameters(PUBLIC_BASE_URL, authority, release.host, release.key.public_pem, licensing),
    )
    provisioner.create_all()
    yield {"endpoint": endpoint, "environment": provisioner.function_environment(), "session": session}
    server.stop()


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (moto's server)."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self._session, self._endpoint = session, endpoint
        self.region_name = session.region_name

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint, **kwargs)


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


def test_one_key_remembered_by_many_instances_at_once_has_one_winner(moto_server: dict[str, Any]) -> None:
    import boto3

    stores = [
        DynamoDbReplayStore(
            boto3.session.Session(region_name="us-east-1").client(
                "dynamodb", endpoint_url=moto_server["endpoint"]
            ),
            moto_server["environment"]["SIGNER_REPLAY_TABLE"],
        )
        for _ in range(INSTANCES)
    ]
    results = _race(lambda i: stores[i].remember("same-proof", expires_at=2_000_000_000))
    assert results.count(None) == 1
    assert all(isinstance(r, InvalidDpopProof) for r in results if r is not None)


def test_one_proof_raced_through_many_authorizer_instances_is_allowed_once(
    moto_server: dict[str, Any], authority: Any
) -> None:
    settings = Settings.from_environment({**moto_server["environment"], "SIGNER_REQUIRE_DPOP_NONCE": "false"})
    containers = [
        Container(settings, session=_EndpointSession(moto_server["session"], moto_server["endpoint"]))
        for _ in range(INSTANCES)
    ]
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
