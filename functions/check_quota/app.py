"""check_quota: ``GET /api/v1/signer/quota``; a step of SigningPipeline.

Not implemented yet: issue 5 builds it (TASKS.md). Until then the route authenticates the
caller and answers 501 ``not_implemented_yet``; a direct invocation verifies the OpTok and
raises ``NotImplementedYet``.
"""

from typing import Any

from stellaops_signer import http
from stellaops_signer.domain.errors import NotImplementedYet
from stellaops_signer.observability import logger, metrics
from stellaops_signer.wiring import container


def route(request: http.ApiRequest) -> http.Answer:
    http.principal_from_context(request.authorizer)
    raise NotImplementedYet("this route arrives with issue 5")


ROUTES = {("GET", http.QUOTA_PATH): route}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if http.is_proxy_event(event):
        return http.serve(event, ROUTES)
    container().tokens.authenticate_iam(event.get("opToken"))
    raise NotImplementedYet("this step arrives with issue 5")
