"""Secrets from AWS Secrets Manager, read once per container (never logged)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stellaops_signer.adapters.aws import AWS_FAILURES
from stellaops_signer.domain.errors import ConfigurationError

if TYPE_CHECKING:  # annotations only: the stubs are not in the layer
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


def read_secret(client: SecretsManagerClient, secret_id: str) -> bytes:
    """The secret's value as bytes; a missing or unreadable secret stops the cold start."""
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except AWS_FAILURES as exc:
        raise ConfigurationError(f"the secret {secret_id} cannot be read") from exc
    value = answer.get("SecretBinary") or answer.get("SecretString", "").encode("utf-8")
    if not value:
        raise ConfigurationError(f"the secret {secret_id} is empty")
    return bytes(value)


__all__ = ["read_secret"]
