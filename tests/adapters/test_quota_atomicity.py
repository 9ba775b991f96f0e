"""The proof of spec §5.2: with a limit of L, N ≫ L concurrent requests get exactly L grants and
N − L refusals, and the counters end consistent. Many "instances" (each its own DynamoDB
client, or its own Container) race against moto's server over HTTP; one test also races from
several processes.

moto 5.2.5's DynamoDB is not atomic per item (with ``sys.setswitchinterval(1e-5)``, 9 of 30
rounds of 40 requests against L = 5 let 6–10 through); the ``moto_server`` fixture
(tests/moto_server.py) makes it so.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stellaops_signer import http
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.quota import DynamoDbQuotaStore
from stellaops_signer.config import AllSettings, load
from stellaops_signer.domain.errors import QuotaExhausted
from stellaops_signer.domain.quota import LEASE_SECONDS, Plan, Reservation
from stellaops_signer.domain.statement import SignRequest
from stellaops_signer.usecases.meta import RequestMeta
from stellaops_signer.usecases.sign_dsse import SignResult
from stellaops_signer.wiring import Container
from tests.conftest import ROOT, load_event
from tests.moto_server import MotoServer

RACE_TIMEOUT = 30.0
BODY = json.loads(load_event("sign_dsse/sign-dsse.json")["body"])
CONTEXT = load_event("sign_dsse/sign-dsse.json")["requestContext"]["authorizer"]


# --- the race --------------------------------------------------------------------------------


def _race(count: int, action: Callable[[int], Any]) -> list[Any]:
    """Run ``action(i)`` for i < count, all released at once; each result or the error it raised."""
    barrier = threading.Barrier(count, timeout=RACE_TIMEOUT)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action(index)
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + RACE_TIMEOUT
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "the race did not finish in time"
    return results


def _kinds(results: list[Any]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for result in results:
        kinds[type(result).__name__] = kinds.get(type(result).__name__, 0) + 1
    return kinds


def _frozen_now() -> float:
    return float(int(time.time()))


def _day(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


# --- the quota store alone -------------------------------------------------------------------


def test_daily_limit_raced_by_many_instances_grants_exactly_the_limit(moto_server: MotoServer) -> None:
    limit, requests, licence = 5, 40, "LIC-RACE-DAILY"
    plan = Plan(qps=1000, concurrency=requests, maxArtifactBytes=1, dailySignatures=limit)
    clock = FixedClock(_frozen_now())
    stores = [
        DynamoDbQuotaStore(moto_server.dynamodb(), moto_server.quota_table, clock) for _ in range(requests)
    ]

    results = _race(requests, lambda i: stores[i].reserve(licence, plan))

    assert _kinds(results) == {"Reservation": limit, "QuotaExhausted": requests - limit}, results
    granted = [r for r in results if isinstance(r, Reservation)]
    assert sorted(r.daily_used for r in granted) == list(range(1, limit + 1))
    assert len({r.lease_slot for r in granted}) == limit
    now = clock.now()
    assert moto_server.daily(licence, _day(now)) == limit
    assert moto_server.per_second(licence, int(now)) == limit  # the refused gave theirs back
    assert stores[0].usage(licence, plan) == {"qps": limit, "daily": limit, "inFlight": limit}


def test_concurrency_raced_by_many_instances_grants_exactly_the_limit_of_leases(
    moto_server: MotoServer,
) -> None:
    limit, requests, licence = 3, 30, "LIC-RACE-LEASES"
    plan = Plan(qps=1000, concurrency=limit, maxArtifactBytes=1, dailySignatures=1000)
    clock = FixedClock(_frozen_now())
    stores = [
        DynamoDbQuotaStore(moto_server.dynamodb(), moto_server.quota_table, clock) for _ in range(requests)
    ]

    results = _race(requests, lambda i: stores[i].reserve(licence, plan))  # every grant is still held

    assert _kinds(results) == {"Reservation": limit, "PlanThrottled": requests - limit}, results
    granted = [r for r in results if isinstance(r, Reservation)]
    assert sorted(r.lease_slot for r in granted) == list(range(limit))
    assert stores[0].usage(licence, plan) == {"qps": limit, "daily": limit, "inFlight": limit}
    for reservation in granted:
        stores[0].release(reservation, refund=False)
    assert stores[0].usage(licence, plan) == {"qps": limit, "daily": limit, "inFlight": 0}


def test_expired_lease_raced_by_many_instances_is_taken_over_once(moto_server: MotoServer) -> None:
    requests, licence = 10, "LIC-RACE-EXPIRED"
    plan = Plan(qps=1000, concurrency=1, maxArtifactBytes=1, dailySignatures=1000)
    crashed = DynamoDbQuotaStore(moto_server.dynamodb(), moto_server.quota_table, FixedClock(_frozen_now()))
    abandoned = crashed.reserve(licence, plan)  # never released: the invocation crashed
    later = FixedClock(_frozen_now() + LEASE_SECONDS + 1)
    stores = [
        DynamoDbQuotaStore(moto_server.dynamodb(), moto_server.quota_table, later) for _ in range(requests)
    ]

    results = _race(requests, lambda i: stores[i].reserve(licence, plan))

    assert _kinds(results) == {"Reservation": 1, "PlanThrottled": requests - 1}, results
    crashed.release(abandoned, refund=False)  # too late: the slot is someone else's now
    assert stores[0].usage(licence, plan)["inFlight"] == 1


# --- through the sign_dsse use case, one Container per instance -------------------------------


def test_signings_raced_through_many_containers_never_exceed_the_daily_limit(
    moto_server: MotoServer, licensing: Any, release: Any
) -> None:
    limit, requests, licence = 4, 24, "LIC-RACE-SIGN"
    plans = {"race": {"qps": 1000, "concurrency": 50, "maxArtifactBytes": 1048576, "dailySignatures": limit}}
    settings = load(
        AllSettings,
        {
            **moto_server.environment,
            "SIGNER_REGISTRY_INSECURE_LOOPBACK": "true",
            "SIGNER_PLANS": json.dumps(plans),
        },
    )
    clock = FixedClock(_frozen_now())
    poe = licensing.mint(
        licensing.claims_for(
            "tenant-a", "inst-1", now=clock.now(), plan="race", license_id=licence, sub=licence
        )
    )
    raw = json.dumps({**BODY, "poe": {"format": "jwt", "value": poe}})
    principal = http.principal_from_context(CONTEXT)
    containers = [Container(settings, clock=clock, session=moto_server.session) for _ in range(requests)]
    for container in containers:  # cold starts happen before the race
        _ = container.sign_dsse, container.key_signer.public_key_pem
    assert containers[0].release_verifier.verify(BODY["scannerImageDigest"]).trusted

    def sign(index: int) -> SignResult:
        meta = RequestMeta(correlation_id=f"race-{index}", route=http.SIGN_PATH, body_bytes=len(raw))
        return containers[index].sign_dsse(principal, lambda: SignRequest.parse(raw), meta)

    results = _race(requests, sign)

    assert _kinds(results) == {"SignResult": limit, "QuotaExhausted": requests - limit}, results
    bundles = [r.body for r in results if isinstance(r, SignResult)]
    assert len({b["auditId"] for b in bundles}) == limit
    assert sorted(b["policy"]["dailyRemaining"] for b in bundles) == list(range(limit))
    refusals = [r for r in results if not isinstance(r, SignResult)]
    assert all(isinstance(r, QuotaExhausted) and int(r.headers["Retry-After"]) > 0 for r in refusals)
    now = clock.now()
    assert moto_server.daily(licence, _day(now)) == limit
    assert moto_server.per_second(licence, int(now)) == limit
    plan = settings.plans["race"]
    assert containers[0].quotas.usage(licence, plan) == {"qps": limit, "daily": limit, "inFlight": 0}
    audit = moto_server.dynamodb().scan(TableName=moto_server.environment["SIGNER_AUDIT_TABLE"])["Items"]
    decisions = sorted(
        (i["decision"]["S"], i.get("error_code", {}).get("S", ""))
        for i in audit
        if i["license_id"]["S"] == licence
    )
    assert decisions == [("allow", "")] * limit + [("deny", "quota_exhausted")] * (requests - limit)


# --- several processes -----------------------------------------------------------------------

_CHILD = """
import json, sys, threading
import boto3
from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.quota import DynamoDbQuotaStore
from stellaops_signer.domain.quota import Plan

