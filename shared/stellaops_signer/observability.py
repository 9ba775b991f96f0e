"""Structured logs and EMF metrics (Powertools), one instance each per container.

Never log tokens, DPoP proofs, PoEs, private keys or whole certificates: log codes,
thumbprints and hashes instead.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE = "signer"
NAMESPACE = "StellaOps/Signer"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count_outcome(outcome: str) -> None:
    """One ``Requests`` data point with the outcome (``ok`` or the error code) as dimension."""
    with single_metric(name="Requests", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        metric.add_dimension(name="outcome", value=outcome)
