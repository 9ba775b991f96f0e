"""What an AWS call can fail with, in one place: a service error, a botocore error (network,
timeout, retries exhausted), or an answer botocore could not parse (a malformed body is not a
``BotoCoreError``)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

AWS_FAILURES: tuple[type[Exception], ...] = (ClientError, BotoCoreError, ResponseParserError)


def is_conditional_failure(error: Exception) -> bool:
    """A conditional write that lost (DynamoDB ``ConditionalCheckFailedException``)."""
    return (
        isinstance(error, ClientError)
        and error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )
