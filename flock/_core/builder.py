"""The fluent agent builder. Each call replaces the agent's immutable :class:`AgentSpec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import BaseModel

from . import declaration as checks
from .catalog import Catalog
from .clock import MAX_DELAY
from .errors import ConfigurationError
from .spec import (
    AgentSpec,
    BatchSpec,
    HumanSpec,
    JoinSpec,
    OutputDecl,
    OutputGroup,
    ScheduleSpec,
    Subscription,
)
from .types import require_model
from .visibility import _Base as _VisibilityBase


def _str_set(value: str | Iterable[str] | None, what: str, agent: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = {value} if isinstance(value, str) else set(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigurationError(f"agent {agent!r}: {what} must be a non-empty string or set of strings")
    return frozenset(items)


def _fan_out(value: int | tuple[int, int] | None, agent: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigurationError(f"agent {agent!r}: fan_out={value} must be >= 1 (or a (lo, hi) range)")
        return (value, value)
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        lo, hi = value
        if lo < 0 or hi < 1 or lo > hi:
            raise ConfigurationError(
                f"agent {agent!r}: fan_out=({lo}, {hi}) is impossible: need 0 <= lo <= hi and hi >= 1"
            )
        return (lo, hi)
    raise ConfigurationError(f"agent {agent!r}: fan_out must be an int or a (lo, hi) tuple, got {value!r}")


def _validators(value: Any, agent: str) -> tuple[tuple[Callable[[Any], bool], str | None], ...]:
    if value is None:
        return ()
    items = [value] if callable(value) or (isinstance(value, tuple) and len(value) == 2) else list(value)
    out: list[tuple[Callable[[Any], bool], str | None]] = []
    for item in items:
        if callable(item):
            out.append((item, None))
        elif isinstance(item, tuple) and len(item) == 2 and callable(item[0]):
            out.append((item[0], str(item[1])))
        else:
            raise ConfigurationError(
                f"agent {agent!r}: validate= takes callables or (callable, message) pairs, got {item!r}"
            )
    return tuple(out)


_HOOKS = (
    "on_initialize",
    "on_pre_consume",
    "on_pre_evaluate",
    "on_post_evaluate",
    "on_post_publish",
    "on_error",
    "on_terminate",
)


class AgentBuilder:
    """Declares one agent. Every method returns the builder, so calls chain::

        flock.agent("writer").description("...").consumes(Idea).publishes(Movie)

    ``builder.spec`` is the current immutable :class:`AgentSpec`.
    """

    def __init__(self, catalog: Catalog, name: str) -> None:
        self._catalog = catalog
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def spec(self) -> AgentSpec:
        """The agent's current specification (a frozen value)."""
        return self._catalog.spec(self._name)

    def _update(self, **changes: Any) -> AgentBuilder:
        spec = dataclasses.replace(self.spec, **changes)
        checks.check_spec(spec)  # mistakes that only show when two builder calls meet
        self._catalog.replace(spec)
        return self

    def _models(self, types: Sequence[Any], where: str) -> tuple[type[BaseModel], ...]:
        if not types:
            raise ConfigurationError(f"agent {self._name!r}: {where}() needs at least one type")
        return tuple(require_model(t, f"agent {self._name!r} {where}()") for t in types)

    def description(self, text: str) -> AgentBuilder:
        """What the agent does, in plain words (engines use it as instructions)."""
        if not isinstance(text, str):
            raise ConfigurationError(f"agent {self._name!r}: description must be a string")
        return self._update(description=text)

    def consumes(
        self,
        *types: type[BaseModel],
        where: Callable[[Any], bool]
        | Sequence[Callable[[Any], bool]]
        | Mapping[type[BaseModel], Callable[[Any], bool]]
        | None = None,
        from_agents: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        join: JoinSpec | None = None,
        batch: BatchSpec | None = None,
        activation: Any = None,
    ) -> AgentBuilder:
        """Subscribe to artifact types.

        Several types in one call are an AND gate (one activation gets one of each); a repeated
        type is a count gate (``consumes(A, A)`` waits for two A's). Several calls are OR.
        ``where`` predicates (plain sync functions) receive the artifact's model and must all hold;
        on a gate of several types give them per type, ``where={Triage: lambda t: t.urgent}``:
        each applies to members of its type only. ``tags`` match artifacts that carry any of
        them; ``from_agents`` restricts producers.

        Raises:
            ConfigurationError: a non-model type, a plain ``where=`` on a gate of several types, a
                predicate that is async or does not take one argument, or a ``calls()`` function
                that cannot take the models this subscription delivers.
        """
        models = self._models(types, "consumes")
        names = tuple(self._catalog.types.register(m) for m in models)
        preds = checks.where_predicates(where, models, self._name)
        if batch is not None and not isinstance(batch, BatchSpec):
            raise ConfigurationError(f"agent {self._name!r}: batch= takes a BatchSpec(size=..., timeout=...)")
        if join is not None and not isinstance(join, JoinSpec):
            raise ConfigurationError(f"agent {self._name!r}: join= takes a JoinSpec(by=..., within=...)")
        if join is not None and batch is not None:
            raise ConfigurationError(f"agent {self._name!r}: use join= or batch= in one consumes(), not both")
        if activation is not None and not callable(getattr(activation, "evaluate", None)):
            raise ConfigurationError(
                f"agent {self._name!r}: activation= takes a condition such as "
                "When.correlation(T).count_at_least(n)"
            )
        if join is not None:
            checks.check_join_by(join, models, self._name)
        sub = Subscription(
            index=len(self.spec.subscriptions),
            types=models,
            type_names=names,
            where=preds,
            from_agents=_str_set(from_agents, "from_agents", self._name),
            tags=_str_set(tags, "tags", self._name),
            join=join,
            batch=batch,
            activation=activation,
        )
        return self._update(subscriptions=(*self.spec.subscriptions, sub))

    def publishes(
        self,
        *types: type[BaseModel],
        fan_out: int | tuple[int, int] | None = None,
        where: Callable[[Any], bool] | None = None,
        validate: Any = None,
        visibility: Any = None,
        description: str | None = None,
    ) -> AgentBuilder:
        """Declare one output group: the outputs one engine call produces together.

        ``fan_out=N`` asks for exactly N artifacts of each type, ``fan_out=(lo, hi)`` for a range.
        ``where`` filters outputs after the contract holds; ``validate`` callables (or
        ``(callable, message)`` pairs) must return True or the group fails. ``visibility`` is a
        visibility or a callable ``model -> visibility``; without it an output is as restricted as
        the most restrictive of its inputs.
        """
        models = self._models(types, "publishes")
        if len(set(models)) != len(models):
            raise ConfigurationError(
                f"agent {self._name!r}: publishes() lists a type twice; use fan_out=N for several of one type"
            )
        call = f"publishes({', '.join(m.__name__ for m in models)})"
        single = models[0] if len(models) == 1 else None
        if where is not None:
            checks.check_one_arg(where, self._name, f"{call} where=", single)
            where = checks.Checked(where, f"agent {self._name!r}: {call} where=")
        if visibility is not None and not (isinstance(visibility, _VisibilityBase) or callable(visibility)):
            raise ConfigurationError(
                f"agent {self._name!r}: visibility= takes a visibility such as "
                "PrivateVisibility(agents={...}) "
                "or a callable returning one"
            )
        span = _fan_out(fan_out, self._name)
        validators = _validators(validate, self._name)
        for check, _ in validators:
            checks.check_one_arg(check, self._name, f"{call} validate=", single)
        validators = tuple(
            (checks.Checked(f, f"agent {self._name!r}: {call} validate="), message)
            for f, message in validators
        )
        decls = tuple(
            OutputDecl(
                type=m,
                type_name=self._catalog.types.register(m),
                fan_out=span,
                where=where,
                validate=validators,
                visibility=visibility,
                description=description,
            )
            for m in models
        )
        group = OutputGroup(index=len(self.spec.output_groups), outputs=decls, description=description)
        return self._update(output_groups=(*self.spec.output_groups, group))

    def human(
        self, prompt: str = "", *, timeout: timedelta | float | None = None, default: Any = None
    ) -> AgentBuilder:
        """A person answers for this agent: each activation opens a task instead of running an engine.

        The task (a :class:`~flock.HumanTask` artifact) shows ``prompt``, the inputs and the JSON
        schema of the answer; answer it with ``flock.tasks.answer(id, payload)``, ``POST /tasks/{id}``
        or ``flock tasks answer``. The answer is validated against the declared output type and
        published as this agent's output. ``timeout`` (seconds or a timedelta) sets a deadline: an
        unanswered task then publishes ``default`` (an instance of the output type, a list of them
        for several types or fan-out, or an answer payload), or, without one, a
        :class:`~flock.WorkflowError` of kind ``"timeout"``. The agent takes one ``publishes(...)``
        call and no engine::

            flock.agent("reviewer").consumes(Draft).publishes(Approval).human(
                prompt="Approve this draft?", timeout=3600, default=Approval(ok=False)
            )
        """
        if not isinstance(prompt, str):
            raise ConfigurationError(f"agent {self._name!r}: human(prompt=...) takes a string")
        seconds: float | None = None
        if timeout is not None:
            if isinstance(timeout, timedelta):
                seconds = timeout.total_seconds()
            elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
                seconds = float(timeout)
            if seconds is None or not seconds > 0 or seconds == float("inf"):
                raise ConfigurationError(
                    f"agent {self._name!r}: human(timeout=...) takes positive seconds or a timedelta, "
                    f"got {timeout!r}"
                )
            if seconds > MAX_DELAY.total_seconds():  # every task's deadline would overflow the calendar
                raise ConfigurationError(
                    f"agent {self._name!r}: human(timeout=...) must be at most 100 years, got {timeout!r}"
                )
        return self._update(human=HumanSpec(prompt=prompt, timeout=seconds, default=default))

    def with_history(self, turns: int = 10) -> AgentBuilder:
        """Show the LLM engine this agent's earlier turns of the same workflow (correlation id).

        A turn is an earlier activation's inputs and outputs; the newest ``turns`` of them go into
        DSPy's ``History`` field. They are read from the board through the agent's context (what it
        may see of the workflow, bounded by the context provider), so they survive a restart with a
        durable store.
        """
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 1:
            raise ConfigurationError(
                f"agent {self._name!r}: with_history(turns=...) takes an int >= 1, got {turns!r}"
            )
        return self._update(extra={**self.spec.extra, "history_turns": turns})

    def prompt_version(self, label: str) -> AgentBuilder:
        """Label this agent's prompt: its outputs carry ``prompt_version=label`` instead of a hash."""
        if not isinstance(label, str) or not label.strip():
            raise ConfigurationError(f"agent {self._name!r}: prompt_version() takes a non-empty label")
        return self._update(extra={**self.spec.extra, "prompt_version": label})

    def with_engines(self, *engines: Any) -> AgentBuilder:
        """Engines that produce the outputs.

        Several engines chain: each one's outputs are the next one's inputs.
        """
        for e in engines:
            if isinstance(e, type) or not callable(getattr(e, "evaluate", None)):
                raise ConfigurationError(
                    f"agent {self._name!r}: with_engines() takes EngineComponent instances, got {e!r}"
                    + (f"; pass an instance: {e.__name__}()" if isinstance(e, type) else "")
                )
        for e in engines:
            # An engine whose parameters read runtime variables (Var) registers them, so a wrong
            # value fails at flock.variables.set() instead of in an activation.
            bind = getattr(e, "bind_variables", None)
            if callable(bind):
                bind(self._catalog.variables, f"agent {self._name!r}")
        return self._update(engines=tuple(engines))

    def calls(self, func: Callable[..., Any]) -> AgentBuilder:
        """Use a plain Python function as the engine (see :class:`~flock.FunctionEngine`)."""
        from .function_engine import FunctionEngine

        if not callable(func):
            raise ConfigurationError(
                f"agent {self._name!r}: calls() takes a function (sync or async), got {func!r}"
            )
        return self.with_engines(FunctionEngine(func))

    def with_tools(self, funcs: Iterable[Callable[..., Any]]) -> AgentBuilder:
        """Functions (sync or async) the engine may call, e.g. in a ReAct loop."""
        tools = tuple([funcs] if callable(funcs) else funcs)
        if not all(callable(f) for f in tools):
            raise ConfigurationError(f"agent {self._name!r}: with_tools() takes a list of functions")
        return self._update(tools=(*self.spec.tools, *tools))

    def with_mcp(self, server: Any, allow: str | Iterable[str] | None = None) -> AgentBuilder:
        """Give the agent the tools of an MCP server (needs ``pip install 'flock[mcp]'``).

        ``server`` is a command that speaks MCP on stdin/stdout (a string, split like a shell
        would, or a list), an ``http(s)://`` URL of a streamable HTTP endpoint, or an
        :class:`~flock.MCPServer` (for ``env=``, ``headers=``, ``timeout=``). ``allow`` names the
        tools the agent gets (the others stay hidden); a name the server does not offer is a
        :class:`ConfigurationError` when the tools are first listed. Call it again to add servers.

        The Flock connects when an activation first needs the tools, shares one session per
        server among its agents, and closes it in ``shutdown()``. See docs/mcp.md::

            flock.agent("clerk").consumes(Question).publishes(Answer).with_mcp(
                "python tools_server.py", allow=["lookup"]
            )
        """
        from .._mcp.toolset import MCPTools

        return self._update(toolsets=(*self.spec.toolsets, MCPTools.of(server, allow, self._name)))

    def with_utilities(self, *components: Any) -> AgentBuilder:
        """Attach :class:`~flock.AgentComponent` hooks."""
        for c in components:
            missing = [h for h in _HOOKS if not callable(getattr(c, h, None))]
            if isinstance(c, type) or missing:
                raise ConfigurationError(
                    f"agent {self._name!r}: with_utilities() takes AgentComponent instances, got {c!r}"
                    + (
                        f"; pass an instance: {c.__name__}()"
                        if isinstance(c, type)
                        else "; subclass flock.AgentComponent and override the hooks you need"
                    )
                )
        return self._update(utilities=(*self.spec.utilities, *components))

    def with_context(self, provider: Any) -> AgentBuilder:
        """Replace the default context (visible artifacts of the same workflow) with ``provider``."""
        if not callable(provider):
            raise ConfigurationError(
                f"agent {self._name!r}: with_context() takes a callable provider(request) -> list[Artifact]"
            )
        return self._update(context_provider=provider)

    def max_concurrency(self, n: int) -> AgentBuilder:
        """At most ``n`` activations of this agent at once (default 32, the same as the Flock-wide
        default: lower it for an agent whose provider limits concurrent calls or whose work is heavy)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"agent {self._name!r}: max_concurrency must be an int >= 1, got {n!r}")
        return self._update(max_concurrency=n)

    def prevent_self_trigger(self, enabled: bool = True) -> AgentBuilder:
        """Whether the agent ignores its own outputs (default: it does)."""
        return self._update(prevent_self_trigger=bool(enabled))

    def labels(self, *labels: str) -> AgentBuilder:
        """Labels for ``LabelledVisibility``."""
        found = _str_set(labels, "labels", self._name) if labels else frozenset()
        return self._update(labels=self.spec.labels | (found or frozenset()))

    def tenant(self, tenant_id: str) -> AgentBuilder:
        """The agent's tenant for ``TenantVisibility`` and ``PrivateVisibility``."""
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ConfigurationError(f"agent {self._name!r}: tenant() needs a non-empty string")
        return self._update(tenant_id=tenant_id)

    def best_of(self, n: int, score: Callable[[Any], float]) -> AgentBuilder:
        """Evaluate each output group ``n`` times and keep the result with the highest ``score(result)``."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"agent {self._name!r}: best_of n must be an int >= 1, got {n!r}")
        if not callable(score) or checks.is_async(score):
            raise ConfigurationError(
                f"agent {self._name!r}: best_of score must be a plain (sync) callable(EvalResult) -> float"
            )
        return self._update(best_of=(n, score))

    def schedule(
        self,
        *,
        every: timedelta | float | None = None,
        at: time | datetime | None = None,
        cron: str | None = None,
        after: timedelta | float | None = None,
        max_repeats: int | None = None,
    ) -> AgentBuilder:
        """Run the agent on a schedule, with no input artifact; it gets ``ctx.tick`` instead.

        ``every`` repeats (a timedelta or seconds); ``at`` is a daily ``time`` or one ``datetime``;
        ``cron`` a five-field expression (validated now); ``after`` delays the first run;
        ``max_repeats`` caps the runs. Scheduled runs happen while the Flock runs
        (``run_until(..., timeout=...)``); they never keep ``run_until_idle`` from returning and stop
        with ``shutdown()``.
        """
        from .cron import Cron

        def span(value: timedelta | float | None, what: str) -> timedelta | None:
            if value is None:
                return None
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:  # not NaN
                if value > MAX_DELAY.total_seconds():
                    raise ConfigurationError(
                        f"agent {self._name!r}: schedule({what}=...) must be at most 100 years, got {value!r}"
                    )
                value = timedelta(seconds=value)
            if not isinstance(value, timedelta) or value < timedelta(0) or (what == "every" and not value):
                raise ConfigurationError(
                    f"agent {self._name!r}: schedule({what}=...) must be a positive timedelta"
                )
            if value > MAX_DELAY:
                raise ConfigurationError(
                    f"agent {self._name!r}: schedule({what}=...) must be at most 100 years, got {value}"
                )
            return value

        if sum(x is not None for x in (every, at, cron)) > 1:
            raise ConfigurationError(f"agent {self._name!r}: schedule() takes one of every=, at= or cron=")
        if every is None and at is None and cron is None and after is None:
            raise ConfigurationError(
                f"agent {self._name!r}: schedule() needs every=, at=, cron= or after=: schedule(every=60)"
            )
        if at is not None and not isinstance(at, time | datetime):
            raise ConfigurationError(
                f"agent {self._name!r}: schedule(at=...) takes a datetime.time or datetime"
            )
        if isinstance(at, datetime) and at.tzinfo is None:
            raise ConfigurationError(
                f"agent {self._name!r}: schedule(at=...) needs a timezone-aware datetime"
            )
        if max_repeats is not None and (not isinstance(max_repeats, int) or max_repeats < 1):
            raise ConfigurationError(f"agent {self._name!r}: max_repeats must be an int >= 1")
        spec = ScheduleSpec(
            every=span(every, "every"),
            at=at,
            cron=Cron.parse(cron) if cron is not None else None,
            after=span(after, "after"),
            max_repeats=max_repeats,
        )
        return self._update(schedule=spec)

    def __repr__(self) -> str:
        return f"AgentBuilder({self._name!r})"
