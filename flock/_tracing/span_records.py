"""Finished spans as flat records: what Flock's exporting thread queues, scrubs and writes.

A record is a tuple of ints, strings and ``None``, with attributes, events and links already encoded as
JSON text. Flock's own spans (:mod:`flock._tracing.lean_spans`) turn into a record when they end; spans of the
OpenTelemetry SDK (other libraries' instrumentation, or every span when the application installed the
provider) are turned into one on the exporting thread. Two reasons for the flat form:

* the CPython garbage collector stops tracking a tuple of atomic values at its first look, so thousands
  of spans waiting for export do not make every full collection walk them (with SDK span objects in the
  queue, collections were a third of tracing's cost);
* the trace store writes a record almost as it is, and secrets are scrubbed once per record, for every
  exporter, on text that is usually clean (see :func:`scrubbed`).

Exporters other than the trace store receive ordinary ``ReadableSpan`` objects (:func:`readable`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from .redact import REDACTED, Redactor, secret_name

Record = tuple[Any, ...]

# Record fields, in order.
TRACE_ID, SPAN_ID, PARENT_ID, PARENT_REMOTE, NAME, KIND, START, END = range(8)
STATUS, MESSAGE, ATTRIBUTES, EVENTS, LINKS, FLAGS, STATE, SCOPE = range(8, 16)

KINDS = tuple(SpanKind)  # by value: INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER
STATUS_CODES = tuple(StatusCode)  # by value: UNSET, OK, ERROR

# The C encoder json.dumps uses, made once: compact, UTF-8 kept as is, unknown objects as str().
# (JSONEncoder.encode builds a new one on every call, which cost more than the encoding itself.)
_slow_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_c_encode = (
    c_make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None  # None where json's C speedups are missing
    else None
)


def encode(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)``, faster."""
    if _c_encode is None or isinstance(value, str):
        return _slow_encode(value)
    return "".join(_c_encode(value, 0))


EMPTY_LIST = "[]"
EMPTY_DICT = "{}"


class Scopes:
    """Instrumentation scope and resource of each record, as a small int (objects would keep records
    tracked by the garbage collector). One per process: scopes and resources are few and immutable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[tuple[Any, Any], int] = {}
        self._items: list[tuple[InstrumentationScope | None, Resource]] = []

    def key(self, scope: InstrumentationScope | None, resource: Resource) -> int:
        found = self._index.get((scope, id(resource)))
        if found is None:
            with self._lock:
                found = self._index.setdefault((scope, id(resource)), len(self._items))
                if found == len(self._items):
                    self._items.append((scope, resource))
        return found

    def __getitem__(self, key: int) -> tuple[InstrumentationScope | None, Resource]:
        return self._items[key]


SCOPES = Scopes()


def clean_keys(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``attributes`` as a dict, with the values of credential-named keys (``api_key``...) replaced."""
    for key in attributes:
        if secret_name(key):
            return {k: REDACTED if secret_name(k) else v for k, v in attributes.items()}
    return attributes if type(attributes) is dict else dict(attributes)  # the SDK's are Mappings


def encode_attributes(attributes: Mapping[str, Any] | None) -> str:
    return encode(clean_keys(attributes)) if attributes else EMPTY_DICT


def encode_events(events: Sequence[tuple[str, int, Mapping[str, Any] | None]]) -> str:
    if not events:
        return EMPTY_LIST
    return encode(
        [
            {"name": name, "time_ns": time, "attributes": clean_keys(attrs or {})}
            for name, time, attrs in events
        ]
    )


def encode_links(links: Sequence[Link]) -> str:
    if not links:
        return EMPTY_LIST
    return encode(
        [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": clean_keys(link.attributes or {}),
            }
            for link in links
        ]
    )


def record_of(span: ReadableSpan) -> Record:
    """The record of a finished SDK span."""
    context = span.context
    parent = span.parent
    status = span.status
    state = context.trace_state if context is not None else None
    start = span.start_time or 0
    return (
        context.trace_id if context is not None else 0,
        context.span_id if context is not None else 0,
        parent.span_id if parent is not None else None,
        bool(parent is not None and parent.is_remote),
        span.name,
        span.kind.value,
        start,
        span.end_time or start,
        status.status_code.value,
        status.description,
        encode_attributes(span.attributes),
        encode_events([(e.name, e.timestamp, e.attributes) for e in span.events]),
        encode_links(span.links),
        int(context.trace_flags) if context is not None else 1,
        state.to_header() if state else None,
        SCOPES.key(span.instrumentation_scope, span.resource),
    )


def readable(record: Record) -> ReadableSpan:
    """An SDK ``ReadableSpan`` for a record, for exporters that take those (OTLP, console...)."""
    flags = TraceFlags(record[FLAGS])
    state = TraceState.from_header([record[STATE]]) if record[STATE] else None
    context = SpanContext(record[TRACE_ID], record[SPAN_ID], False, flags, state)
    parent = None
    if record[PARENT_ID] is not None:
        parent = SpanContext(record[TRACE_ID], record[PARENT_ID], record[PARENT_REMOTE], flags)
    scope, resource = SCOPES[record[SCOPE]]
    events = [Event(e["name"], e["attributes"], e["time_ns"]) for e in json.loads(record[EVENTS])]
    links = [
        Link(
            SpanContext(int(link["trace_id"], 16), int(link["span_id"], 16), False),
            link["attributes"],
        )
        for link in json.loads(record[LINKS])
    ]
    code = STATUS_CODES[record[STATUS]]
    return ReadableSpan(
        name=record[NAME],
        context=context,
        parent=parent,
        resource=resource,
        attributes=json.loads(record[ATTRIBUTES]),
        events=events,
        links=links,
        kind=KINDS[record[KIND]],
        status=Status(code, record[MESSAGE] if code is StatusCode.ERROR else None),
        start_time=record[START],
        end_time=record[END],
        instrumentation_scope=scope,
    )


def scrubbed(record: Record, redactor: Redactor) -> Record:
    """``record`` with secret values cut out of its name, status message, attributes, events and links.

    Credential-named keys were replaced when the record was made; what is left is values: secrets from
    the environment and credential shapes. Most records hold none, and a scan of their JSON text says
    so; only a record that may hold one is decoded and scrubbed value by value.
    """
    name, message = record[NAME], record[MESSAGE]
    attributes, events, links = record[ATTRIBUTES], record[EVENTS], record[LINKS]
    maybe = redactor.maybe_secret
    if not (
        maybe(attributes)
        or (events != EMPTY_LIST and maybe(events))
        or (links != EMPTY_LIST and maybe(links))
        or maybe(name)
        or (message is not None and maybe(message))
    ):
        return record
    clean = list(record)
    clean[NAME] = redactor.text(name)
    clean[MESSAGE] = redactor.text(message) if message is not None else None
    clean[ATTRIBUTES] = encode(redactor.attributes(json.loads(attributes)))
    clean[EVENTS] = encode(
        [
            {**e, "name": redactor.text(e["name"]), "attributes": redactor.attributes(e["attributes"])}
            for e in json.loads(events)
        ]
    )
    clean[LINKS] = encode(
        [{**x, "attributes": redactor.attributes(x["attributes"])} for x in json.loads(links)]
    )
    return tuple(clean)
