"""Circuit breakers: stop calling a model endpoint that keeps failing, probe it now and then.

:class:`CircuitBreaker` is the configuration (a value); :class:`BreakerState` is the state of one
endpoint (a model name and its ``api_base``) in one Flock, kept in ``ModelSettings.shared`` so every
agent of the Flock that uses the endpoint sees the same state, and two flocks never do.

States: ``closed`` (calls go through; consecutive failures are counted), ``open`` (after ``failures``
consecutive failures: calls fail fast with :class:`~flock.ProviderUnavailable` for ``reset_after``
seconds), ``half_open`` (one probe call goes through; its success closes the breaker, its failure
opens it again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .._core.errors import ConfigurationError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class CircuitBreaker:
    """Open after ``failures`` consecutive failed calls to one model endpoint; retry after ``reset_after`` s.

    Only transient failures count (timeouts, 429 after the retries, 5xx, broken connections): a bad
    request says nothing about the endpoint's health.

    Example::

        DSPyEngine("openai/gpt-4.1", breaker=CircuitBreaker(failures=5, reset_after=30.0),
                   fallbacks=("openai/gpt-4.1-mini",))
    """

    failures: int = 5
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int) or self.failures < 1:
            raise ConfigurationError(
                f"CircuitBreaker(failures=...) must be an int >= 1, got {self.failures!r}"
            )
        if not isinstance(self.reset_after, int | float) or not self.reset_after > 0:
            raise ConfigurationError(
                f"CircuitBreaker(reset_after=...) must be a number of seconds > 0, got {self.reset_after!r}"
            )


class BreakerState:
    """One endpoint's breaker. ``on_change(endpoint, old, new)`` hears every transition."""

    def __init__(
        self,
        endpoint: str,
        policy: CircuitBreaker,
        on_change: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.state = CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False
        self._on_change = on_change
        self._clock = clock

    def allow(self) -> bool:
        """May a call start now? In ``half_open`` only one probe at a time may."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self.opened_at < self.policy.reset_after:
                return False
            self._move(HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def retry_in(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.opened_at + self.policy.reset_after - self._clock())

    def success(self) -> None:
        self.failures = 0
        self._probing = False
        if self.state != CLOSED:
            self._move(CLOSED)

    def failure(self) -> None:
        self.failures += 1
        self._probing = False
        if self.state == HALF_OPEN or (self.state == CLOSED and self.failures >= self.policy.failures):
            self.opened_at = self._clock()
            self._move(OPEN)

    def release(self) -> None:
        """A call that neither succeeded nor failed the endpoint (cancelled, bad request) ended."""
        self._probing = False

    def _move(self, new: str) -> None:
        old, self.state = self.state, new
        if self._on_change is not None:
            self._on_change(self.endpoint, old, new)
