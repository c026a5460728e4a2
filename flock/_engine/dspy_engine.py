"""The DSPy engine: one semantic signature per output group, run on a language model, checked.

Per call the engine builds (and caches) the signature for the fired subscription and output group,
runs a DSPy program under ``dspy.context(lm=..., adapter=...)`` on the async path, re-validates every
output with its Pydantic model, enforces the declared counts, and re-asks the model with the
problems (``max_reasks`` times) before giving up with a :class:`~flock.ContractViolation`.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dspy
from pydantic import BaseModel

from .._core.components import Context, EngineComponent, EvalInputs, EvalResult
from .._core.errors import ConfigurationError
from .._core.spec import AgentSpec, OutputGroup
from .._core.types import type_name
from .._live.variables import Var
from .._providers.breaker import CircuitBreaker
from .._providers.engine_guard import check_resilience, finish_evaluation, guarded_evaluation
from .._providers.resilience import CallPolicy, GuardedModels
from . import history as _history
from . import programs as _programs
from . import prompt_versions as _prompt_versions
from . import streaming as _streaming
from .adapters import own_adapter
from .answers import input_models, input_values, scored_output
from .asking import Asking, ask_until_valid
from .call_metrics import CallCounter, call_sink
from .engine_tracing import ModelCalls, TracedModels, capture_content, tracing_on
from .engine_vars import CHECKS, Resolver, named_adapter, plain_copy, record_bound, take_vars
from .lm_factory import make_lm, size_pool
from .model_names import check_model_name
from .offline import OfflineLM, SignatureTap, announce_once, is_offline
from .signature import (
    CONTEXT_FIELD,
    AgentSignature,
    InputShape,
    build_signature,
    shape_from_models,
    shape_from_subscription,
)
from .structured import StructuredCall, adapt, check_mode, form_memory
from .tools import ToolDef, resolve_toolsets, tool_list

logger = logging.getLogger("flock")

PROGRAMS = _programs.BUILTIN
OFFLINE_NOTICE = (
    "flock: using the built-in 'offline' model - deterministic placeholder output, no real LLM is called. "
    "Pass Flock(model=...) or set FLOCK_MODEL to use a real model."
)


class DSPyEngine(EngineComponent):
    """Run an agent's output groups on a language model through DSPy.

    Args:
        model: a model name for ``dspy.LM`` (``"openai/gpt-4.1"``), ``"offline"``, a ``dspy.BaseLM``
            instance (for example :class:`flock.testing.TestModel`), or ``None`` to use the Flock's model.
        instructions: replaces the agent's description at the top of the instructions.
        adapter: a DSPy adapter instance or class, default ``ChatAdapter``. The engine uses its own
            copy, without DSPy's silent retries with ``JSONAdapter`` (in ``ChatAdapter`` and in
            ``TwoStepAdapter``'s extraction step). ``TwoStepAdapter`` may be given as the class: the
            engine's model then also does the extraction.
        program: ``"auto"`` (ReAct when the agent has tools, else Predict), ``"predict"``,
            ``"chain_of_thought"``, ``"react"``, ``"program_of_thought"``, ``"multi_chain_comparison"``,
            ``"best_of_n"``, ``"refine"``, or a name from ``programs``.
        temperature: passed to ``dspy.LM``.
        max_tokens: passed to ``dspy.LM``.
        max_tool_calls: upper bound on ReAct tool-call iterations.
        max_reasks: how often to re-ask the model after a contract violation (default 2: on a
            real 135M model a second re-ask still turned failures into valid outputs, and re-asks
            cost calls only when an answer was wrong; see docs/local-models.md).
        cache: DSPy's response cache, off by default.
        retries: retries on 429, 5xx, timeouts and connection errors (never on other 4xx), with
            exponential backoff that honours ``Retry-After``.
        fallbacks: model names (or ``dspy.BaseLM`` objects) that answer, in order, when the model is
            unavailable (5xx or broken connections after the retries, circuit breaker open), too slow
            (``timeout``) or keeps rate-limiting. Outputs a fallback made carry the tag ``model:<name>``.
        timeout: hard deadline in seconds for one model call as a whole (bytes trickling in do not
            extend it) -> :class:`~flock.ProviderTimeout`; ``None`` for none.
        tool_timeout: deadline in seconds for one tool call -> :class:`~flock.ToolTimeout`, which the
            model sees as the tool's error; ``None`` (default) for none. Sync tools run in a worker
            thread either way; the run's own deadline never waits for one.
        breaker: a :class:`~flock.CircuitBreaker` per model endpoint, shared by the Flock's agents.
        seed: seed of the offline model.
        adapter_fallback: allow DSPy's silent ``JSONAdapter`` retries after a parse failure.
        history: keep DSPy's call history (``dspy.inspect_history()``); off by default, since it
            holds up to 10,000 full prompts in memory and costs CPU on every call. Flock's traces
            record the calls instead.
        lm_kwargs: further keyword arguments for ``dspy.LM`` (``api_base``, ``api_key``, ``timeout``...).
            They are added to the Flock's ``Flock(lm_kwargs=...)``, which every engine inherits;
            a key given here wins over the Flock's.
        reward: for ``best_of_n`` and ``refine``: scores an attempt's validated output (a model, or
            a list of models when the group has several) with a number.
        n: attempts for ``best_of_n``, ``refine`` and ``multi_chain_comparison`` (default 3).
        threshold: ``best_of_n``/``refine`` stop at the first attempt whose reward reaches it.
        interpreter: for ``program_of_thought``: a factory of a DSPy code interpreter (default
            DSPy's ``PythonInterpreter``, which needs Deno).
        programs: programs of your own by name, ``{"mine": factory}`` with ``factory(signature)``
            returning a ``dspy.Module`` (a DSPy module class is one).
        structured_outputs: ``"auto"`` (default) sends the output group's JSON schema as
            ``response_format`` so the provider constrains decoding, in the first form the provider
            accepts (remembered per model); ``"json_schema"`` insists on a schema form; ``"off"``
            never sends one. See ``flock._engine.structured``.

    ``model``, ``instructions``, ``adapter``, ``program``, ``temperature``, ``max_tokens``,
    ``max_tool_calls``, ``max_reasks``, ``cache``, ``retries``, ``seed``, ``adapter_fallback``,
    ``lm_kwargs``, ``n`` and ``threshold`` may be a :class:`~flock.Var`:
    the engine then reads the variable when each activation starts (``flock.variables.set()``
    refuses values the parameter cannot take), and records the values on its span.

    Example::

        agent.with_engines(DSPyEngine("openai/gpt-4.1-mini", adapter=JSONAdapter(), max_reasks=2))
    """

    def __init__(
        self,
        model: str | Any = None,
        *,
        instructions: str | Var | None = None,
        adapter: Any = None,
        program: str | Var = "auto",
        temperature: float | Var | None = None,
        max_tokens: int | Var | None = None,
        max_tool_calls: int | Var = 10,
        max_reasks: int | Var = 2,
        cache: bool | Var = False,
        retries: int | Var = 3,
        seed: int | Var = 0,
        adapter_fallback: bool | Var = False,
        history: bool = False,
        lm_kwargs: dict[str, Any] | Var | None = None,
        reward: Callable[[Any], float] | None = None,
        n: int | Var = 3,
        threshold: float | Var | None = None,
        interpreter: Callable[[], Any] | None = None,
        programs: Mapping[str, Any] | None = None,
        fallbacks: Sequence[str | Any] = (),
        timeout: float | None = 300.0,
        tool_timeout: float | None = None,
        breaker: CircuitBreaker | None = None,
        structured_outputs: str = "auto",
    ) -> None:
        self.reward, self.interpreter = reward, interpreter
        self.programs = _programs.check_registered(programs)
        self._bound: dict[str, Var] = {}
        p = take_vars(
            self._bound, ("", lambda v: True), model=model, instructions=instructions, adapter=adapter,
            program=program, temperature=temperature, max_tokens=max_tokens, max_tool_calls=max_tool_calls,
            max_reasks=max_reasks, cache=cache, retries=retries, seed=seed, adapter_fallback=adapter_fallback,
            lm_kwargs=lm_kwargs, n=n, threshold=threshold,
        )  # fmt: skip
        p["adapter"] = named_adapter(p["adapter"])
        model, program = p["model"], p["program"]
        problem = _programs.program_problem(program, self.programs, reward=reward, interpreter=interpreter)
        if problem:
            raise ConfigurationError(f"DSPyEngine(program={program!r}): {problem}")
        for label in (
            "instructions",
            "temperature",
            "max_tokens",
            "seed",
            "cache",
            "adapter_fallback",
            "lm_kwargs",
        ):
            if not CHECKS[label][1](p[label]):  # as a Var's values are checked at set()
                raise ConfigurationError(
                    f"DSPyEngine({label}=...) takes {CHECKS[label][0]}, got {p[label]!r}"
                )
        for label in ("n", "threshold"):
            if not CHECKS[label][1](p[label]) and not (label == "threshold" and p[label] is None):
                raise ConfigurationError(
                    f"DSPyEngine({label}=...) takes {CHECKS[label][0]}, got {p[label]!r}"
                )
        self.n, self.threshold = p["n"], p["threshold"]
        self._resolver = Resolver(self._bound) if self._bound else None
        for label, value, low in (
            ("max_tool_calls", p["max_tool_calls"], 1),
            ("max_reasks", p["max_reasks"], 0),
            ("retries", p["retries"], 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"DSPyEngine({label}=...) must be an int >= {low}, got {value!r}")
        if model is not None and not isinstance(model, str | dspy.BaseLM):
            raise ConfigurationError(
                f"DSPyEngine(model=...) takes a model name or a dspy.BaseLM, got {type(model).__name__}"
            )
        if isinstance(model, str):
            check_model_name(model, "DSPyEngine(model=...)")
        self.model = model
        self.instructions = p["instructions"]
        self.adapter = p["adapter"]
        self.program = p["program"]
        self.temperature = p["temperature"]
        self.max_tokens = p["max_tokens"]
        self.max_tool_calls = p["max_tool_calls"]
        self.max_reasks = p["max_reasks"]
        self.cache = p["cache"]
        self.retries = p["retries"]
        self.seed = p["seed"]
        self.adapter_fallback = p["adapter_fallback"]
        self.history = history
        self.lm_kwargs = dict(p["lm_kwargs"] or {})
        self.fallbacks, self.timeout, self.tool_timeout, self.breaker = check_resilience(
            fallbacks, timeout, tool_timeout, breaker
        )
        self._guarded = GuardedModels(CallPolicy(self.timeout, self.retries, self.breaker))
        self._own_state: dict[str, Any] = {}  # usage and shared state when called outside a Flock
        self.structured_outputs = check_mode(structured_outputs)
        self._forms: dict[str, Any] = {}  # structured-output forms per model, outside a Flock
        self._schemas: dict[Any, Any] = {}  # output schemas and response formats per signature
        self._lms: dict[tuple[str, int], tuple[Any, dspy.BaseLM]] = {}
        self._adapters: dict[int, Any] = {}
        self._signatures: dict[tuple[Any, ...], AgentSignature] = {}
        self._programs: dict[tuple[Any, ...], dspy.Module] = {}
        self._announced: set[str] = set()
        self._sub_shapes: dict[int, tuple[Any, tuple[InputShape, ...]]] = {}
        self._traced = TracedModels()
        self._bound_values: dict[str, Any] = {}
        self._versions: dict[tuple[Any, ...], Any] = {}
        self._history_sigs: dict[int, AgentSignature] = {}

    def __repr__(self) -> str:
        model = self.model if isinstance(self.model, str | None) else type(self.model).__name__
        return f"DSPyEngine(model={model!r}, program={self.program!r})"

    # ------------------------------------------------------------------ variables
    def bind_variables(self, variables: Any, owner: str) -> None:
        """Register every parameter bound to a :class:`~flock.Var` with ``flock.variables``."""
        for name, var in self._bound.items():
            accepts, check = self._program_check() if name == "program" else CHECKS[name]
            variables.bind(var, parameter=name, owner=f"{owner} (DSPyEngine)", accepts=accepts, check=check)

    def _program_check(self) -> tuple[str, Callable[[Any], bool]]:
        def check(value: Any) -> bool:
            found = _programs.program_problem(
                value, self.programs, reward=self.reward, interpreter=self.interpreter
            )
            return found is None

        return _programs.accepts(self.programs), check

    def resolved_copy(self, values: Mapping[str, Any]) -> DSPyEngine:
        """This engine with ``values`` for its bound parameters: no bindings, caches of its own."""
        values = {k: named_adapter(v) if k == "adapter" else v for k, v in values.items()}
        fresh: dict[str, Callable[[], Any]] = {
            "_bound": dict, "_resolver": lambda: None, "_lms": dict, "_adapters": dict, "_signatures": dict,
            "_programs": dict, "_versions": dict, "_history_sigs": dict, "_announced": set,
            "_sub_shapes": dict,
            "_traced": TracedModels,
        }  # fmt: skip
        made: DSPyEngine = plain_copy(self, values, fresh)
        made._guarded = GuardedModels(CallPolicy(made.timeout, made.retries, made.breaker))  # bound retries
        made._bound_values = dict(values)
        return made

    def for_variables(self, variables: Mapping[str, Any]) -> DSPyEngine:
        """This engine as an activation with runtime variables ``variables`` runs it."""
        if self._resolver is None:
            return self
        checks = {**CHECKS, "program": self._program_check()}
        return self._resolver.engine(self, variables, checks)

    # ------------------------------------------------------------------ evaluate
    async def evaluate(
        self, agent: AgentSpec, ctx: Context, inputs: EvalInputs, output_group: OutputGroup
    ) -> EvalResult:
        """Produce the outputs of ``output_group`` from ``inputs`` (see the module docstring)."""
        async with guarded_evaluation(self, ctx) as scope:
            result = await self._evaluate(agent, ctx, inputs, output_group)
        return finish_evaluation(scope, result)

    async def _evaluate(
        self, agent: AgentSpec, ctx: Context, inputs: EvalInputs, output_group: OutputGroup
    ) -> EvalResult:
        if not output_group.outputs:
            return EvalResult()  # nothing to produce: no model call
        if self._resolver is not None:  # parameters bound to variables: this activation's values
            return await self.for_variables(ctx.variables).evaluate(agent, ctx, inputs, output_group)
        record_bound(self._bound_values)
        flock_settings = ctx.settings
        lm = self.lm_for(
            ctx.model,
            getattr(flock_settings, "lm_kwargs", None),
            concurrency=getattr(flock_settings, "concurrency", 0),
        )
        offline = is_offline(lm)
        if offline:
            self._announce(lm, ctx)
        models = input_models(agent, ctx, inputs)
        shapes = self._shapes(agent, ctx, models)
        turns = _history.turns_of(agent)
        has_context = bool(ctx.artifacts)
        if turns:  # .with_history(): earlier turns of this workflow, read from the context
            # The turns use the data fields' names, which do not depend on a context field.
            plain = self.signature(agent, output_group, shapes, has_context=False)
            earlier, shown = _history.history(agent.name, plain, ctx.artifacts, turns)
            # What the history shows is not repeated as context; no context field when nothing is left.
            has_context = any(a.id not in shown for a in ctx.artifacts)
        sig = self.signature(agent, output_group, shapes, has_context=has_context)
        kind = self._program_kind(agent)
        defs: tuple[ToolDef, ...] = ()
        if kind == "react" and agent.toolsets:  # e.g. an MCP server's tools: listed (connected) now
            defs = await resolve_toolsets(agent, flock_settings.shared if flock_settings else self._own_state)
        if turns:
            sig = self._history_sigs.get(id(sig)) or self._history_sigs.setdefault(
                id(sig), _history.with_history(sig)
            )
        values = input_values(sig, models, ctx)
        if turns:
            values[_history.HISTORY_FIELD] = earlier
            if CONTEXT_FIELD in values:
                values[CONTEXT_FIELD] = [
                    c for a, c in zip(ctx.artifacts, values[CONTEXT_FIELD], strict=True) if a.id not in shown
                ]
        tracker = CallCounter()
        callbacks: list[Any] = [SignatureTap()] if offline else []
        # Every model call is timed (run summary latency, metrics) and, when tracing, spanned.
        calls = ModelCalls(tracker.latest, tracing_on() and capture_content(), call_sink(flock_settings))
        run_lm = self._traced.view(lm)  # the model's own callbacks, not DSPy's wrapper: cheap
        adapter = self._adapter_for(run_lm)
        extraction = getattr(adapter, "extraction_model", run_lm)
        if run_lm is not lm and extraction is not run_lm:
            # An adapter with a model of its own (a TwoStepAdapter instance): its calls need the
            # span callback in the context, around every DSPy call (slower, but every call is seen).
            run_lm = lm
            adapter = self._adapter_for(lm)
            callbacks.append(self._traced.spans)
        run_lm = self._guarded.view([(_name(lm), run_lm), *self._fallback_chain(ctx)])
        # A trace of its own per evaluation: DSPy's process-wide one keeps the inputs of the last
        # 10,000 calls after the Flock is gone (programs that read the trace still see theirs).
        settings: dict[str, Any] = {"lm": run_lm, "adapter": adapter, "usage_tracker": tracker, "trace": []}
        if not self.history:
            settings["disable_history"] = True
        if callbacks:
            settings["callbacks"] = [*(dspy.settings.callbacks or []), *callbacks]
        trace: dict[str, Any] = {
            "signature": sig.spec,
            "program": kind,
            "adapter": type(adapter).__name__,
            "model": getattr(lm, "model", str(lm)),
        }
        if self._bound_values:
            trace["variables"] = dict(self._bound_values)
        prompt = _prompt_versions.version_for(self, agent, output_group, shapes)
        _prompt_versions.record(flock_settings, prompt)
        trace["prompt_version"] = prompt.version
        structured = StructuredCall(
            self.structured_outputs,
            form_memory(flock_settings, self._forms),
            lm,
            sig,
            program_kind=kind,
            adapter=adapter,
            cache=self._schemas,
        )
        streaming = ctx.streaming and kind in _streaming.STREAMED_PROGRAMS
        asking = Asking(
            agent=agent.name,
            group=output_group,
            sig=sig,
            values=values,
            program=lambda reasking: self._program(agent, sig, kind, reasking, output_group, defs),
            settings=settings,
            calls=calls,
            structured=structured,
            tracker=tracker,
            trace=trace,
            max_reasks=self.max_reasks,
            offline=offline,
            emit=functools.partial(_streamed, ctx) if streaming else None,
        )
        outputs, reasks = await ask_until_valid(asking)
        metrics = tracker.metrics()
        metrics["reasks"] = float(reasks)
        return EvalResult(outputs=outputs, metrics=metrics, trace=trace, prompt_version=prompt.version)

    # ------------------------------------------------------------------ parts
    def signature(
        self, agent: AgentSpec, group: OutputGroup, shapes: Sequence[InputShape], *, has_context: bool
    ) -> AgentSignature:
        """The (cached) signature for an agent, output group and input shape."""
        outs = tuple((d.type_name, d.type, d.fan_out, d.description) for d in group.outputs)
        key = (
            agent.name,
            agent.description,
            group.index,
            group.description,
            outs,
            tuple(shapes),
            has_context,
        )
        sig = self._signatures.get(key)
        if sig is None:
            sig = build_signature(
                agent, group, shapes, has_context=has_context, instructions=self.instructions
            )
            self._signatures[key] = sig
        return sig

    def _shapes(self, agent: AgentSpec, ctx: Context, models: Sequence[BaseModel]) -> tuple[InputShape, ...]:
        """Input shapes of the fired subscription, or of the inputs themselves (``invoke``, mismatch)."""
        if ctx.subscription is not None and 0 <= ctx.subscription < len(agent.subscriptions):
            sub = agent.subscriptions[ctx.subscription]
            cached = self._sub_shapes.get(id(sub))
            if cached is None or cached[0] is not sub:
                cached = self._sub_shapes[id(sub)] = (sub, shape_from_subscription(sub))
            shapes = cached[1]
            names = {s.type_name for s in shapes}
            if all(type_name(type(m)) in names for m in models):
                return shapes
        return shape_from_models(models)

    def lm_for(
        self,
        flock_model: str | None,
        inherited: Mapping[str, Any] | None = None,
        *,
        concurrency: int = 0,
        name: str | None = None,
    ) -> dspy.BaseLM:
        """The language model for a call: the engine's own, else the Flock's, else ``"offline"``
        (or the one called ``name``, made with the engine's settings: a fallback).

        ``inherited`` are the Flock's ``lm_kwargs``; the engine's own ``lm_kwargs`` win key by key.
        ``concurrency`` (the Flock's ``max_concurrency``) sizes the model's connection pool.
        """
        model = name or (self.model if self.model is not None else (flock_model or "offline"))
        if isinstance(model, dspy.BaseLM):
            return model
        key = (model, id(inherited) if inherited else 0)
        found = self._lms.get(key)
        if found is not None and (not inherited or found[0] is inherited):
            if concurrency:
                size_pool(found[1], concurrency)  # another Flock may allow more calls at once
            return found[1]
        if model == "offline":
            lm: dspy.BaseLM = OfflineLM(self.seed)
        else:
            kwargs = {**(inherited or {}), **self.lm_kwargs}
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            if self.max_tokens is not None:
                kwargs["max_tokens"] = self.max_tokens
            # The engine owns retries (typed errors, breaker, limits, fallbacks): DSPy makes one attempt.
            lm = make_lm(model, cache=self.cache, retries=0, kwargs=kwargs, concurrency=concurrency)
        self._lms[key] = (inherited, lm)
        return lm

    def _fallback_chain(self, ctx: Context) -> list[tuple[str, Any]]:
        """The fallbacks, named ones made like the engine's model (its and the Flock's settings)."""
        inherited = getattr(ctx.settings, "lm_kwargs", None)
        concurrency = getattr(ctx.settings, "concurrency", 0)
        chain = []
        for model in self.fallbacks:
            if isinstance(model, dspy.BaseLM):
                lm = model
            else:
                lm = self.lm_for(None, inherited, concurrency=concurrency, name=model)
            chain.append((_name(lm), self._traced.view(lm)))  # timed (and spanned) like the model
        return chain

    def _adapter_for(self, lm: dspy.BaseLM) -> Any:
        """The engine's own adapter for ``lm``: made once, never the caller's object itself."""
        key = id(lm) if isinstance(self.adapter, type) else 0
        made = self._adapters.get(key)
        if made is None:
            made = self._adapters[key] = adapt(own_adapter(self.adapter, lm, self.adapter_fallback))
        return made

    def _program_kind(self, agent: AgentSpec) -> str:
        if self.program == "auto":
            return "react" if agent.tools or agent.toolsets else "predict"
        return self.program

    def _program(
        self,
        agent: AgentSpec,
        sig: AgentSignature,
        kind: str,
        reask: bool,
        group: OutputGroup,
        defs: tuple[ToolDef, ...] = (),
    ) -> dspy.Module:
        key = (id(sig), kind, reask, (agent.tools, defs) if kind == "react" else ())
        program = self._programs.get(key)
        if program is None:
            reward = None
            if self.reward is not None:
                reward = _programs.reward_of(self.reward, functools.partial(scored_output, sig, group))
            program = _programs.build(
                kind,
                (sig.with_feedback() if reask else sig).to_dspy(),
                tools=tool_list(agent.tools, defs, self.tool_timeout) if kind == "react" else [],
                max_iters=self.max_tool_calls,
                registered=self.programs,
                reward=reward,
                n=self.n,
                threshold=self.threshold,
                interpreter=self.interpreter,
            )
            self._programs[key] = program
        return program

    def _announce(self, lm: dspy.BaseLM, ctx: Context) -> None:
        if not getattr(lm, "announce", False):
            return
        run = ctx.state.get("run_id")
        # Once per run across all engines of the run (run ids are unique per Flock run), else once
        # per engine when no run id is known (an engine called directly).
        if not (announce_once(str(run)) if run is not None else self._first_announcement()):
            return
        logger.warning(OFFLINE_NOTICE)
        if logger.hasHandlers():
            # Without handlers, logging's last-resort handler already wrote the line to stderr.
            print(OFFLINE_NOTICE, file=sys.stderr)

    def _first_announcement(self) -> bool:
        first = not self._announced
        self._announced.add("engine")
        return first


# ---------------------------------------------------------------------- helpers


def _streamed(ctx: Context, attempt: int, field_name: str, delta: str) -> None:
    ctx.emit_token(field_name, delta, attempt)


def _name(lm: Any) -> str:
    return str(getattr(lm, "model", None) or type(lm).__name__)
