"""check_quota: ``GET /api/v1/signer/quota``; a step of SigningPipeline.

Not implemented yet: issue 5 builds it (TASKS.md). Until then the route authenticates the
caller and answers 501 ``not_implemented``; a direct invocation raises ``NotImplementedYet``.
"""

from typing import Any

from aws_lambda_powertools.event_handler import Response

from stellaops_signer import http
from stellaops_signer.domain.errors import NotImplementedYet
from stellaops_signer.observability import logger, metrics
from stellaops_signer.wiring import container

app = http.create_resolver()


@app.get(http.QUOTA_PATH)
def route() -> Response[str]:
    http.principal_from_context(app.current_event.request_context.authorizer.get_context())
    raise NotImplementedYet("this route arrives with issue 5")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return app.resolve(event, context)
    container().authenticator.authenticate_iam(event.get("opToken"))
    raise NotImplementedYet("this step arrives with issue 5")
