"""Sessions: an agent sees its earlier turns of the same workflow (``.with_history(turns=10)``).

A turn is one earlier activation of the agent in the same correlation id: the inputs it consumed
and the outputs it published. They are read from the board, not kept in memory: the activation's
context (``ctx.artifacts``: what the agent may see of its workflow, visibility already applied)
holds them, so history survives a restart with a durable store and never shows what the agent may
not see. The newest ``turns`` turns go into a ``history`` input field of type ``dspy.History``,
which DSPy's adapters render as earlier user/assistant messages.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._core.artifact import Artifact
from .signature import AgentSignature, SignatureField

HISTORY_FIELD = "history"
HISTORY_KEY = "history_turns"  # AgentSpec.extra key set by .with_history(turns=...)
HISTORY_DESCRIPTION = "Earlier turns of this workflow: what you were given and what you answered."


def turns_of(agent: Any) -> int:
    """How many earlier turns ``agent`` keeps (0: no history)."""
    extra = getattr(agent, "extra", None)
    return int(extra.get(HISTORY_KEY, 0)) if isinstance(extra, dict) else 0


def with_history(sig: AgentSignature) -> AgentSignature:
    """``sig`` plus the ``history`` input (first, so earlier turns precede the current inputs)."""
    import dspy

    field = SignatureField(HISTORY_FIELD, dspy.History, HISTORY_DESCRIPTION, input=True)
    return replace(sig, inputs=(field, *sig.inputs), _dspy=[])


def history(agent: str, sig: AgentSignature, artifacts: list[Artifact], turns: int) -> tuple[Any, set[Any]]:
    """The ``dspy.History`` of ``agent``'s newest ``turns`` turns among ``artifacts`` (oldest first),
    and the ids of the artifacts it shows (the ``context`` field leaves them out)."""
    import dspy

    by_id = {a.id: a for a in artifacts}
    activations: dict[tuple[Any, ...], list[Artifact]] = {}
    for a in artifacts:  # newest last; one activation's outputs share their inputs
        if a.produced_by == agent and a.type != "flock.WorkflowError":
            activations.setdefault(a.consumed_from, []).append(a)
    messages: list[dict[str, Any]] = []
    shown: set[Any] = set()
    for consumed, outputs in list(activations.items())[-turns:]:
        inputs = [by_id[i] for i in consumed if i in by_id]
        shown.update(a.id for a in (*inputs, *outputs))
        message: dict[str, Any] = {}
        for f in sig.inputs:
            if f.type_name is not None:
                found = [x.payload for x in inputs if x.type == f.type_name]
                message[f.name] = found if f.plural else (found[0] if found else None)
        for f in sig.outputs:
            found = [x.payload for x in outputs if x.type == f.type_name]
            message[f.name] = found if f.plural else (found[0] if found else None)
        messages.append(message)
    return dspy.History(messages=messages), shown
