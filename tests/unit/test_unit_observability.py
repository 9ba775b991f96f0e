"""The Signer's own observability code against the formats it must produce: CloudWatch EMF
documents (the published specification), Powertools' JSON log lines (its own formatter), RFC 9562
UUIDs (the standard library), API Gateway's authorizer policy (Powertools' builder)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import re
import uuid
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
)

from stellaops_signer import http, observability
from stellaops_signer.adapters.ids import random_id
from stellaops_signer.domain.quota import utc_day
from stellaops_signer.observability import EmfMetrics, MetricUnit, logger

# --- EMF (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)


def _valid_emf(document: dict[str, Any]) -> None:
    """The specification's rules: ``_aws`` with an integer millisecond Timestamp and 1+ directives;
    each directive's Namespace, Dimensions (arrays of at most 30 root members) and Metrics (names of
    root members that are numbers or arrays of numbers, a known unit)."""
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    assert meta["CloudWatchMetrics"]
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            assert all(isinstance(document[member], str) for member in dimension_set)
        for metric in directive["Metrics"]:
            assert metric["Unit"] in {"Count", "Milliseconds"}
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert values and all(isinstance(v, float) for v in values)


def test_one_document_holds_the_request_metrics_and_the_key_usage() -> None:
    metrics = EmfMetrics("StellaOps/Signer", "signer")
    metrics.enabled = True
    metrics.add("Requests.ok", MetricUnit.Count, 1)
    metrics.add("SigningLatency", MetricUnit.Milliseconds, 12.5)
    metrics.add("SigningLatency", MetricUnit.Milliseconds, 7)
    metrics.add_key_usage("kms", "arn:aws:kms:us-east-1:123456789012:key/k1")
    [document] = metrics.documents()
    _valid_emf(document)
    request, usage = document["_aws"]["CloudWatchMetrics"]
    assert request["Dimensions"] == [["service"]] and usage["Dimensions"] == [["service", "mode", "key"]]
    assert [m["Name"] for m in usage["Metrics"]] == ["KeyUsage"]
    assert document["Requests.ok"] == 1.0 and document["SigningLatency"] == [12.5, 7.0]
    assert (document["service"], document["mode"], document["KeyUsage"]) == ("signer", "kms", 1.0)


def test_a_second_key_gets_a_document_of_its_own() -> None:
    metrics = EmfMetrics("StellaOps/Signer", "signer")
    metrics.enabled = True
    metrics.add_key_usage("kms", "key-a")
    metrics.add_key_usage("keyless", "keyless")
    documents = metrics.documents()
    assert [(d["mode"], d["key"]) for d in documents] == [("kms", "key-a"), ("keyless", "keyless")]
    for document in documents:
        _valid_emf(document)


def test_nothing_counted_prints_nothing_and_a_flush_starts_afresh(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = EmfMetrics("StellaOps/Signer", "signer")
    metrics.enabled = True
    metrics.flush()
    assert capsys.readouterr().out == ""
    metrics.add("Requests.ok", MetricUnit.Count, 1)
    metrics.flush()
    metrics.flush()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["Requests.ok"] == 1.0


@pytest.mark.parametrize(
    ("environment", "enabled"),
    [
        ({}, True),
        ({"POWERTOOLS_METRICS_DISABLED": "true"}, False),
        ({"POWERTOOLS_METRICS_DISABLED": "false"}, True),
        ({"POWERTOOLS_DEV": "true"}, False),
        ({"POWERTOOLS_DEV": "true", "POWERTOOLS_METRICS_DISABLED": "false"}, True),
    ],
)
def test_metrics_are_off_as_powertools_metrics_are(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environment: dict[str, str],
    enabled: bool,
) -> None:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert is_metrics_disabled() is not enabled  # the rule this module follows

    metrics = EmfMetrics("StellaOps/Signer", "signer")
    handler = metrics.log_metrics(lambda event, context: metrics.add("Requests.ok", MetricUnit.Count, 1))
    handler({}, None)
    assert ('"Requests.ok"' in capsys.readouterr().out) is enabled


def test_a_failing_invocation_still_prints_its_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = EmfMetrics("StellaOps/Signer", "signer")

    def handler(event: Any, context: Any) -> None:
        metrics.add("Requests.internal_error", MetricUnit.Count, 1)
        raise RuntimeError("boom")

    metrics.enabled = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
        with pytest.raises(RuntimeError):
            metrics.log_metrics(handler)({}, None)
    assert '"Requests.internal_error"' in capsys.readouterr().out


# --- log lines: the same as Powertools' own formatter writes ------------------------------------------


def _record(**extra: Any) -> logging.LogRecord:
    return logger._logger.makeRecord("signer", logging.INFO, "f.py", 10, "request", (), None, "fn", extra)


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(lambda: _record(route="POST /x", status=200, code="", tenant=None), id="access line"),
        pytest.param(lambda: _record(), id="no extra"),
        pytest.param(
            lambda: logger._logger.makeRecord(
                "signer", logging.WARNING, "f.py", 3, "denied %s", ("x",), None, "fn", None
            ),
            id="with args",
        ),
    ],
)
def test_a_log_line_is_what_powertools_writes(record: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
    logger.append_keys(cold_start=False, function_name="SignDsseFunction")
    logger.set_correlation_id("corr-1")
    try:
        ours = logger.registered_handler.formatter
        assert ours is not None
        reference = LambdaPowertoolsFormatter()
        reference.log_format = dict(ours.log_format)
        line = record()
        assert ours.format(line) == reference.format(line)
        assert json.loads(ours.format(line))["xray_trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    finally:
        logger.remove_keys(["cold_start", "function_name", "correlation_id"])


@pytest.mark.parametrize("utc", [False, True])
def test_timestamps_are_what_powertools_writes_second_after_second(utc: bool) -> None:
    """The timestamp's text is made once per second: the same second again, the next one, an earlier
    one, milliseconds at both ends, in local time and in UTC."""
    ours = type(logger.registered_handler.formatter)(utc=utc)
    reference = LambdaPowertoolsFormatter(utc=utc)
    for created in (1_800_000_000.0, 1_800_000_000.999, 1_800_000_001.5, 1_799_999_999.001, 1_800_000_001.25):
        line = _record()
        line.created, line.msecs = created, (created - int(created)) * 1000
        assert ours.format(line) == reference.format(line)
        assert ours.formatTime(line) == reference.formatTime(line)


@pytest.mark.filterwarnings("ignore:POWERTOOLS_DEV")
@pytest.mark.parametrize("dev", ["false", "true"])
def test_a_line_is_serialised_as_powertools_does_indented_under_sam_local(
    dev: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_DEV", dev)
    ours = type(logger.registered_handler.formatter)()
    reference = LambdaPowertoolsFormatter()
    line = _record(route="POST /x", status=200, text="naïve ✓", odd=object)
    assert ours.format(line) == reference.format(line)
    assert ("\n" in ours.format(line)) is (dev == "true")


def test_an_exception_line_is_what_powertools_writes() -> None:
    ours = logger.registered_handler.formatter
    assert ours is not None
    reference = LambdaPowertoolsFormatter()
    reference.log_format = dict(ours.log_format)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = logger._logger.makeRecord(
            "signer", logging.ERROR, "f.py", 1, "unexpected error", (), sys.exc_info(), "fn", None
        )
    assert ours.format(line) == reference.format(line)
    assert json.loads(ours.format(line))["exception_name"] == "ValueError"


def _access_line(fields: dict[str, Any]) -> None:
    observability.access(fields)  # both ways of writing the line locate it here


@pytest.fixture
def access_stream(monkeypatch: pytest.MonkeyPatch) -> Any:
    import io

    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    level = logger.log_level
    logger.setLevel(logging.INFO)  # the template's LogLevel (the tests run at WARNING)
    yield stream
    logger.setLevel(level)


def test_the_access_line_is_what_logger_info_writes(access_stream: Any) -> None:
    """Handed to Powertools' handler directly, or through ``Logger.info`` (which a filter on the
    logger forces): the same line, at the same location."""
    fields = {"route": "POST /x", "status": 200, "code": "", "latencyMs": 1.5, "tenant": "t", "auditId": "a"}
    _access_line(fields)
    passing = logging.Filter()
    observability.access_log.addFilter(passing)
    try:
        _access_line(fields)
    finally:
        observability.access_log.removeFilter(passing)
    direct, through_logging = (json.loads(line) for line in access_stream.getvalue().splitlines())
    direct.pop("timestamp")
    through_logging.pop("timestamp")
    assert direct == through_logging
    assert list(direct) == list(through_logging)
    assert direct["location"].startswith("_access_line:")
    assert direct["route"] == "POST /x" and direct["message"] == "request"


@pytest.mark.parametrize("where", ["beside Powertools' handler", "on the root logger"])
def test_another_handler_sees_the_access_line_and_a_higher_level_silences_it(
    where: str, access_stream: Any
) -> None:
    seen: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = seen.append  # type: ignore[method-assign]
    owner = observability.access_log if where.startswith("beside") else logging.getLogger()
    owner.addHandler(other)
    try:
        _access_line({"route": "GET /y", "status": 404})
    finally:
        owner.removeHandler(other)
    assert [record.getMessage() for record in seen] == ["request"]
    assert seen[0].funcName == "_access_line"
    logger.setLevel(logging.WARNING)
    _access_line({"route": "GET /z", "status": 200})
    assert [json.loads(line)["route"] for line in access_stream.getvalue().splitlines()] == ["GET /y"]


# --- compact JSON (answers, EMF documents) and log lines written by orjson (decision 0020) ----------

ANSWER_LIKE: Any = {
    "bundle": {"dsse": {"payload": "eyJ9", "signatures": [{"keyid": "k", "sig": "c2ln"}]}, "mode": "kms"},
    "policy": {"qps": {"limit": 10, "remaining": 9}, "daily": {"limit": 2**53 - 1}, "ok": True, "none": None},
    "latency": [0.5, 12.25, 1234.5, -3.0],
    "text": 'quote " backslash \\ control \x01 tab \t',
}


def test_compact_json_is_the_standard_librarys_compact_document() -> None:
    from stellaops_signer.domain.jose import compact_json

    assert compact_json(ANSWER_LIKE) == json.dumps(ANSWER_LIKE, separators=(",", ":"))


def test_compact_json_writes_text_beyond_ascii_as_utf8_of_the_same_document() -> None:
    from stellaops_signer.domain.jose import compact_json

    document = {"detail": "naïve ✓ 😀", "ké": [" "]}
    assert compact_json(document) == json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(compact_json(document)) == document


@pytest.mark.parametrize(
    "document",
    [{"big": 2**64}, {"big": -(2**63) - 1}, {1: "integer key"}, {"nested": [{2.5: "float key"}]}],
    ids=["integer_beyond_64_bits", "negative_beyond_64_bits", "integer_key", "float_key"],
)
def test_compact_json_beyond_orjson_is_the_standard_librarys(document: Any) -> None:
    from stellaops_signer.domain.jose import compact_json

    assert compact_json(document) == json.dumps(document, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC), dataclasses.make_dataclass("D", ["x"])(1), {1, 2}],
    ids=["datetime", "dataclass", "set"],
)
def test_compact_json_refuses_what_the_standard_library_refuses(value: Any) -> None:
    from stellaops_signer.domain.jose import compact_json

    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        compact_json({"value": value})


def test_a_line_of_numbers_holds_the_same_numbers_as_powertools_line() -> None:
    """The one difference of orjson's lines: a float whose shortest form needs an exponent is written
    1e-07 by Python and 1e-7 by orjson (1e+16 and 1e16): the same double."""
    ours = type(logger.registered_handler.formatter)()
    reference = LambdaPowertoolsFormatter()
    line = _record(small=1e-7, large=1e16, plain=0.5, big=2**70)
    assert json.loads(ours.format(line)) == json.loads(reference.format(line))
    plain = _record(latencyMs=12.5, status=200, tenant="t", ok=True, odd=object)
    assert ours.format(plain) == reference.format(plain)


# --- the handler's wrapper: the lines Powertools' inject_lambda_context(clear_state=True) gives -------


def _lines_of_invocations(decorate: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, Any]]]:
    """Three invocations (cold, then warm; the first adds keys that must not outlive it), each line's
    members in order, the timestamp aside (its text is held equal to Powertools' above)."""
    import io

    from local.gateway import LambdaContext

    def handler(event: dict[str, Any], context: Any) -> None:
        if event.get("correlation"):
            logger.set_correlation_id(event["correlation"])
            logger.append_keys(leftover="from the first invocation")
        logger.info("request", extra={"route": "POST /x", "status": 200, "code": ""})

    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    level = logger.log_level
    logger.setLevel(logging.INFO)  # the template's LogLevel (the tests run at WARNING)
    try:
        wrapped = decorate(handler)
        for number, (event, name) in enumerate(
            (({"correlation": "corr-1"}, "SignDsseFunction"), ({}, "SignDsseFunction"), ({}, "F2"))
        ):
            context = LambdaContext(name)
            context.aws_request_id = f"request-{number}"
            wrapped(event, context)
    finally:
        logger.setLevel(level)
    return [
        [(key, value) for key, value in json.loads(line).items() if key != "timestamp"]
        for line in stream.getvalue().splitlines()
    ]


@pytest.mark.parametrize("initialization", [None, "on-demand", "provisioned-concurrency"])
def test_the_handler_wrapper_logs_what_powertools_inject_lambda_context_logs(
    initialization: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aws_lambda_powertools.logging.logger as powertools_logger

    from stellaops_signer import observability

    if initialization is None:
        monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", initialization)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
    # Each a fresh sandbox: its first invocation is the cold start.
    monkeypatch.setattr(powertools_logger, "is_cold_start", True)
    reference = _lines_of_invocations(logger.inject_lambda_context(clear_state=True), monkeypatch)
    monkeypatch.setattr(observability, "_cold_start", [True])
    ours = _lines_of_invocations(observability.instrumented, monkeypatch)
    assert ours == reference
    cold = initialization != "provisioned-concurrency"
    assert [dict(line)["cold_start"] for line in ours] == [cold, False, False]
    assert "correlation_id" in dict(ours[0]) and "leftover" in dict(ours[0])
    assert not {"correlation_id", "leftover"} & set(dict(ours[1]))
    assert dict(ours[2])["function_name"] == "F2"


def test_the_handler_wrapper_prints_the_invocations_metrics_when_it_raises(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from local.gateway import LambdaContext
    from stellaops_signer import observability

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    @observability.instrumented
    def handler(event: Any, context: Any) -> None:
        observability.count_outcome("internal_error")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        handler({}, LambdaContext("SignDsseFunction"))
    assert '"Requests.internal_error"' in capsys.readouterr().out


# --- ids and days ----------------------------------------------------------------------------------


def test_random_ids_are_canonical_version_4_uuids() -> None:
    ids = {random_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in list(ids)[:500]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert {value[19] for value in ids} == set("89ab")  # every variant nibble occurs


@pytest.mark.parametrize(
    ("now", "day"),
    [(0, "1970-01-01"), (86399.999, "1970-01-01"), (86400, "1970-01-02"), (1_800_000_000, "2027-01-15")],
)
def test_the_utc_day_of_a_moment(now: float, day: str) -> None:
    assert utc_day(now) == day


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """Ids come from a pool of ``os.urandom`` bytes: a child process starts a pool of its own."""
    import os

    random_id()  # the parent's pool holds bytes for its next ids
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writer, random_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    childs = os.read(reader, 64).decode()
    os.close(reader)
    assert uuid.UUID(childs).version == 4 and childs != random_id()


def test_audit_times_are_what_datetime_writes() -> None:
    """``iso_time`` against ``datetime.fromtimestamp(…, UTC).isoformat(timespec="milliseconds")``: random
    moments, each second's text made again after another second, and the rounding edges (half a
    microsecond, a fraction that rounds up into the next second, the neighbours of whole seconds)."""
    import math
    import random
    from datetime import UTC, datetime

    from stellaops_signer.domain.audit import iso_time

    generator = random.Random(8785)
    moments = [generator.uniform(0, 4_102_444_800) for _ in range(20_000)]
    moments += [
        1_800_000_000 + edge for edge in (0, 0.0000005, 0.0000015, 0.0009995, 0.9994999, 0.9999995, 0.9999999)
    ]
    moments += [
        math.nextafter(whole, direction)
        for whole in (1_800_000_000.0, 1_800_000_001.0)
        for direction in (0, 2e9)
    ]
    moments += [1_800_000_000 + micros / 1e6 for micros in range(0, 2_000_000, 997)]
    for moment in moments:
        expected = (
            datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        assert iso_time(moment) == expected, moment


# --- the authorizer's policy: the document Powertools' builder makes ---------------------------------

_ARN = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/POST/api/v1/signer/sign/dsse"


def test_allow_is_powertools_allow_route_of_the_invoked_method() -> None:
    reference = APIGatewayAuthorizerResponse.from_route_arn(_ARN, "scanner-1", context={"tid": "t"})
    reference.allow_route("POST", "api/v1/signer/sign/dsse")
    assert http.authorizer_policy(_ARN, "scanner-1", True, {"tid": "t"}) == reference.asdict()


def test_deny_is_powertools_deny_all_routes() -> None:
    reference = APIGatewayAuthorizerResponse.from_route_arn(_ARN, "anonymous", context={"errorCode": "x"})
    reference.deny_all_routes()
    assert http.authorizer_policy(_ARN, "anonymous", False, {"errorCode": "x"}) == reference.asdict()


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1",
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/*/*",  # a wildcard is never invoked
        "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/v1/TRACE/api",
        "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/api/../x y",
        "arn:aws:lambda:us-east-1:123456789012:function:f",
    ],
)
def test_a_method_arn_api_gateway_would_not_send_is_not_answered(arn: str) -> None:
    with pytest.raises(ValueError):
        http.authorizer_policy(arn, "scanner-1", True, {})


def test_the_policy_keeps_the_partition() -> None:
    arn = _ARN.replace("arn:aws:", "arn:aws-cn:").replace("us-east-1", "cn-north-1")
    [statement] = http.authorizer_policy(arn, "p", True, {})["policyDocument"]["Statement"]
    assert statement["Resource"] == [arn]
    assert re.fullmatch(
        r"arn:aws-cn:.*/v1/\*/\*",
        http.authorizer_policy(arn, "p", False, {})["policyDocument"]["Statement"][0]["Resource"][0],
    )


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        (0, 86400),
        (86399.0, 1),
        (86399.9995, 1),
        (86400, 86400),
        (1_800_000_000, 57600),
        (1_800_000_000.25, 57600),
        (1_800_000_000.999, 57600),
        (1_800_057_599.0004, 1),
    ],
)
def test_the_seconds_to_the_next_utc_midnight(now: float, seconds: int) -> None:
    from datetime import UTC, datetime, timedelta

    from stellaops_signer.domain.quota import seconds_to_next_day

    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert seconds_to_next_day(now) == seconds == max(1, int((midnight - moment).total_seconds() + 0.999))


def test_the_seconds_to_midnight_agree_with_datetime_over_a_day_of_moments() -> None:
    import random
    from datetime import UTC, datetime, timedelta

    from stellaops_signer.domain.quota import seconds_to_next_day

    moments = [1_800_000_000 + random.Random(7).uniform(0, 86400) for _ in range(2000)]
    for now in moments + [m // 1 + f for m in moments[:200] for f in (0.0, 0.0005, 0.999, 0.9995, 0.9999999)]:
        moment = datetime.fromtimestamp(now, UTC)
        midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert seconds_to_next_day(now) == max(1, int((midnight - moment).total_seconds() + 0.999)), now
