"""One POST with the retry rule of the signing dependencies (spec §5.5): 5xx answers and timeouts
are retried with backoff, any other answer is final; whatever fails is SigningUnavailable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import requests

from stellaops_signer.domain.errors import SigningUnavailable

if TYPE_CHECKING:  # annotations only
    from collections.abc import Mapping
    from typing import TypedDict, Unpack

    from stellaops_signer.domain.jose import JsonValue

    class _Body(TypedDict, total=False):
        """What a POST carries: ``data`` or ``json``, and its headers."""

        data: bytes
        json: JsonValue
        headers: Mapping[str, str]


TIMEOUT = (3.05, 10.0)
ATTEMPTS = 3
BACKOFF_SECONDS = 0.2


def post_with_retries(
    http: requests.Session,
    url: str,
    what: str,
    *,
    limit: int,
    sleep: Callable[[float], None] = time.sleep,
    **request: Unpack[_Body],
) -> tuple[int, bytes]:
    """(status, body of at most ``limit`` bytes) of the first answer that is not a 5xx; raises
    SigningUnavailable naming ``what`` when every attempt timed out, failed or answered a 5xx, or
    the answer is larger than ``limit``."""
    pause = BACKOFF_SECONDS
    for attempt in range(ATTEMPTS):
        if attempt:
            sleep(pause)
            pause *= 2
        try:
            with http.post(url, timeout=TIMEOUT, stream=True, allow_redirects=False, **request) as answer:
                status = answer.status_code
                body: bytes = answer.raw.read(limit + 1, decode_content=True)
        except (requests.Timeout, requests.ConnectionError):
            continue
        except requests.RequestException as exc:
            raise SigningUnavailable(f"{what} cannot be reached") from exc
        if status >= 500:
            continue
        if len(body) > limit:
            raise SigningUnavailable(f"{what} answered more than allowed")
        return status, body
    raise SigningUnavailable(f"{what} is unavailable")


__all__ = ["ATTEMPTS", "BACKOFF_SECONDS", "TIMEOUT", "post_with_retries"]
