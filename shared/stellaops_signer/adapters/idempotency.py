"""Idempotent signing (spec §5.4) on Powertools idempotency with its DynamoDB persistence layer.

The record key is ``<tenant>#<Idempotency-Key>`` (a key is scoped to its tenant); the payload
validation is the SHA-256 of the request body, so the same key with another body is a
conflict. A retry while the first request still runs is a conflict too; a first request that
failed leaves no record, so its retry runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from stellaops_signer.domain.errors import IdempotencyConflict, SigningUnavailable

#: How long a response is replayed for a retry of the same key.
REPLAY_SECONDS = 24 * 3600


class PowertoolsIdempotency:
    def __init__(self, client: Any, table: str) -> None:
        store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=REPLAY_SECONDS,
        )

        @idempotent_function(data_keyword_argument="data", persistence_store=store, config=config)  # type: ignore[untyped-decorator]
        def once(data: dict[str, str], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            return compute()

        self._once = once
        self._config = config

    def run(
        self, key: str, body_sha256: str, compute: Callable[[], dict[str, Any]], lambda_context: Any = None
    ) -> dict[str, Any]:
        """The stored answer for ``key``, or ``compute()``'s (stored for the retries).

        With the Lambda context, an in-progress record expires with the invocation, so a
        crashed first request does not block its retries.
        """
        if lambda_context is not None:
            self._config.register_lambda_context(lambda_context)
        try:
            answer: dict[str, Any] = self._once(data={"key": key, "body": body_sha256}, compute=compute)
        except IdempotencyValidationError:
            raise IdempotencyConflict("this Idempotency-Key was used with another request body") from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyConflict(
                "the first request with this Idempotency-Key is still running"
            ) from None
        except IdempotencyPersistenceLayerError as exc:
            raise SigningUnavailable("the idempotency store is unavailable") from exc
        return answer
