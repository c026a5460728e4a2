"""Context providers: which other artifacts an engine may look at.

The default shows an agent the artifacts of its own workflow (correlation id) that it is allowed to
see, newest last, at most ``limit`` of them. Visibility is enforced again on whatever a provider
returns, so a custom provider cannot leak what the agent may not see.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._artifact import Artifact
from ._spec import AgentSpec
from ._store import FilterConfig
from ._visibility import AgentIdentity


@dataclass(frozen=True)
class ContextRequest:
    """What a context provider is told about the activation it serves."""

    agent: AgentSpec
    identity: AgentIdentity
    correlation_id: str
    inputs: tuple[Artifact, ...]
    store: Any


class CorrelationContext:
    """The default provider: visible artifacts of the same correlation id, inputs excluded."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit

    async def __call__(self, request: ContextRequest) -> list[Artifact]:
        if self.limit <= 0:
            return []
        items, _ = await request.store.query_artifacts(
            FilterConfig(correlation_id=request.correlation_id, visible_to=request.identity),
            limit=1_000_000,
        )
        inputs = {a.id for a in request.inputs}
        return [a for a in items if a.id not in inputs][-self.limit :]


class NoContext:
    """A provider that shows nothing besides the inputs."""

    async def __call__(self, request: ContextRequest) -> list[Artifact]:
        return []


async def call_provider(provider: Any, request: ContextRequest) -> Sequence[Artifact]:
    value = provider(request)
    if inspect.isawaitable(value):
        value = await value
    return list(value or ())
