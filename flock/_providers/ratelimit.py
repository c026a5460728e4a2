"""Client-side rate limits: calls wait for capacity instead of failing.

:class:`RateLimit` is the configuration (a value passed as ``Flock(limits=[...])``).
:class:`ModelLimiter` is the state for one model in one Flock (kept in ``ModelSettings.shared``, so
every agent of the Flock that calls the model shares it).

Each limit is a bucket in the style of the generic cell rate algorithm: a bucket keeps the time at
which it will have paid off every call admitted so far; a call's cost (one request, or its estimated
tokens) pushes that time forward by ``cost / rate``. A call *reserves* its start time synchronously,
in arrival order, and then sleeps until then: waiting callers are served first come, first served,
with no lock and no polling. Token costs are estimated before the call and corrected after it. A 429's
``Retry-After`` (and ``x-ratelimit-*`` headers when the provider sends them) pause every caller of
the model until the provider is ready again.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from .._core.errors import ConfigurationError

BURST_SECONDS = 1.0  # a bucket admits at most about one second's worth of calls at once


@dataclass(frozen=True)
class RateLimit:
    """Limits for the models whose names match ``model_pattern`` (``fnmatch`` style: ``"openai/*"``).

    Each matching model gets its own buckets; every agent of the Flock using that model shares them.
    A call waits until every bucket has room (it never fails because of a local limit).

    Args:
        model_pattern: a model name (``"openai/gpt-4.1"``) or a pattern (``"openai/*"``).
        requests_per_minute: calls started per minute.
        tokens_per_minute: input plus output tokens per minute (estimated before a call, corrected
            after it with the usage the provider reports).
        max_in_flight: calls running at the same time.

    Example::

        Flock("openai/gpt-4.1", limits=[RateLimit("openai/*", requests_per_minute=500,
                                                  tokens_per_minute=200_000, max_in_flight=32)])
    """

    model_pattern: str
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model_pattern, str) or not self.model_pattern:
            raise ConfigurationError(
                f"RateLimit(model_pattern=...) must be a model name, got {self.model_pattern!r}"
            )
        for label in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, label)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0  # NaN too
            ):
                raise ConfigurationError(
                    f"RateLimit({label}=...) must be a number > 0 or None, got {value!r}"
                )
        if self.max_in_flight is not None and (
            isinstance(self.max_in_flight, bool)
            or not isinstance(self.max_in_flight, int)
            or self.max_in_flight < 1
        ):
            raise ConfigurationError(
                f"RateLimit(max_in_flight=...) must be an int >= 1 or None, got {self.max_in_flight!r}"
            )

    def matches(self, model: str) -> bool:
        """Does this limit apply to ``model``?"""
        return model == self.model_pattern or fnmatch.fnmatchcase(model, self.model_pattern)


class _Bucket:
    """A rate in units per second; ``tat`` is when the admitted calls are paid off."""

    __slots__ = ("rate", "tat")

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.tat = 0.0

    def reserve(self, cost: float, now: float) -> float:
        """Admit a call of ``cost``: the time it may start (now or later)."""
        start = max(now, self.tat - BURST_SECONDS)
        self.tat = max(self.tat, start) + cost / self.rate
        return start

    def adjust(self, delta: float) -> None:
        self.tat += delta / self.rate


class _Slots:
    """At most ``size`` holders; waiters are served in arrival order."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.active = 0
        self._waiters: deque[anyio.Event] = deque()

    async def enter(self) -> bool:
        """Take a slot; ``True`` if the caller had to wait."""
        if self.active < self.size and not self._waiters:
            self.active += 1
            return False
        event = anyio.Event()  # made in the running loop: a Flock may run in several loops over time
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event in self._waiters:
                self._waiters.remove(event)
            else:  # the slot was handed over just as the caller was cancelled: pass it on
                self.leave()
            raise
        return True

    def leave(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot goes straight to the next waiter
        else:
            self.active -= 1


class ModelLimiter:
    """The buckets of one model in one Flock (see the module docstring)."""

    def __init__(
        self, model: str, limits: Sequence[RateLimit], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model = model
        mine = [limit for limit in limits if limit.matches(model)]
        self.requests = [_Bucket(x.requests_per_minute) for x in mine if x.requests_per_minute]
        self.tokens = [_Bucket(x.tokens_per_minute) for x in mine if x.tokens_per_minute]
        in_flight = [x.max_in_flight for x in mine if x.max_in_flight]
        self.slots = _Slots(min(in_flight)) if in_flight else None
        self.blocked_until = 0.0
        self.learned_rpm: float | None = None
        self._clock = clock

    @property
    def limited(self) -> bool:
        return bool(self.requests or self.tokens or self.slots)

    async def acquire(self, tokens: float) -> float:
        """Wait until the call may start; the seconds waited. Call :meth:`release` after the call."""
        began = self._clock()
        if self.slots is not None:
            await self.slots.enter()
        try:
            now = self._clock()
            start = now
            for bucket in self.requests:
                start = max(start, bucket.reserve(1.0, now))
            for bucket in self.tokens:
                start = max(start, bucket.reserve(tokens, now))
            while True:  # a 429 seen meanwhile may push the start later: look again after each sleep
                wake = max(start, self.blocked_until)
                now = self._clock()
                if now >= wake:
                    break
                await anyio.sleep(wake - now)
        except BaseException:
            if self.slots is not None:
                self.slots.leave()
            raise
        return self._clock() - began

    def release(self, estimated: float, actual: float | None) -> None:
        """The call ended: free its slot and correct its token estimate with the reported usage."""
        if self.slots is not None:
            self.slots.leave()
        if actual is not None and actual != estimated:
            for bucket in self.tokens:
                bucket.adjust(actual - estimated)

    def learn(self, retry_after: float | None, headers: Mapping[str, str]) -> None:
        """Pause every caller as the provider asked (``Retry-After``, exhausted ``x-ratelimit-*``)."""
        now = self._clock()
        pause = retry_after
        for unit in ("requests", "tokens"):
            remaining = _number(headers.get(f"x-ratelimit-remaining-{unit}"))
            reset = _duration(headers.get(f"x-ratelimit-reset-{unit}"))
            if remaining is not None and remaining <= 0 and reset is not None:
                pause = max(pause or 0.0, reset)
        if pause:
            self.blocked_until = max(self.blocked_until, now + pause)
        limit = _number(headers.get("x-ratelimit-limit-requests"))
        if limit and not self.requests:  # the provider told us its limit: keep to it from now on
            self.learned_rpm = limit
            self.requests.append(_Bucket(limit))


def limiter_for(shared: dict[str, Any], limits: Sequence[RateLimit], model: str) -> ModelLimiter:
    """The Flock's limiter for ``model`` (made on first use)."""
    table: dict[str, ModelLimiter] = shared.setdefault("flock.rate_limiters", {})
    found = table.get(model)
    if found is None:
        found = table[model] = ModelLimiter(model, limits)
    return found


def estimate_tokens(messages: Any, prompt: Any, max_tokens: Any) -> float:
    """A call's tokens before it is made: ~4 characters per input token, plus the output allowance."""
    chars = len(prompt) if isinstance(prompt, str) else 0
    for message in messages or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    allowance = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 256
    return float(chars // 4 + allowance)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: str | None) -> float | None:
    """``"1s"``, ``"6m0s"``, ``"20ms"``, ``"0.5"`` -> seconds."""
    if value is None:
        return None
    plain = _number(value)
    if plain is not None:
        return plain
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    if not parts:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)
