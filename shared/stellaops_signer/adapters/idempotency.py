"""Idempotent signing (spec §5.4) on Powertools idempotency with its DynamoDB persistence layer.

The record key is the SHA-256 of the JSON array ``[tenant, Idempotency-Key]``: scoped to the
tenant, and no tenant id, whatever it contains, can reach another tenant's keys. The payload
validation is the SHA-256 of the request body, so the same key with another body is a conflict;
a retry while the first request still runs is a conflict too; a first request that failed
leaves no record, so its retry runs again.

An answer larger than a DynamoDB item can hold is stored in the payload bucket and the record
holds its reference (checked against its SHA-256 when read back). Every store an answer needs is
known to be writable before the answer is computed (signed): the in-progress record is written
first, and a large answer's object key is written with a placeholder. Once an answer exists it is
delivered, even if recording it for the retries then fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

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
from stellaops_signer.observability import logger

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from typing import Protocol

    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb.client import DynamoDBClient

    from stellaops_signer.adapters.payloads import S3PayloadStore
    from stellaops_signer.domain.jose import JsonObject

    class _Once(Protocol):
        """``compute()``'s answer, once per ``data`` (what Powertools' untyped ``idempotent_function``
        makes of ``once``)."""

        def __call__(self, *, data: JsonObject, compute: Callable[[], JsonObject]) -> JsonObject: ...


#: How long a response is replayed for a retry of the same key.
REPLAY_SECONDS = 24 * 3600
#: Answers up to this size live in the record itself; a DynamoDB item holds 400 KB in all.
INLINE_ANSWER_BYTES = 300 * 1024
_REFERENCE = "storedAnswer"


class PowertoolsIdempotency:
    def __init__(self, client: DynamoDBClient, table: str, payloads: Callable[[], S3PayloadStore]) -> None:
        store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
        config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="body",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=REPLAY_SECONDS,
            hash_function="sha256",
        )

        def once(data: JsonObject, compute: Callable[[], JsonObject]) -> JsonObject:
            return compute()

        # ``@idempotent_function(…)`` applied by hand: the decorator is untyped, ``_Once`` is what it makes
        self._once: _Once = idempotent_function(
            once, data_keyword_argument="data", persistence_store=store, config=config
        )
        self._config = config
        self._payloads = payloads

    def run(
        self,
        scope: str,
        key: str,
        body_sha256: str,
        compute: Callable[[], JsonObject],
        *,
        answer_bytes: int,
        lambda_context: LambdaContext | None = None,
    ) -> tuple[JsonObject, bool]:
        """(the answer, whether it is a replay): the stored answer for (``scope``, ``key``), or
        ``compute()``'s, stored for the retries. ``answer_bytes`` bounds the answer's size.

        Raises IdempotencyConflict, or SigningUnavailable when a store cannot be written (before
        ``compute`` runs) or a stored answer cannot be read back intact.
        """
        if lambda_context is not None:  # an in-progress record expires with the invocation
            self._config.register_lambda_context(lambda_context)
        object_key = (
            self._payloads().reserve_key("idempotency") if answer_bytes > INLINE_ANSWER_BYTES else None
        )
        computed: list[JsonObject] = []

        def compute_and_keep() -> JsonObject:
            answer = compute()
            computed.append(answer)
            data = json.dumps(answer, separators=(",", ":")).encode()
            if len(data) <= INLINE_ANSWER_BYTES:
                return answer
            return {_REFERENCE: self._payloads().put(data, key=object_key)}

        try:
            stored: JsonObject = self._once(
                data={"key": [scope, key], "body": body_sha256}, compute=compute_and_keep
            )
        except IdempotencyValidationError:
            raise IdempotencyConflict("this Idempotency-Key was used with another request body") from None
        except IdempotencyAlreadyInProgressError:
            raise IdempotencyConflict(
                "the first request with this Idempotency-Key is still running"
            ) from None
        except (IdempotencyPersistenceLayerError, SigningUnavailable) as exc:
            if computed:  # signed and audited: deliver it; its retries will find no record
                logger.warning("idempotent answer not recorded", extra={"code": "idempotency"})
                return computed[0], False
            if isinstance(exc, SigningUnavailable):
                raise  # the signing itself could not be done: its own refusal
            raise SigningUnavailable("the idempotency store is unavailable") from exc
        if computed:
            return computed[0], False
        if _REFERENCE in stored:
            return json.loads(self._payloads().get(stored[_REFERENCE])), True
        return stored, True


__all__ = ["INLINE_ANSWER_BYTES", "REPLAY_SECONDS", "PowertoolsIdempotency"]
