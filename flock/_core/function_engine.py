"""A pure-Python engine: agents that need no language model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .components import Context, EngineComponent, EvalInputs, EvalResult, as_eval_result
from .spec import AgentSpec, OutputGroup


class FunctionEngine(EngineComponent):
    """Run a plain function (sync or async) as the agent's engine.

    The function receives the input models positionally, in order (one for a simple subscription,
    one per collected artifact for gates and batches). It may also declare keyword parameters
    named ``ctx`` (the :class:`Context`), ``inputs`` (the :class:`EvalInputs`) or ``group`` (the
    :class:`OutputGroup` being produced, useful with several ``publishes()`` calls). It returns a
    model, a list of models, an :class:`EvalResult`, or ``None``::

        def summarize(task: Task) -> Summary:
            return Summary(text=task.text[:100])

        flock.agent("summarizer").consumes(Task).publishes(Summary).calls(summarize)

    Sync functions run on the event loop: keep them quick, or make them ``async``.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            from .errors import ConfigurationError

            raise ConfigurationError(f"FunctionEngine needs a callable, got {func!r}")
        self.func = func
        self.name = getattr(func, "__name__", type(func).__name__)
        params = inspect.signature(func).parameters
        self._extras = {k for k in ("ctx", "inputs", "group") if k in params}
        self.needs_context = "ctx" in self._extras
        self._is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - callable objects with async __call__
        )

    async def evaluate(
        self, agent: AgentSpec, ctx: Context, inputs: EvalInputs, output_group: OutputGroup
    ) -> EvalResult:
        extras = {"ctx": ctx, "inputs": inputs, "group": output_group}
        kwargs = {k: extras[k] for k in self._extras}
        value = self.func(*inputs.models, **kwargs)
        if self._is_async or inspect.isawaitable(value):
            value = await value
        return as_eval_result(value)

    def __repr__(self) -> str:
        return f"FunctionEngine({self.name})"
