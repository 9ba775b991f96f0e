"""Structured logs (Powertools' Logger) and EMF metrics, one instance each per container.

Never log tokens, DPoP proofs, PoEs, private keys or whole certificates: log codes,
thumbprints and hashes instead.

Metrics are CloudWatch embedded metric format (EMF) documents printed when an invocation ends
(decision 0017): the request metrics under the ``service`` dimension and ``KeyUsage`` under
``service``/``mode``/``key``, two directives of one document.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import RESERVED_LOG_ATTRS, LambdaPowertoolsFormatter

from stellaops_signer.domain.jose import ORJSON_OPTIONS, compact_json

if TYPE_CHECKING:
    from stellaops_signer.domain.jose import JsonObject

__all__ = [
    "EmfMetrics",
    "MetricUnit",
    "access",
    "access_log",
    "count",
    "count_key_usage",
    "count_outcome",
    "instrumented",
    "logger",
    "metrics",
    "metrics_disabled",
]

SERVICE = "signer"
NAMESPACE = "StellaOps/Signer"
_TRUE = ("1", "true", "yes", "on", "y", "t")
Handler = TypeVar("Handler", bound=Callable[..., Any])


class MetricUnit(StrEnum):
    """The CloudWatch units the Signer's metrics use."""

    Count = "Count"
    Milliseconds = "Milliseconds"


class _Formatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, the same keys in the same order (a test holds the two equal), made
    faster for the Signer's lines: a message is its own string, never JSON to decode again; reserved
    attributes are looked up in a set, not a tuple; Powertools' three templates (level, location,
    timestamp) are read from the record directly, the timestamp's text made once per second."""

    def _extract_log_message(self, log_record: logging.LogRecord) -> Any:
        return log_record.getMessage() if log_record.args else log_record.msg

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # Powertools' default serialiser is json.dumps with these options: the same, as one encoder.
        self._encoder = (
            None
            if "json_serializer" in options
            else json.JSONEncoder(
                default=self.json_default, separators=(",", ":"), indent=self.json_indent, ensure_ascii=False
            )
        )
        # Compact lines (not POWERTOOLS_DEV's indented ones) are written by orjson (decision 0020), with
        # Powertools' ``json_default`` for what is not JSON, datetimes and dataclasses included.
        self._orjson = self._encoder is not None and self.json_indent is None

    def serialize(self, log: Any) -> str:
        if self._orjson:
            try:
                return orjson.dumps(log, default=self.json_default, option=ORJSON_OPTIONS).decode()
            except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a key not a string
                pass
        return super().serialize(log) if self._encoder is None else self._encoder.encode(log)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.stack_info or record.args or not isinstance(record.msg, str):
            return super().format(record)
        view: _RecordView | None = None
        log: dict[str, Any] = {}
        for keys in (self.log_format, self.thread_safe_get_current_keys()):
            for key, value in keys.items():
                if key in _RESERVED and value and isinstance(value, str):
                    read = _TEMPLATES.get(value)
                    if read is not None:
                        value = read(record, self)
                    else:
                        value = value % (view or (view := _RecordView(record, self)))
                log[key] = value
        log.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        log["message"] = record.msg
        log["xray_trace_id"] = self._get_latest_trace_id()
        return self.serialize({k: v for k, v in log.items() if v is not None})

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if self.use_rfc3339_iso8601 or datefmt or self.datefmt:
            return super().formatTime(record, datefmt)
        # Powertools' default: strftime of ``default_time_format`` with ``%F`` the milliseconds. The
        # text of a second is made once, ``%F`` kept in it, and the milliseconds put in per line.
        second = int(record.created)
        if self._second is None or self._second[0] != second:
            template = self.default_time_format.replace(self.custom_ms_time_directive, "%%F")
            self._second = (second, time.strftime(template, self.converter(record.created)))
        return self._second[1].replace("%F", "%03d" % record.msecs)  # noqa: UP031 - Powertools' form

    _second: tuple[int, str] | None = None


_TEMPLATES: dict[str, Callable[[logging.LogRecord, _Formatter], str]] = {
    "%(levelname)s": lambda record, _: record.levelname,
    "%(funcName)s:%(lineno)d": lambda record, _: f"{record.funcName}:{record.lineno}",
    "%(asctime)s": lambda record, formatter: formatter.formatTime(record),
}


