"""Prompt versions: which prompt produced an artifact (``Artifact.prompt_version``).

A version is a short content hash (12 hex digits) of what the model is told: the signature
(fields, types, descriptions), the instructions, and the program's demos; or the label an agent
declares with ``.prompt_version("v2")``. The ``context`` input that appears when an activation has
context artifacts is left out, so one declaration has one version.

Rendered prompts (the system message the engine's adapter builds, then the demos) are kept per
version in two places:

* in memory, per Flock (``ModelSettings.shared["prompt_versions"]``): every version an engine used
  in this process;
* in the trace: the first time an engine uses a version it adds a ``flock.prompt`` event with the
  rendered text to its ``flock.evaluate`` span, so a trace store (``enable_tracing(path=...)``)
  keeps every version that ever ran.

``flock prompts module:flock`` renders each agent's current version from its declaration (and the
current variables); ``--diff A B`` diffs two versions found there or, with ``--traces PATH``, in a
trace store.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

SHARED_KEY = "prompt_versions"


@dataclass(frozen=True)
class PromptVersion:
    """One version of one agent's prompt (per output group)."""

    agent: str
    group: int
    version: str
    text: str


def content_version(signature_text: str, demos: list[Any]) -> str:
    """The short hash of a signature's text (fields, descriptions, instructions) and its demos."""
    data = json.dumps({"signature": signature_text, "demos": demos}, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:12]


def demos_of(program: Any) -> list[Any]:
    """The demos of every predictor of a DSPy program, as plain data."""
    found: list[Any] = []
    for predictor in getattr(program, "predictors", lambda: [])():
        for demo in getattr(predictor, "demos", None) or []:
            found.append(dict(demo) if hasattr(demo, "keys") else demo)
    return found


def render(adapter: Any, dspy_signature: Any, demos: list[Any]) -> str:
    """The system message ``adapter`` builds for the signature, then the demos as JSON lines."""
    import dspy

    kind = adapter if isinstance(adapter, type) else type(adapter)
    if adapter is None or issubclass(kind, dspy.TwoStepAdapter):
        adapter = dspy.ChatAdapter()  # its first step shows the model what ChatAdapter would
    elif isinstance(adapter, type):
        adapter = adapter()
    try:
        text = str(adapter.format_system_message(dspy_signature))
    except NotImplementedError:  # an adapter without a system message of its own
        text = str(dspy.ChatAdapter().format_system_message(dspy_signature))
    if demos:
        text += "\n\nDemos:\n" + "\n".join(json.dumps(d, sort_keys=True, default=str) for d in demos)
    return text


class PromptRegistry:
    """The prompt versions one Flock's engines used, with their rendered text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int, str], PromptVersion] = {}

    def add(self, found: PromptVersion) -> bool:
        """Keep ``found``; returns whether it is new."""
        key = (found.agent, found.group, found.version)
        with self._lock:
            if key in self._versions:
                return False
            self._versions[key] = found
            return True

    def versions(self, agent: str | None = None) -> list[PromptVersion]:
        with self._lock:
            return [v for v in self._versions.values() if agent is None or v.agent == agent]


def registry_of(settings: Any) -> PromptRegistry | None:
    """The Flock's registry (made on first use), or ``None`` outside a Flock."""
    shared = getattr(settings, "shared", None)
    if not isinstance(shared, dict):
        return None
    found = shared.get(SHARED_KEY)
    if found is None:
        found = shared.setdefault(SHARED_KEY, PromptRegistry())
    return found


def record(settings: Any, found: PromptVersion) -> None:
    """Keep ``found`` in the Flock's registry and put the version on the current span; the first
    time this process sees it, the rendered text goes on the span as a ``flock.prompt`` event."""
    from .engine_tracing import tracing_on

    registry = registry_of(settings)
    new = registry.add(found) if registry is not None else True
    if not tracing_on():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("flock.prompt_version", found.version)
    if new:
        span.add_event(
            "flock.prompt",
            {
                "flock.agent": found.agent,
                "flock.output_group": found.group,
                "version": found.version,
                "text": found.text,
            },
        )


def version_for(engine: Any, agent: Any, group: Any, shapes: Any) -> PromptVersion:
    """The prompt version of ``agent``'s output ``group`` on a (resolved) ``DSPyEngine``, cached."""
    label = agent.extra.get("prompt_version") if isinstance(agent.extra, dict) else None
    sig = engine.signature(agent, group, shapes, has_context=False)
    kind = engine._program_kind(agent)
    key = (id(sig), kind, label)
    cache = engine._versions
    found = cache.get(key)
    if found is None or found[0] is not sig:
        demos = demos_of(engine._program(agent, sig, kind, False, group))
        body = "\n".join(str(sig).splitlines()[1:])  # fields and instructions, not the agent's name
        version = label or content_version(f"{sig.spec}\n{body}", demos)
        text = render(engine.adapter, sig.to_dspy(), demos)
        found = cache[key] = (sig, PromptVersion(agent.name, group.index, version, text))
    return found[1]
