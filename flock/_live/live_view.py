"""A live view of a run on stderr: activations done, running, queued and failed, tokens, cost, rate.

``run_until_idle(progress=...)``: ``None`` (the default) shows it when stderr is a terminal, ``True``
always, ``False`` never. On a terminal one line is rewritten in place (at most five times a second);
elsewhere a line is printed every ``interval`` seconds of activity. Nothing goes to stdout. The view
listens to the activation lifecycle; a run without it pays nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from .._core.lifecycle import State
from .._core.numbers import human
from .._core.scheduler import Activation


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
        self._detach: Callable[[], None] = lambda: None

    @classmethod
    def attach(cls, orch: Any, settings: Any) -> LiveView:
        """A view of ``orch``'s lifecycle (and ``settings.usage``), listening from now on."""
        lifecycle = orch.lifecycle
        view = cls(
            queued=lambda: lifecycle.queued,
            running=lambda: len(lifecycle.running),
            metrics=lambda: orch.summary.metrics,
            usage=lambda: settings.usage,
        )
        view._detach = lambda: lifecycle.listeners.remove(view)
        lifecycle.listeners.append(view)
        return view

    def detach(self) -> None:
        """Stop listening and write the last line."""
        self._detach()
        self.close()

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
        return ", ".join(parts)

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


def wanted(progress: bool | None, stream: IO[str] | None = None) -> bool:
    """Whether to show the view: ``progress`` if given, else whether stderr is a terminal."""
    if progress is not None:
        return progress
    target = stream if stream is not None else sys.stderr
    return bool(getattr(target, "isatty", lambda: False)())