endpoint, table, licence, now, count, plan = sys.argv[1:7]
clock, count, plan = FixedClock(float(now)), int(count), Plan(**json.loads(plan))
session = boto3.session.Session(region_name="us-east-1")
clients = [session.client("dynamodb", endpoint_url=endpoint) for _ in range(count)]
stores = [DynamoDbQuotaStore(client, table, clock) for client in clients]
barrier, results = threading.Barrier(count, timeout=30), [None] * count

def run(index):
    barrier.wait()
    try:
        results[index] = stores[index].reserve(licence, plan)
    except Exception as error:
        results[index] = error

threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
print("ready", flush=True)
sys.stdin.readline()
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(timeout=30)
for result in results:
    if type(result).__name__ == "Reservation":
        stores[0].release(result, refund=False)
print(json.dumps([type(result).__name__ for result in results]), flush=True)
"""


def _line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
    assert ready, "a racing process did not answer in time"
    return process.stdout.readline().strip()


def test_daily_limit_raced_from_several_processes_grants_exactly_the_limit(moto_server: MotoServer) -> None:
    limit, processes, threads, licence = 6, 4, 8, "LIC-RACE-PROCESSES"
    plan = {"qps": 1000, "concurrency": processes * threads, "maxArtifactBytes": 1, "dailySignatures": limit}
    now = _frozen_now()
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    arguments = [
        moto_server.endpoint,
        moto_server.quota_table,
        licence,
        str(now),
        str(threads),
        json.dumps(plan),
    ]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + RACE_TIMEOUT
        assert [_line(child, deadline) for child in children] == ["ready"] * processes
        for child in children:  # every process holds its threads at a barrier: go
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outcomes = [name for child in children for name in json.loads(_line(child, deadline))]
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=5)

    total = processes * threads
    assert {name: outcomes.count(name) for name in set(outcomes)} == {
        "Reservation": limit,
        "QuotaExhausted": total - limit,
    }
    assert moto_server.daily(licence, _day(now)) == limit
    assert moto_server.per_second(licence, int(now)) == limit
    usage = DynamoDbQuotaStore(moto_server.dynamodb(), moto_server.quota_table, FixedClock(now)).usage(
        licence, Plan(**plan)
    )
    assert usage == {"qps": limit, "daily": limit, "inFlight": 0}
