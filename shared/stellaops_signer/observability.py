"""Structured logs and EMF metrics (Powertools), one instance each per container.

Never log tokens, DPoP proofs, PoEs, private keys or whole certificates: log codes,
thumbprints and hashes instead.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

__all__ = ["MetricUnit", "count", "count_key_usage", "count_outcome", "logger", "metrics"]

SERVICE = "signer"
NAMESPACE = "StellaOps/Signer"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
# A request that emits no metric (a nonce challenge, /keys) is normal here: Powertools' warning
# about it would be one stderr line per such request in CloudWatch and on `make run`'s console.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def count_outcome(outcome: str) -> None:
    """Count a request and its outcome (``ok``, ``authenticated`` or the error code).

    Skipped when metrics are disabled: Powertools then never flushes, so they would pile up.
    """
    if is_metrics_disabled():
        return
    metrics.add_metric(name=f"Requests.{outcome}", unit=MetricUnit.Count, value=1)


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """One data point (signing latency, release verifications, key usage…), unless disabled."""
    if not is_metrics_disabled():
        metrics.add_metric(name=name, unit=unit, value=value)


def count_key_usage(mode: str, key: str) -> None:
    """``KeyUsage`` with the signing mode and the key (its ARN; ``keyless`` for ephemeral keys) as
    dimensions, so an operator sees which key signed how much (one EMF document of its own)."""
    if is_metrics_disabled():
        return
    from aws_lambda_powertools.metrics import single_metric

    with single_metric(name="KeyUsage", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="mode", value=mode)
        metric.add_dimension(name="key", value=key)
