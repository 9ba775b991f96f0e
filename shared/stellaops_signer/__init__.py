"""Stella Ops Signer: the domain, its ports, the AWS adapters and the use cases the Lambda functions call.

The layer's public surface, what ``functions/*/app.py`` and the local stack use:

- ``wiring``: ``cold_start(function)`` (its root in ``ROOTS``: settings model and what the init
  builds), ``container()`` (this process's composition root), ``Container`` (its adapters
  injectable), ``install``, ``reset``.
- ``config``: each function's settings model (``AuthenticateSettings``, ``CheckQuotaSettings``,
  ``VerifyReleaseSettings``, ``SignDsseSettings``) composed of parts, ``load``.
- ``observability``: ``logger`` (Powertools), ``metrics`` (EMF, ``log_metrics``), ``instrumented`` (the
  handlers' wrapper: Lambda context log keys and metrics), ``count*``.
- ``http``: ``serve`` (a proxy event → its route, the caller confirmed), ``authorizer_answer``,
  ``ApiRequest``, ``Answer``, the route paths and header names, ``correlation_id``.
- ``usecases``: ``SignDsse``, ``ReleaseQuery``/``ReleaseVerifier``, ``QuotaDesk``,
  ``Authenticator``/``TokenVerifier``, ``EntitlementChecker``; ``meta.RequestMeta``.
- ``domain``: pure types and rules (Statement, Envelope, OpToken, DpopProof, Entitlement,
  Reservation, ReleaseVerdict, SignedBy…) and the one error tree (``domain.errors``).
- ``ports``: the protocols the use cases need; ``adapters``: their AWS, HTTP and in-memory forms.

Each module lists its own public names in ``__all__``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