class _RecordView(dict[str, Any]):
    """A record's attributes for ``%(name)s`` templates, ``asctime`` formatted on demand."""

    def __init__(self, record: logging.LogRecord, formatter: LambdaPowertoolsFormatter) -> None:
        super().__init__()
        self._record, self._formatter = record, formatter

    def __missing__(self, name: str) -> Any:
        if name == "asctime":
            return self._formatter.formatTime(self._record)
        return getattr(self._record, name)


_RESERVED = frozenset(RESERVED_LOG_ATTRS)


def metrics_disabled() -> bool:
    """Powertools' rule: ``POWERTOOLS_METRICS_DISABLED`` true, or ``POWERTOOLS_DEV`` true unless
    metrics are explicitly enabled."""
    flag = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    if flag is not None:
        return flag.strip().lower() in _TRUE
    return os.environ.get("POWERTOOLS_DEV", "").strip().lower() in _TRUE


class EmfMetrics:
    """The metrics of one invocation, printed as EMF to stdout (where Lambda's log agent turns them
    into CloudWatch metrics) when ``log_metrics``' handler returns. Off as Powertools' Metrics are
    off (``metrics_disabled``), read when each invocation starts."""

    def __init__(self, namespace: str, service: str) -> None:
        self.namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or namespace
        self.service = os.environ.get("POWERTOOLS_SERVICE_NAME") or service
        self.enabled = not metrics_disabled()
        self._values: dict[str, tuple[str, list[float]]] = {}
        self._key_usage: dict[tuple[str, str], int] = {}
        self._directive_texts: dict[tuple[tuple[tuple[str, str], ...], bool], str] = {}

    def add(self, name: str, unit: MetricUnit, value: float) -> None:
        if self.enabled:
            self._values.setdefault(name, (unit.value, []))[1].append(float(value))

    def add_key_usage(self, mode: str, key: str) -> None:
        if self.enabled:
            self._key_usage[(mode, key)] = self._key_usage.get((mode, key), 0) + 1

    def documents(self) -> list[JsonObject]:
        """The EMF documents of what was counted: one, or one more per further key used."""
        return [json.loads(line) for line in self._lines()]

    def flush(self) -> None:
        if not self._values and not self._key_usage:  # nothing counted (an allowed authorizer call)
            return
        lines = self._lines()
        self._values, self._key_usage = {}, {}
        out = sys.stdout
        for line in lines:
            out.write(line + "\n")
        out.flush()

    def _lines(self) -> list[str]:
        """Each document as one line of JSON: the ``_aws`` metadata (its directives serialised once
        per set of metric names, ``_directives``), then the root members."""
        timestamp = int(time.time() * 1000)
        lines: list[str] = []
        usages: list[tuple[tuple[str, str], int] | None] = [*self._key_usage.items()] or [None]
        for index, usage in enumerate(usages):
            root: dict[str, Any] = {"service": self.service}
            names: tuple[tuple[str, str], ...] = ()
            if index == 0 and self._values:
                names = tuple((name, unit) for name, (unit, _) in self._values.items())
                root.update({name: v[0] if len(v) == 1 else v for name, (_, v) in self._values.items()})
            if usage is not None:
                (mode, key), uses = usage
                root.update(mode=mode, key=key, KeyUsage=float(uses))
            if names or usage is not None:
                directives = self._directives(names, usage is not None)
                members = compact_json(root)[1:]  # '"service":…}'
                lines.append(
                    f'{{"_aws":{{"Timestamp":{timestamp},"CloudWatchMetrics":{directives}}},{members}'
                )
        return lines

    def _directives(self, names: tuple[tuple[str, str], ...], key_usage: bool) -> str:
        """The ``CloudWatchMetrics`` array (JSON) for these request metrics and, if used, ``KeyUsage``."""
        text = self._directive_texts.get((names, key_usage))
        if text is None:
            text = self._directive_texts[(names, key_usage)] = self._directives_of(names, key_usage)
        return text

    def _directives_of(self, names: tuple[tuple[str, str], ...], key_usage: bool) -> str:
        directives: list[JsonObject] = []
        if names:
            metrics = [{"Name": name, "Unit": unit} for name, unit in names]
            directives.append({"Namespace": self.namespace, "Dimensions": [["service"]], "Metrics": metrics})
        if key_usage:
            directives.append(
                {
                    "Namespace": self.namespace,
                    "Dimensions": [["service", "mode", "key"]],
                    "Metrics": [{"Name": "KeyUsage", "Unit": MetricUnit.Count.value}],
                }
            )
        return compact_json(directives)

    def log_metrics(self, handler: Handler) -> Handler:
        """Decorate a Lambda handler: its invocation's metrics are printed when it returns or raises."""

        @functools.wraps(handler)
        def decorated(event: Any, context: Any) -> Any:
            self.enabled = not metrics_disabled()
            try:
                return handler(event, context)
            finally:
                self.flush()

        return cast("Handler", decorated)


