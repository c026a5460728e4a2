"""The exception tree. Every error Flock raises is a :class:`FlockError`.

::

    FlockError
    ├── ConfigurationError        a declaration is wrong; raised when it is made
    │   ├── NotAModelError        a consumed/published type is not a Pydantic model
    │   ├── DuplicateAgentError   two agents with one name
    │   ├── TypeConflictError     two classes registered under one type name
    │   └── VisibilityError       a visibility that would fail open
    ├── UnknownAgentError         invoke() of an agent that does not exist
    ├── DuplicateArtifactError    an artifact id that is already on the board
    ├── FlockClosedError          publish/run after shutdown()
    ├── TaskNotFound              no open human task with that id (or not visible to the caller)
    ├── TaskClosed                a human task already answered or expired
    ├── TaskAnswerInvalid         an answer does not validate as the task's output type
    ├── OutputError               an engine's outputs break the agent's declaration
    │   ├── ContractViolation     wrong type or count, invalid fields
    │   └── ValidationFailed      a ``publishes(validate=...)`` check said no
    ├── InputInvalid              a stored input no longer validates as its model (one activation fails)
    ├── LoopGuardTripped          an agent hit its iteration limit in one causal chain
    ├── RunTimeout                run_until_idle(timeout=...) expired (work stays queued)
    ├── ToolTimeout               a tool call ran past DSPyEngine(tool_timeout=...)
    ├── WorkflowFailed            run_until_idle(raise_on_error=True) saw failures
    ├── StoreError                the board's storage failed; ``path`` names the file
    │   ├── StoreLockedError      another process (or store) already writes this board file
    │   ├── StoreCorruptError     the file is not a readable board
    │   └── StoreFullError        the disk is full: the write was not stored
    ├── RunHalted                 an activation stopped the whole run; its inputs stay queued
    │   └── BudgetExceeded        no new model call may start past the budget
    └── ProviderError             a model provider failed
        ├── ProviderTimeout       one model call ran past its deadline
        ├── RateLimited           the provider throttled (429) past the retries
        ├── ProviderUnavailable   circuit breaker open, or 5xx/connection errors after retries
        └── ProviderConfigError   no key, 401/403, unknown model (also a RunHalted: fails fast)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class FlockError(Exception):
    """Root of every error Flock raises."""


class ConfigurationError(FlockError, ValueError):
    """A declaration is wrong. Raised when it is made, never mid-run."""


class NotAModelError(ConfigurationError, TypeError):
    """A type given to ``consumes``/``publishes``/``publish`` is not a Pydantic model."""


class DuplicateAgentError(ConfigurationError):
    """Two agents in one Flock share a name."""


class TypeConflictError(ConfigurationError):
    """Two different classes claim the same registered type name."""


class VisibilityError(ConfigurationError):
    """A visibility that would fail open (no tenant, no labels, no agents)."""


class UnknownAgentError(FlockError, LookupError):
    """An agent name that this Flock does not know."""


class DuplicateArtifactError(FlockError):
    """An artifact id that already exists. Artifacts are immutable: never overwritten."""


class FlockClosedError(FlockError, RuntimeError):
    """The Flock was shut down."""


class TaskNotFound(FlockError, LookupError):
    """No human task with this id, or one the caller may not see."""


class TaskClosed(FlockError):
    """A human task that was already answered, or whose deadline passed. Exactly one answer wins."""


class TaskAnswerInvalid(FlockError, ValueError):
    """An answer to a human task does not validate as its output type; the task stays open.

    ``errors`` holds the validation errors as JSON-ready dicts (``loc``, ``msg``, ``type``), the
    same shape the REST API returns with a 422.
    """

    def __init__(self, message: str, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = list(errors)


class OutputError(FlockError):
    """An engine produced outputs that break the agent's declaration."""


class ContractViolation(OutputError):
    """Outputs of one output group do not meet the declared contract.

    Attributes:
        agent: the agent's name.
        group: index of the output group (the n-th ``publishes()`` call).
        type_name: the registered name of the offending output type (or ``None``).
        expected: what the declaration asked for, e.g. ``"exactly 5"``.
        actual: what came back, e.g. ``"3"``.
        errors: individual problems, human readable.
    """

    def __init__(
        self,
        message: str,
        *,
        agent: str,
        group: int,
        type_name: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.agent = agent
        self.group = group
        self.type_name = type_name
        self.expected = expected
        self.actual = actual
        self.errors = list(errors)


class ValidationFailed(OutputError):
    """A ``publishes(validate=...)`` callable rejected an output."""


class InputInvalid(FlockError):
    """A stored artifact no longer validates as its registered model (it changed since it was stored).

    The activation that needed it fails with this error (a ``WorkflowError`` of kind
    ``"invalid_input"``); the rest of the run goes on.
    """

    def __init__(self, message: str, *, artifact_id: str | None = None) -> None:
        super().__init__(message)
        self.artifact_id = artifact_id


class LoopGuardTripped(FlockError):
    """An agent reached ``max_agent_iterations`` within one workflow (correlation id)."""


class RunTimeout(FlockError, TimeoutError):
    """A run did not become idle in time. Queued work is kept and resumes on the next run."""


class ToolTimeout(FlockError, TimeoutError):
    """A tool call ran past ``DSPyEngine(tool_timeout=...)``. The model is told and may go on without it."""


class WorkflowFailed(FlockError):
    """Raised by ``run_until_idle(raise_on_error=True)`` when any agent failed during the run.

    ``errors`` holds the :class:`~flock.WorkflowError` records of the run.
    """

    def __init__(self, message: str, errors: Sequence[Any]) -> None:
        super().__init__(message)
        self.errors = list(errors)


class StoreError(FlockError):
    """The board's storage failed. ``path`` names the board file (``None`` for a store without one).

    The root of every storage failure, so that a caller can tell "the store could not do it" (the
    operation was not applied: retry once the cause is fixed) from every other error.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreLockedError(StoreError):
    """Another process (or another store in this process) already writes this board file.

    One writer per board: a second one would run the same activations again. The lock is released
    when the writer closes its store or its process ends, a killed one included.
    """


class StoreCorruptError(StoreError):
    """The board file is damaged or is not a board at all."""


class StoreFullError(StoreError):
    """The disk (or the file system's quota) is full. The write that raised it was not stored;
    everything acknowledged before it is safe. Free space and go on."""


class RunHalted(FlockError):
    """An error that stops the whole run instead of failing one activation.

    When an engine raises one, the activation is not recorded as failed: it goes back to the queue
    with its inputs unconsumed, no new activation starts, and ``run_until_idle`` raises the error
    once the activations already running have finished. The next run (after the cause is fixed)
    processes the kept work.
    """


class BudgetExceeded(RunHalted):
    """A :class:`~flock.Budget` is spent: no new model call starts. Untouched work stays queued."""


class ProviderError(FlockError):
    """A model provider failed. Subclasses say how; ``model`` names the model when known."""

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ProviderTimeout(ProviderError, TimeoutError):
    """One model call ran past its deadline (``DSPyEngine(timeout=...)``)."""


class RateLimited(ProviderError):
    """The provider kept answering 429 (rate limited) after every retry."""


class ProviderUnavailable(ProviderError):
    """The provider is down: its circuit breaker is open, or 5xx/connection errors outlasted the retries."""


class ProviderConfigError(ProviderError, RunHalted):
    """The provider refused the configuration: no or wrong API key (401/403), unknown model (404).

    Retrying cannot help, so the run stops at the first one and keeps every input queued.
    """
