"""What an AWS call can fail with, in one place: a service error, a botocore error (network,
timeout, retries exhausted), or an answer botocore could not parse (a malformed body is not a
``BotoCoreError``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from botocore.awsrequest import AWSResponse
    from botocore.client import BaseClient

AWS_FAILURES: tuple[type[Exception], ...] = (ClientError, BotoCoreError, ResponseParserError)

_Client = TypeVar("_Client", bound="BaseClient")


def is_conditional_failure(error: Exception) -> bool:
    """A conditional write that lost (DynamoDB ``ConditionalCheckFailedException``)."""
    return (
        isinstance(error, ClientError)
        and error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )


def insist_on_service_answers(client: _Client) -> _Client:
    """Refuse, as a parse failure, a 200 that is not the service's answer (a proxy's error page in
    between): botocore reads an unparseable JSON body as ``{"message": …}`` and never reads a
    PutObject body, so a write answered that way would otherwise count as done. DynamoDB answers
    ``application/x-amz-json-1.0``; S3 answers a write with its ``ETag``. Returns ``client``."""
    service = client.meta.service_model.service_name

    def check(http_response: AWSResponse | None, model: object = None, **_: object) -> None:
        if http_response is None or http_response.status_code != 200:
            return
        operation_name = getattr(model, "name", "")
        headers = {k.lower(): v for k, v in http_response.headers.items()}
        if service == "dynamodb" and not headers.get("content-type", "").startswith("application/x-amz-json"):
            raise ResponseParserError(f"DynamoDB {operation_name} was answered by something else")
        if service == "s3" and operation_name == "PutObject" and "etag" not in headers:
            raise ResponseParserError("S3 PutObject was answered without an ETag")

    client.meta.events.register(f"after-call.{service}", check)
    return client


__all__ = ["AWS_FAILURES", "insist_on_service_answers", "is_conditional_failure"]
