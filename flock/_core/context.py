"""Context providers: which other artifacts an engine may look at.

The default shows an agent the artifacts of its own workflow (correlation id) that it is allowed to
see, newest last, at most ``limit`` of them. Visibility is enforced again on whatever a provider
returns, so a custom provider cannot leak what the agent may not see.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._stores.store import FilterConfig
from .artifact import Artifact, utcnow
from .spec import AgentSpec
from .visibility import AgentIdentity


@dataclass(frozen=True)
class ContextRequest:
    """What a context provider is told about the activation it serves."""

    agent: AgentSpec
    identity: AgentIdentity
    correlation_id: str
    inputs: tuple[Artifact, ...]
    store: Any
    now: datetime = field(default_factory=utcnow)


class CorrelationContext:
    """The default provider: visible artifacts of the same correlation id, inputs excluded."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit

    async def __call__(self, request: ContextRequest) -> list[Artifact]:
        if self.limit <= 0:
            return []
        # Read the workflow backwards in growing pages and stop once ``limit`` are found: each
        # activation then costs O(limit), not O(size of the workflow), which would make a long
        # workflow quadratic. Visibility is checked here rather than in the store so that the
        # store's correlation index answers the page directly. A workflow that fits in the first
        # window (the common case) takes one query.
        store, identity = request.store, request.identity
        inputs = {a.id for a in request.inputs}
        scope = FilterConfig(correlation_id=request.correlation_id)
        now = request.now
        newest_first: list[Artifact] = []
        window = self.limit + len(inputs)
        first, end = await store.query_artifacts(scope, limit=window)
        page: list[Artifact] | None = first if end <= window else None  # else: the oldest, not needed
        while True:
            start = max(0, end - window)
            if page is None:
                page, _ = await store.query_artifacts(scope, limit=end - start, offset=start)
            for a in reversed(page):
                if a.id not in inputs and a.visibility.allows(identity, now=now, published_at=a.created_at):
                    newest_first.append(a)
                    if len(newest_first) == self.limit:
                        break
            if start == 0 or len(newest_first) == self.limit:
                break
            end, window, page = start, window * 2, None
        newest_first.reverse()
        return newest_first


class NoContext:
    """A provider that shows nothing besides the inputs."""

    async def __call__(self, request: ContextRequest) -> list[Artifact]:
        return []


async def call_provider(provider: Any, request: ContextRequest) -> Sequence[Artifact]:
    value = provider(request)
    if inspect.isawaitable(value):
        value = await value
    return list(value or ())
