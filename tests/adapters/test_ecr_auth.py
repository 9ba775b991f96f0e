"""ECR registries are read with GetAuthorizationToken credentials (moto's ECR answers them)."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import urllib3

from stellaops_signer.adapters.clock import SystemClock
from stellaops_signer.adapters.registry import EcrAuthorization, RegistryClient

ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class RecordingSession(requests.Session):
    """Stands in for the network: records the request a registry would get, answers 404."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        answer = requests.Response()
        answer.status_code, answer.url = 404, request.url or ""
        answer.raw = urllib3.HTTPResponse(body=io.BytesIO(b"{}"), preload_content=False)
        return answer


class TwelveHourTokens:
    """moto's ECR answers ``expiresAt`` 2015-01-01; ECR's tokens live 12 hours. Same call, real expiry."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, 0

    def get_authorization_token(self) -> dict[str, Any]:
        self.calls += 1
        answer: dict[str, Any] = self.client.get_authorization_token()
        answer["authorizationData"][0]["expiresAt"] = datetime.now(UTC) + timedelta(hours=12)
        return answer


def test_ecr_credentials_come_from_get_authorization_token_and_are_cached(aws: Any) -> None:
    client = TwelveHourTokens(aws.client("ecr"))
    authorization = EcrAuthorization(client, SystemClock())
    token = authorization(ECR_HOST)
    assert base64.b64decode(token).decode().startswith("AWS:")
    assert authorization(ECR_HOST) == token and client.calls == 1


def test_expired_ecr_credentials_are_fetched_again(aws: Any) -> None:
    client = TwelveHourTokens(aws.client("ecr"))
    authorization = EcrAuthorization(aws.client("ecr"), SystemClock())  # moto's answer: already expired
    authorization(ECR_HOST)
    authorization._client = client  # type: ignore[attr-defined]
    authorization(ECR_HOST)
    assert client.calls == 1


def test_requests_to_an_ecr_registry_carry_basic_credentials_over_https(aws: Any) -> None:
    session = RecordingSession()
    authorization = EcrAuthorization(aws.client("ecr"), SystemClock())
    registry = RegistryClient(allow_list=[ECR_HOST], session=session, ecr_token=authorization)
    assert registry.collect(f"{ECR_HOST}/stellaops/scanner", "sha256:" + "a" * 64) == []
    first = session.sent[0]
    assert first.url is not None and first.url.startswith(
        f"https://{ECR_HOST}/v2/stellaops/scanner/referrers/"
    )
    assert first.headers["Authorization"] == f"Basic {authorization(ECR_HOST)}"
