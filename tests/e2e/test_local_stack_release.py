"""Release integrity end to end: the local stack's registry holds a signed scanner release."""

from __future__ import annotations

from typing import Any

import pytest

from local.client import LOCAL_SCANNER_DIGEST, SignerClient
from local.release import HttpPusher, publish_scanner_image
from tests.e2e.test_local_stack import BODY, SIGN, _problem

pytestmark = pytest.mark.e2e
VERIFY = "/api/v1/signer/verify/referrers"


def test_the_published_release_is_trusted_over_https(stack: dict[str, Any]) -> None:
    client = SignerClient(stack, "auditor-1")  # signer.verify is enough to ask
    answer = client.call(
        "GET", VERIFY, client.token("signer.verify"), params={"digest": LOCAL_SCANNER_DIGEST}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["trusted"] is True and body["releaseYear"] == 2027 and body["digest"] == LOCAL_SCANNER_DIGEST


def test_signing_for_an_unsigned_scanner_is_refused(stack: dict[str, Any]) -> None:
    unsigned = publish_scanner_image(HttpPusher(stack["registry"]), "stellaops/scanner")
    client = SignerClient(stack)
    answer = client.call("POST", SIGN, client.token(), json={**BODY, "scannerImageDigest": unsigned})
    _problem(answer, 403, "release_untrusted")
    verdict = client.call("GET", VERIFY, client.token(), params={"digest": unsigned}).json()
    assert verdict["trusted"] is False and verdict["reason"]
