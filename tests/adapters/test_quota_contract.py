"""The QuotaStore contract, run against the DynamoDB adapter (moto) and the in-memory fake alike."""

from __future__ import annotations

from typing import Any

import pytest

from stellaops_signer.adapters.clock import FixedClock
from stellaops_signer.adapters.quota import DynamoDbQuotaStore, InMemoryQuotaStore
from stellaops_signer.domain.errors import PlanThrottled, QuotaExhausted
from stellaops_signer.domain.quota import LEASE_SECONDS, Plan

NOW = 1_800_000_000.25
PLAN = Plan(qps=2, concurrency=2, maxArtifactBytes=1024, dailySignatures=3)


@pytest.fixture(params=["dynamodb", "memory"])
def store(request: pytest.FixtureRequest) -> tuple[Any, FixedClock]:
    clock = FixedClock(NOW)
    if request.param == "memory":
        return InMemoryQuotaStore(clock), clock
    aws = request.getfixturevalue("aws")
    return DynamoDbQuotaStore(aws.client("dynamodb"), aws.environment["SIGNER_QUOTA_TABLE"], clock), clock


def test_a_reservation_counts_one_of_each_and_release_frees_the_lease(store: Any) -> None:
    quotas, _ = store
    reservation = quotas.reserve("LIC-1", PLAN)
    assert (reservation.qps_used, reservation.daily_used) == (1, 1)
    assert quotas.usage("LIC-1", PLAN) == {"qps": 1, "daily": 1, "inFlight": 1}
    quotas.release(reservation, refund=False)
    assert quotas.usage("LIC-1", PLAN) == {"qps": 1, "daily": 1, "inFlight": 0}


def test_a_refund_gives_back_the_units(store: Any) -> None:
    quotas, _ = store
    quotas.release(quotas.reserve("LIC-1", PLAN), refund=True)
    assert quotas.usage("LIC-1", PLAN) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_the_qps_window_refuses_then_reopens_the_next_second(store: Any) -> None:
    quotas, clock = store
    for _ in range(2):
        quotas.release(quotas.reserve("LIC-1", PLAN), refund=False)
    with pytest.raises(PlanThrottled) as refused:
        quotas.reserve("LIC-1", PLAN)
    assert refused.value.headers["Retry-After"] == "1" and refused.value.headers["RateLimit-Remaining"] == "0"
    clock.advance(1)
    assert quotas.reserve("LIC-1", PLAN).qps_used == 1


def test_the_daily_cap_refuses_until_midnight(store: Any) -> None:
    quotas, clock = store
    for _ in range(3):
        quotas.release(quotas.reserve("LIC-1", PLAN), refund=False)
        clock.advance(1)
    with pytest.raises(QuotaExhausted) as refused:
        quotas.reserve("LIC-1", PLAN)
    assert int(refused.value.headers["Retry-After"]) == 86400 - int(clock.now()) % 86400


def test_leases_cap_concurrency_and_expire_by_themselves(store: Any) -> None:
    quotas, clock = store
    quotas.reserve("LIC-1", PLAN)
    clock.advance(1)
    quotas.reserve("LIC-1", PLAN)
    clock.advance(1)
    with pytest.raises(PlanThrottled):
        quotas.reserve("LIC-1", PLAN)
    clock.advance(LEASE_SECONDS)
    assert quotas.reserve("LIC-1", PLAN).lease_slot in (0, 1)


def test_licences_do_not_share_quotas(store: Any) -> None:
    quotas, _ = store
    quotas.reserve("LIC-1", PLAN)
    assert quotas.usage("LIC-2", PLAN) == {"qps": 0, "daily": 0, "inFlight": 0}


def test_the_first_signing_of_a_new_second_or_day_writes_once(aws: Any) -> None:
    """The DynamoDB adapter guesses the item's window from its last reservation: signing on, second
    after second and across midnight, costs one UpdateItem per reservation, no failed condition."""
    client = aws.client("dynamodb")
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb.UpdateItem", lambda **_: calls.append("update"))
    clock = FixedClock(NOW)
    quotas = DynamoDbQuotaStore(client, aws.environment["SIGNER_QUOTA_TABLE"], clock)
    roomy = Plan(qps=100, concurrency=50, maxArtifactBytes=1024, dailySignatures=1000)
    quotas.release(quotas.reserve("LIC-1", roomy), refund=False)  # the licence's first: nothing known
    steps = [0.1, 0.2, 1.0, 0.3, 1.0, 86400.0, 0.1]  # same second, new seconds, a new day
    for step in steps:
        clock.advance(step)
        calls.clear()
        reservation = quotas.reserve("LIC-1", roomy)
        assert len(calls) == 1, step  # written once, nothing retried
        quotas.release(reservation, refund=False)  # as a signing does: its lease slot is free again
    other = DynamoDbQuotaStore(client, aws.environment["SIGNER_QUOTA_TABLE"], clock)
    calls.clear()
    reservation = other.reserve("LIC-1", roomy)  # another container, a wrong guess: one retry, counted right
    assert len(calls) <= 2 and (reservation.qps_used, reservation.daily_used) == (3, 3)


def test_a_container_whose_clock_lags_counts_in_the_window_already_open(aws: Any) -> None:
    """Two containers' clocks a second apart: the one behind is counted in the later window (it
    cannot reopen one that went by), instead of failing its condition until it gives up."""
    table = aws.environment["SIGNER_QUOTA_TABLE"]
    ahead, behind = FixedClock(NOW + 1), FixedClock(NOW)
    roomy = Plan(qps=100, concurrency=50, maxArtifactBytes=1024, dailySignatures=1000)
    DynamoDbQuotaStore(aws.client("dynamodb"), table, ahead).reserve("LIC-1", roomy)
    late = DynamoDbQuotaStore(aws.client("dynamodb"), table, behind).reserve("LIC-1", roomy)
    assert (late.second, late.qps_used, late.daily_used) == (int(NOW) + 1, 2, 2)
    after_midnight = FixedClock((int(NOW) // 86400 + 1) * 86400 + 0.5)
    DynamoDbQuotaStore(aws.client("dynamodb"), table, after_midnight).reserve("LIC-1", roomy)
    before = DynamoDbQuotaStore(aws.client("dynamodb"), table, FixedClock(after_midnight.now() - 1))
    assert before.reserve("LIC-1", roomy).daily_used == 2  # the new day's second signing
