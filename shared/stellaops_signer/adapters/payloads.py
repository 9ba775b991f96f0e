"""Large results for Step Functions (spec §6): stored in S3, referenced by URI and digest."""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stellaops_signer.domain.errors import SigningUnavailable


class S3PayloadStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, data: bytes) -> dict[str, Any]:
        """Store ``data`` under its digest; the ``{"s3Uri", "sha256", "size"}`` reference."""
        digest = hashlib.sha256(data).hexdigest()
        key = f"results/{digest}.json"
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
            )
        except (ClientError, BotoCoreError) as exc:
            raise SigningUnavailable("the result could not be stored") from exc
        return {"s3Uri": f"s3://{self._bucket}/{key}", "sha256": digest, "size": len(data)}
