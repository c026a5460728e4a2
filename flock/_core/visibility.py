"""Who may see an artifact. Every rule fails closed.

A visibility answers one question, ``allows(identity, now=..., published_at=...)``, for an
:class:`AgentIdentity`. The scheduler asks it before waking an agent and the context builder asks it
before showing an artifact to an engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .clock import MAX_DELAY
from .errors import VisibilityError

_TIMEDELTA: TypeAdapter[timedelta] = TypeAdapter(timedelta)


class AgentIdentity(BaseModel):
    """What visibility rules know about an agent: its name, labels and tenant."""

    model_config = ConfigDict(frozen=True)

    name: str
    labels: frozenset[str] = frozenset()
    tenant_id: str | None = None


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True)

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        raise NotImplementedError

    def available_at(self, published_at: datetime) -> datetime:
        """When the artifact first becomes visible to anyone (later only for ``AfterVisibility``)."""
        return published_at


class PublicVisibility(_Base):
    """Everyone may see the artifact."""

    kind: Literal["public"] = "public"

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        return True


class PrivateVisibility(_Base):
    """Only the named agents may see the artifact (and, when ``tenant_id`` is set, only in that tenant).

    ::

        await flock.publish(Memo(text="salaries"), visibility=PrivateVisibility(agents={"payroll"}))
    """

    kind: Literal["private"] = "private"
    agents: frozenset[str]
    tenant_id: str | None = None

    def __init__(self, **data: Any) -> None:
        agents = data.get("agents")
        if isinstance(agents, str):
            data["agents"] = agents = {agents}
        if not agents:
            raise VisibilityError(
                "PrivateVisibility needs at least one agent name: PrivateVisibility(agents={'reviewer'})"
            )
        super().__init__(**data)

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        if identity.name not in self.agents:
            return False
        return self.tenant_id is None or identity.tenant_id == self.tenant_id


class TenantVisibility(_Base):
    """Only agents of one tenant may see the artifact. A tenant id is required.

    ::

        flock.agent("acme_support").tenant("acme").consumes(Ticket)
        await flock.publish(Ticket(text="..."), visibility=TenantVisibility(tenant_id="acme"))
    """

    kind: Literal["tenant"] = "tenant"
    tenant_id: str

    def __init__(self, **data: Any) -> None:
        tenant = data.get("tenant_id")
        if not isinstance(tenant, str) or not tenant.strip():
            raise VisibilityError(
                f"TenantVisibility needs a non-empty tenant_id (got {tenant!r}); an artifact without a "
                "tenant would be visible to every tenant. Use TenantVisibility(tenant_id='acme')"
            )
        super().__init__(**data)

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        return identity.tenant_id == self.tenant_id


class LabelledVisibility(_Base):
    """Only agents that carry every one of ``required_labels`` may see the artifact.

    ::

        flock.agent("auditor").labels("finance", "audit").consumes(Invoice)
        visibility = LabelledVisibility(required_labels={"finance"})
    """

    kind: Literal["labelled"] = "labelled"
    required_labels: frozenset[str]

    def __init__(self, **data: Any) -> None:
        labels = data.get("required_labels")
        if isinstance(labels, str):
            data["required_labels"] = labels = {labels}
        if not labels:
            raise VisibilityError(
                "LabelledVisibility needs at least one label; an empty set would make the artifact public. "
                "Use LabelledVisibility(required_labels={'finance'})"
            )
        super().__init__(**data)

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        return self.required_labels <= identity.labels


class AfterVisibility(_Base):
    """Invisible until ``ttl`` has passed since publication, then governed by ``then`` (public).

    ::

        embargo = AfterVisibility(ttl=timedelta(hours=1), then=TenantVisibility(tenant_id="acme"))
    """

    kind: Literal["after"] = "after"
    ttl: timedelta
    then: Visibility = Field(default_factory=PublicVisibility)

    def __init__(self, **data: Any) -> None:
        ttl = data.get("ttl")
        if isinstance(ttl, str):  # the JSON form, an ISO 8601 duration: loading a stored artifact
            with contextlib.suppress(ValidationError):  # not a duration: refused just below
                data["ttl"] = ttl = _TIMEDELTA.validate_python(ttl)
        too_long = (
            f"AfterVisibility needs a ttl of at most 100 years, got {ttl!r}: its end would lie past the "
            "calendar's, and no visibility check could be made; choose a shorter delay"
        )
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl >= 0:  # not NaN
            if ttl > MAX_DELAY.total_seconds():
                raise VisibilityError(too_long)
            data["ttl"] = ttl = timedelta(seconds=ttl)
        if not isinstance(ttl, timedelta) or ttl < timedelta(0):
            raise VisibilityError(f"AfterVisibility needs a ttl >= 0 (a timedelta or seconds), got {ttl!r}")
        if ttl > MAX_DELAY:
            raise VisibilityError(too_long)
        super().__init__(**data)

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        if now < published_at + self.ttl:
            return False
        return self.then.allows(identity, now=now, published_at=published_at)

    def available_at(self, published_at: datetime) -> datetime:
        return self.then.available_at(published_at + self.ttl)


class AllOfVisibility(_Base):
    """Visible only to identities that every part allows. Used when inputs of differing visibility
    produce one output: the output is as restricted as all its inputs together."""

    kind: Literal["all_of"] = "all_of"
    parts: tuple[Visibility, ...]

    def allows(self, identity: AgentIdentity, *, now: datetime, published_at: datetime) -> bool:
        return all(p.allows(identity, now=now, published_at=published_at) for p in self.parts)

    def available_at(self, published_at: datetime) -> datetime:
        return max(p.available_at(published_at) for p in self.parts)


Visibility = Annotated[
    PublicVisibility
    | PrivateVisibility
    | TenantVisibility
    | LabelledVisibility
    | AfterVisibility
    | AllOfVisibility,
    Field(discriminator="kind"),
]
AfterVisibility.model_rebuild()
AllOfVisibility.model_rebuild()

PUBLIC = PublicVisibility()


def most_restrictive(visibilities: Iterable[Visibility]) -> Visibility:
    """The visibility of an output made from inputs with these visibilities.

    Public inputs add no restriction; a delay (``AfterVisibility``) has already passed once the
    input could be consumed, so its ``then`` rule carries over. Several distinct restrictions combine
    into an :class:`AllOfVisibility`.
    """
    parts: list[Visibility] = []
    for vis in visibilities:
        while isinstance(vis, AfterVisibility):
            vis = vis.then
        flat = vis.parts if isinstance(vis, AllOfVisibility) else (vis,)
        for part in flat:
            if not isinstance(part, PublicVisibility) and part not in parts:
                parts.append(part)
    if not parts:
        return PUBLIC
    if len(parts) == 1:
        return parts[0]
    return AllOfVisibility(parts=tuple(parts))


def narrowed(declared: Visibility, shown: Visibility) -> Visibility:
    """``shown`` further limited by a ``declared`` visibility (``publishes(visibility=...)``), never
    widened. A declared delay is kept: the output stays hidden for its ``ttl``, then ``shown`` and
    the declared ``then`` rule apply together."""
    ttl = timedelta(0)
    while isinstance(declared, AfterVisibility):
        ttl += declared.ttl
        declared = declared.then
    combined = most_restrictive((declared, shown))
    return AfterVisibility(ttl=ttl, then=combined) if ttl > timedelta(0) else combined


def within_tenant(visibility: Visibility, tenant_id: str | None) -> Visibility:
    """``visibility``, further limited to ``tenant_id`` unless it already is."""
    if tenant_id is None:
        return visibility
    if isinstance(visibility, AfterVisibility):  # the delay stays, the tenant limits what follows
        return AfterVisibility(ttl=visibility.ttl, then=within_tenant(visibility.then, tenant_id))
    parts = visibility.parts if isinstance(visibility, AllOfVisibility) else (visibility,)
    for part in parts:
        if isinstance(part, TenantVisibility) and part.tenant_id == tenant_id:
            return visibility
    if isinstance(visibility, PrivateVisibility) and visibility.tenant_id is None:
        return PrivateVisibility(agents=visibility.agents, tenant_id=tenant_id)
    if isinstance(visibility, PrivateVisibility) and visibility.tenant_id == tenant_id:
        return visibility
    return most_restrictive((visibility, TenantVisibility(tenant_id=tenant_id)))
