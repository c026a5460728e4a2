"""Batched export on one background thread: the span processor behind :func:`flock.tracing.enable_tracing`.

Spans arrive as records (:mod:`flock._tracing.span_records`) from Flock's lean spans, or as SDK spans through
:meth:`SpanPipeline.on_end`. Adding one is an append to a deque; the thread wakes when a batch is full
or a second has passed, turns SDK spans into records, scrubs secrets once per record and hands the batch
to every exporter: the trace store takes records as they are, other exporters ``ReadableSpan`` objects.
When more spans wait than ``max_queue``, new ones are dropped and counted (a warning says how many),
as the SDK's batch processor does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from .redact import Redactor
from .span_records import Record, readable, record_of, scrubbed

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span

logger = logging.getLogger("flock.tracing")


class SpanPipeline(SpanProcessor):
    """Queue spans and export them in batches from a daemon thread (see the module docstring)."""

    def __init__(
        self,
        exporters: Sequence[SpanExporter],
        *,
        max_queue: int = 65_536,
        batch: int = 2_048,
        delay_s: float = 1.0,
    ) -> None:
        self._exporters = tuple(exporters)
        self._max_queue = max_queue
        self._batch = batch
        self._delay = delay_s
        self._stopped = False
        self._start()
        if hasattr(os, "register_at_fork"):  # a forked child exports its own spans on its own thread
            restart = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := restart()) and m())

    def _start(self) -> None:
        self._queue: deque[Record | ReadableSpan] = deque()
        self._wake = threading.Event()
        self._exporting = threading.Lock()  # one batch at a time, from the thread or a flush
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name="flock-span-export", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        if not self._stopped:
            self._start()  # the parent's queued spans are the parent's to export

    # ------------------------------------------------------------------ producers (any thread)
    def emit(self, record: Record | ReadableSpan) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue or self._stopped:
            self._dropped += 1
            return
        queue.append(record)
        if len(queue) == self._batch:
            self._wake.set()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.emit(span)

    # ------------------------------------------------------------------ the export thread
    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._drain()

    def _drain(self, deadline: float | None = None) -> bool:
        """Export everything queued; ``False`` if ``deadline`` (a ``monotonic()`` time) came first."""
        timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self._exporting.acquire(timeout=timeout):
            return False
        try:
            while self._queue:
                if deadline is not None and time.monotonic() > deadline:
                    return False
                batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                self._export(batch)
            if self._dropped:
                logger.warning(
                    "the trace export queue was full: %d spans were dropped (raise OTEL_BSP_MAX_QUEUE_SIZE)",
                    self._dropped,
                )
                self._dropped = 0
            return True
        finally:
            self._exporting.release()

    def _export(self, batch: list[Record | ReadableSpan]) -> None:
        redactor = Redactor()  # per batch: secrets put into the environment since are seen
        try:
            records = [scrubbed(r if type(r) is tuple else record_of(r), redactor) for r in batch]  # type: ignore[arg-type]
        except Exception:  # a span that cannot be encoded must not kill the thread; say which batch went
            logger.exception("could not prepare %d spans for export", len(batch))
            return
        spans: list[ReadableSpan] | None = None
        for exporter in self._exporters:
            try:
                export_records = getattr(exporter, "export_records", None)
                if export_records is not None:
                    export_records(records)
                else:
                    if spans is None:
                        spans = [readable(r) for r in records]
                    exporter.export(spans)
            except Exception:
                logger.exception("%s failed to export %d spans", type(exporter).__name__, len(records))

    # ------------------------------------------------------------------ control
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        done = self._drain(deadline)
        for exporter in self._exporters:
            try:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                if exporter.force_flush(left) is False:  # the SDK's base class returns None: fine
                    done = False
            except Exception:
                logger.exception("%s failed to flush", type(exporter).__name__)
                done = False
        return done

    def shutdown(self) -> None:
        """Export what is queued, stop the thread and shut the exporters down."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=30)
        self._drain()
        for exporter in self._exporters:
            try:
                exporter.shutdown()
            except Exception:
                logger.exception("%s failed to shut down", type(exporter).__name__)

    def __repr__(self) -> str:
        names = ", ".join(type(e).__name__ for e in self._exporters)
        return f"SpanPipeline([{names}], queued={len(self._queue)})"
