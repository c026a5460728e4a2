"""A live view of a run on stderr: activations done, running, queued and failed, tokens, cost, rate.

``run_until_idle(progress=...)``: ``None`` (the default) shows it when stderr is a terminal, ``True``
always, ``False`` never, and an agent's name shows it with that agent's text as the model streams
it. On a terminal one line is rewritten in place (at most five times a second); elsewhere a line is
printed every ``interval`` seconds of activity. Nothing goes to stdout. The view listens to the
activation lifecycle (and, for an agent's text, to its token events); a run without it pays nothing.

Streamed text is shown line by line above the status line, each line prefixed with
``agent.field``; on a terminal the line being written shows at the end of the status line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from .._core.lifecycle import State
from .._core.numbers import human
from .._core.scheduler import Activation
from .events import ActivationEvent, Event, TokenEvent

_TAIL = 48  # characters of the line being streamed shown at the end of the status line


class LiveView:
    """Renders one status line from the lifecycle's transitions.

    Args:
        queued, running: how many activations wait and run now.
        metrics: the run summary's engine metrics so far (tokens).
        usage: model usage so far (records with a ``cost_usd``, where engines report one).
        stream: where to write (stderr).
        interval: seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(
        self,
        *,
        queued: Callable[[], int],
        running: Callable[[], int],
        metrics: Callable[[], Mapping[str, float]],
        usage: Callable[[], Mapping[str, Any]],
        stream: IO[str] | None = None,
        interval: float = 5.0,
    ) -> None:
        self._queued, self._running, self._metrics, self._usage = queued, running, metrics, usage
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.2 if self.tty else interval
        self.done = self.failed = 0
        self._started = time.perf_counter()
        self._last = self._started
        self.lines = 0
        self._detach: list[Callable[[], None]] = []
        # the text being streamed: (activation, field) -> [attempt, the unfinished line]
        self._text: dict[tuple[Any, str], list[Any]] = {}
        self._tail = ""
        self.agent = ""  # the agent whose text is shown, if any

    @classmethod
    def attach(cls, orch: Any, settings: Any, agent: str | None = None) -> LiveView:
        """A view of ``orch``'s lifecycle (and ``settings.usage``), listening from now on; with
        ``agent``, also that agent's streamed text."""
        lifecycle = orch.lifecycle
        view = cls(
            queued=lambda: lifecycle.queued,
            running=lambda: len(lifecycle.running),
            metrics=lambda: orch.summary.metrics,
            usage=lambda: settings.usage,
        )
        lifecycle.listeners.append(view)
        view._detach.append(lambda: lifecycle.listeners.remove(view))
        if agent is not None:
            view.agent = agent
            view._detach.append(orch.events.listen([agent], view.on_event))
        return view

    def detach(self) -> None:
        """Stop listening and write the last line."""
        for stop in self._detach:
            stop()
        for key in list(self._text):
            self._finish(key)
        self.close()

    # ------------------------------------------------------------------ streamed text
    def on_event(self, event: Event) -> None:
        """A token event of the watched agent: its complete lines are written out; the end of an
        activation writes what is left of its text."""
        if isinstance(event, TokenEvent):
            key = (event.activation_id, event.field)
            entry = self._text.get(key)
            if entry is None or entry[0] != event.attempt:
                if entry is not None and entry[1]:
                    self._write_text(key, entry[1] + " [asked again]")
                entry = self._text[key] = [event.attempt, ""]
            *done, entry[1] = (entry[1] + event.delta).split("\n")
            for line in done:
                self._write_text(key, line)
            self._tail = f"{self.agent}.{event.field}: {entry[1]}"
            if self.tty and not done:
                now = time.perf_counter()
                if now - self._last >= self.interval / 4:
                    self._last = now
                    self.render()
        elif isinstance(event, ActivationEvent) and event.state != "started":
            for key in [k for k in self._text if k[0] == event.activation_id]:
                self._finish(key)

    def _finish(self, key: tuple[Any, str]) -> None:
        _attempt, rest = self._text.pop(key)
        if rest:
            self._write_text(key, rest)
        self._tail = ""

    def _write_text(self, key: tuple[Any, str], line: str) -> None:
        prefix = f"{self.agent}.{key[1]}: "
        self.stream.write(("\r\x1b[2K" if self.tty else "") + prefix + line + "\n")
        if self.tty:
            self.render()
        else:
            self.stream.flush()

    def __call__(self, act: Activation, state: State) -> None:
        if state is State.COMMITTED:
            self.done += 1
        elif state is State.FAILED:
            self.done += 1
            self.failed += 1
        else:
            return
        now = time.perf_counter()
        if now - self._last >= self.interval:
            self._last = now
            self.render()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        metrics = self._metrics()
        tokens = metrics.get("input_tokens", 0) + metrics.get("output_tokens", 0)
        costs = [getattr(u, "cost_usd", None) for u in self._usage().values()]
        known = [c for c in costs if c is not None]
        parts = [
            f"flock: {human(self.done)} done",
            f"{human(self._running())} running",
            f"{human(self._queued())} queued",
            f"{human(self.failed)} failed",
            f"{self.done / elapsed:,.1f}/s",
        ]
        if tokens:
            parts.append(f"{human(tokens)} tokens")
        if known:
            parts.append(f"${sum(known):,.4f}")
        line = ", ".join(parts)
        if self.tty and self._tail:
            line += " | " + (self._tail if len(self._tail) <= _TAIL else "…" + self._tail[-_TAIL:])
        return line

    def render(self) -> None:
        self.lines += 1
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The last line (ending the rewritten one on a terminal)."""
        if self.done or self.lines:
            self.render()
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()


def wanted(progress: bool | str | None, stream: IO[str] | None = None) -> bool:
    """Whether to show the view: ``progress`` if given (an agent's name: yes), else whether
    stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    target = stream if stream is not None else sys.stderr
    return bool(getattr(target, "isatty", lambda: False)())