# The logging HOWTO's "Optimization": no line of Powertools' format shows the thread, the process or
# the asyncio task, so records do not collect them (``os.getpid`` is a system call on every line; from
# Python 3.12 a record asks asyncio for its current task, which raises outside a running loop).
logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
vars(logging)["logAsyncioTasks"] = False  # read from Python 3.12 on (mypy checks for 3.11)
logger = Logger(service=SERVICE, logger_formatter=_Formatter())
#: The standard library's logger under Powertools' (the same handler, formatter and level), for the
#: one line of every request: without Powertools' wrapper around each call (its log buffer, unused).
access_log = logging.getLogger(logger.name)


def access(fields: dict[str, Any]) -> None:
    """The one INFO line of a request (spec §5.7): what ``access_log.info("request", extra=fields)``
    writes, located at the caller's line. With no filter on the logger and one handler on it
    (Powertools'), ``Logger.info`` only finds the caller's frame, makes the record and hands it to
    that handler and then to the parents' (propagation: in Lambda the runtime's root handler, which
    Powertools' filter silences); here the frame is the caller's own and the record, made by the
    logger's ``makeRecord``, goes the same way. Any other set-up takes ``Logger.info`` itself."""
    log = access_log
    if not log.isEnabledFor(logging.INFO):
        return
    handlers = log.handlers
    if len(handlers) != 1 or log.filters or log.disabled:
        log.info("request", extra=fields, stacklevel=2)
        return
    caller = sys._getframe(1)
    code = caller.f_code
    record = log.makeRecord(
        log.name, logging.INFO, code.co_filename, caller.f_lineno, "request", (), None, code.co_name, fields
    )
    if record.levelno >= handlers[0].level:
        handlers[0].handle(record)
    if log.propagate and log.parent is not None:
        log.parent.callHandlers(record)  # an INFO record: below the last-resort handler's WARNING


metrics = EmfMetrics(namespace=NAMESPACE, service=SERVICE)
_cold_start = [True]
_INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"


def instrumented(handler: Handler) -> Handler:
    """A Lambda handler with Powertools' ``logger.inject_lambda_context(clear_state=True)`` around
    ``metrics.log_metrics`` (decision 0017): each invocation's log keys are the logger's own, the
    Lambda context's and ``cold_start`` (those a previous invocation added are dropped), the same
    keys in the same order (a test holds the lines equal to Powertools'). Powertools rebuilds the
    logger's keys through a chain of calls on every invocation; here they are taken once, at the
    first invocation, and the context's put in. ``POWERTOOLS_LOGGER_LOG_EVENT`` is not honoured:
    an event carries tokens and proofs."""
    formatter = logger.registered_formatter
    base: dict[str, Any] = {}
    measured = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def invoke(event: Any, context: Any) -> Any:
        if not base:  # Powertools' clear_state: the formatter's keys and the logger's, nothing else
            logger.structure_logs()
            base.update(formatter.log_format)  # type: ignore[attr-defined]
        # Powertools' cold start: the first invocation of a sandbox, never under provisioned concurrency.
        cold = _cold_start[0] and os.environ.get(_INITIALIZATION_TYPE) != "provisioned-concurrency"
        _cold_start[0] = False
        keys = base.copy()
        keys["cold_start"] = cold
        keys["function_name"] = context.function_name
        keys["function_memory_size"] = context.memory_limit_in_mb
        keys["function_arn"] = context.invoked_function_arn
        keys["function_request_id"] = context.aws_request_id
        formatter.log_format = keys  # type: ignore[attr-defined]
        formatter.thread_safe_clear_keys()
        if logger.sampling_rate and not cold:
            logger.refresh_sample_rate_calculation()
        return measured(event, context)

    return cast("Handler", invoke)


def count_outcome(outcome: str) -> None:
    """Count a request and its outcome (``ok``, ``authenticated`` or the error code)."""
    metrics.add(f"Requests.{outcome}", MetricUnit.Count, 1)


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """One data point (signing latency, release verifications…)."""
    metrics.add(name, unit, value)


def count_key_usage(mode: str, key: str) -> None:
    """``KeyUsage`` with the signing mode and the key (its ARN; ``keyless`` for ephemeral keys) as
    dimensions, so an operator sees which key signed how much."""
    metrics.add_key_usage(mode, key)
