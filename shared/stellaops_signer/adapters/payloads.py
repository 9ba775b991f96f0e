"""Large answers in S3, referenced by URI and digest: Step Functions results over 200 KiB (spec §6) and
idempotent answers over a DynamoDB item (spec §5.4). What comes back is checked against its SHA-256."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.adapters.ids import random_id
from stellaops_signer.domain.errors import SigningUnavailable

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_s3.client import S3Client

    from stellaops_signer.domain.jose import JsonObject, JsonValue

_S3_URI_PREFIX = "s3://"


class S3PayloadStore:
    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, data: bytes, *, key: str | None = None) -> JsonObject:
        """Store ``data`` (under its digest, or ``key``); the ``{"s3Uri", "sha256", "size"}`` reference.
        Raises SigningUnavailable."""
        digest = hashlib.sha256(data).hexdigest()
        key = key or f"results/{digest}.json"
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
            )
        except AWS_FAILURES as exc:
            raise SigningUnavailable("the result could not be stored") from exc
        return {"s3Uri": f"{_S3_URI_PREFIX}{self._bucket}/{key}", "sha256": digest, "size": len(data)}

    def reserve_key(self, prefix: str) -> str:
        """A fresh key under ``prefix``, written once with a placeholder so that a bucket that cannot be
        written is known now, before anything is signed. Raises SigningUnavailable."""
        key = f"{prefix}/{random_id()}.json"
        self.put(b"{}", key=key)
        return key

    def get(self, reference: JsonValue) -> bytes:
        """The bytes a reference names, only if their SHA-256 and size are the reference's.
        Raises SigningUnavailable."""
        if not isinstance(reference, dict):
            raise SigningUnavailable("a stored answer's reference is malformed")
        uri, digest, size = reference.get("s3Uri"), reference.get("sha256"), reference.get("size")
        bucket_and_key = (
            uri[len(_S3_URI_PREFIX) :] if isinstance(uri, str) and uri.startswith(_S3_URI_PREFIX) else ""
        )
        bucket, _, key = bucket_and_key.partition("/")
        if bucket != self._bucket or not key or not isinstance(digest, str) or type(size) is not int:
            raise SigningUnavailable("a stored answer's reference is malformed")
        try:
            data: bytes = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except AWS_FAILURES as exc:
            raise SigningUnavailable("a stored answer cannot be read back") from exc
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise SigningUnavailable("a stored answer does not match its digest")
        return data


__all__ = ["S3PayloadStore"]
