"""moto's server for races between "instances", atomic per item as DynamoDB is.

moto 5.2.5 does not keep DynamoDB's promise that a conditional write is atomic per item: its
``update_item`` reads, checks and writes with no lock, so two server threads can both pass a
condition. The ``moto_server`` fixture serialises moto's item operations; what the race tests
prove is then the Signer's use of conditional writes, not moto's locking. moto's backends
belong to the whole process, so the fixture empties them when it starts and when it ends.
"""

from __future__ import annotations

import functools
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local import moto_kms
from local.provision import Provisioner, load_template
from local.stack import free_port, local_parameters
from tests.conftest import PUBLIC_BASE_URL


class _EndpointSession:
    """A boto3 session whose clients all talk to one endpoint (moto's server)."""

    def __init__(self, session: Any, endpoint: str) -> None:
        self._session, self._endpoint = session, endpoint
        self.region_name = session.region_name

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint, **kwargs)


@dataclass(frozen=True)
class MotoServer:
    endpoint: str
    environment: dict[str, str]
    session: _EndpointSession

    @property
    def quota_table(self) -> str:
        return self.environment["SIGNER_QUOTA_TABLE"]

    def dynamodb(self) -> Any:
        """A new client: its own connection pool, as a separate Lambda instance has."""
        return self.session.client("dynamodb")

    def _licence(self, licence: str) -> dict[str, Any]:
        item = self.dynamodb().get_item(
            TableName=self.quota_table, Key={"pk": {"S": f"licence#{licence}"}}, ConsistentRead=True
        )
        return dict(item.get("Item") or {})

    def daily(self, licence: str, day: str) -> int:
        """The licence's count for the UTC ``day`` (0 once another day began)."""
        item = self._licence(licence)
        return int(item["n"]["N"]) if item.get("day", {}).get("S") == day else 0

    def per_second(self, licence: str, second: int) -> int:
        """The licence's count for ``second`` (0 once another second began)."""
        item = self._licence(licence)
        return int(item["q"]["N"]) if "sec" in item and int(item["sec"]["N"]) == second else 0


def serialised(method: Callable[..., Any], lock: threading.RLock) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


def _reset(endpoint: str) -> None:
    """Empty moto's backends: they belong to this process, not to one server."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="module")
def moto_server(authority: Any, release: Any, licensing: Any) -> Iterator[MotoServer]:
    import boto3
    from moto.dynamodb.models import DynamoDBBackend
    from moto.server import ThreadedMotoServer

    moto_kms.apply()
    lock = threading.RLock()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("get_item", "put_item", "update_item", "delete_item", "transact_write_items"):
            patch.setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name), lock))
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _reset(endpoint)  # an earlier module's server may have left its tables behind
            session = _EndpointSession(boto3.session.Session(region_name="us-east-1"), endpoint)
            provisioner = Provisioner(
                session,
                load_template(),
                local_parameters(PUBLIC_BASE_URL, authority, release.host, release.key.public_pem, licensing),
            )
            provisioner.create_all()
            yield MotoServer(endpoint, provisioner.function_environment(), session)
        finally:
            _reset(endpoint)
            server.stop()
