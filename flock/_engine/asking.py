"""One evaluation's exchange with the model: ask, check the answer against the contract, and re-ask
with the model's own answer and the exact problems until the answer is valid or the re-asks run out
(then a :class:`~flock.ContractViolation`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel

from .._core.errors import ContractViolation
from .._core.spec import OutputGroup
from .._tracing.metrics import record_reask
from . import programs as _programs
from . import streaming as _streaming
from .answers import collect, keep_trace, parse_message
from .call_metrics import CallCounter
from .engine_tracing import reask_span
from .offline import reset_tools, set_tools
from .reask import answer_text, parse_problems
from .reask import feedback as reask_feedback
from .signature import FEEDBACK_FIELD, AgentSignature
from .structured import StructuredCall, record_form
from .tools import abortable

logger = logging.getLogger("flock")


@dataclass
class Asking:
    """What one evaluation's asking needs (built by the engine per activation)."""

    agent: str
    group: OutputGroup
    sig: AgentSignature
    values: dict[str, Any]
    program: Callable[[bool], Any]  # the DSPy program for a first ask (False) or a re-ask (True)
    settings: dict[str, Any]  # for dspy.context(): model, adapter, usage tracker, callbacks
    calls: Any  # times (and spans) every model call
    structured: StructuredCall
    tracker: CallCounter
    trace: dict[str, Any]  # what the evaluate span records; attempts and the form are added
    max_reasks: int
    offline: bool
    emit: Callable[[int, str, str], None] | None  # (attempt, field, delta) while someone listens


async def ask_until_valid(a: Asking) -> tuple[list[BaseModel], int]:
    """The valid output models and how many re-asks they took."""
    sig, group, trace = a.sig, a.group, a.trace
    attempts: list[list[str]] = []
    reasks = 0
    feedback: str | None = None
    answered: tuple[str | None, list[str]] = (None, [])  # what the re-ask shows back
    while True:
        program = a.program(feedback is not None)
        call_values = a.values if feedback is None else {**a.values, FEEDBACK_FIELD: feedback}
        token = set_tools(tuple(getattr(program, "tools", {}).values())) if a.offline else None
        try:
            span = reask_span(a.agent, reasks, attempts[-1]) if attempts else nullcontext()
            with span, a.calls, dspy.context(**a.settings), abortable():
                if a.emit is not None:
                    fields = [f.name for f in sig.outputs]
                    emit = functools.partial(a.emit, reasks)
                    prediction = await _streaming.call_streaming(program, call_values, fields, emit)
                else:
                    prediction = await a.structured.acall(_programs.run, program, call_values)
            outputs, errors, first = collect(sig, group, prediction)
            keep_trace(trace, prediction)
        except AdapterParseError as exc:
            raw = str(getattr(exc, "lm_response", "") or "")
            # Per-field problems found in the raw answer, else DSPy's account of the failure.
            problems = parse_problems(sig, raw)
            outputs = []
            errors = problems or [f"the answer could not be parsed: {parse_message(exc)}"]
            answered = (raw, errors)
            first = (group.outputs[0].type_name, "output in the requested format", "unparseable")
        else:
            answered = (answer_text(sig, prediction), errors) if errors else (None, errors)
        finally:
            if token is not None:
                reset_tools(token)
        if not errors:
            break
        attempts.append(errors)
        if reasks >= a.max_reasks:
            trace["attempts"] = attempts
            record_form(trace, a.structured)
            violation = ContractViolation(
                f"agent {a.agent!r}, output group {group.index}: "
                f"{'; '.join(errors)} (after {reasks} re-ask{'s' if reasks != 1 else ''})",
                agent=a.agent,
                group=group.index,
                type_name=first[0],
                expected=first[1],
                actual=first[2],
                errors=errors,
            )
            # What the failed call cost, for whoever records the failure.
            violation.metrics = {**a.tracker.metrics(), "reasks": float(reasks)}  # type: ignore[attr-defined]
            violation.trace = trace  # type: ignore[attr-defined]
            raise violation
        reasks += 1
        record_reask(trace["model"], a.agent)
        feedback = reask_feedback(*answered)
        logger.info(
            "agent %r: re-asking the model (%d/%d): %s", a.agent, reasks, a.max_reasks, "; ".join(errors)
        )
    if attempts:
        trace["attempts"] = attempts
    record_form(trace, a.structured)
    return outputs, reasks
