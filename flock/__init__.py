"""Flock: multi-agent LLM systems on a typed blackboard.

Importing this package has no side effects: no environment files are read, no tracing is installed,
nothing is printed, and DSPy is imported only when an engine needs it.
"""

from __future__ import annotations

from typing import Any

from ._core.artifact import Artifact
from ._core.builder import AgentBuilder
from ._core.clock import Clock, ManualClock, SystemClock
from ._core.components import (
    AgentComponent,
    Context,
    EngineComponent,
    EvalInputs,
    EvalResult,
    OrchestratorComponent,
)
from ._core.conditions import Condition, Until, When
from ._core.context import ContextRequest, CorrelationContext, NoContext
from ._core.errors import (
    BudgetExceeded,
    ConfigurationError,
    ContractViolation,
    DuplicateAgentError,
    DuplicateArtifactError,
    FlockClosedError,
    FlockError,
    InputInvalid,
    LoopGuardTripped,
    NotAModelError,
    OutputError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RunHalted,
    RunTimeout,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    TaskAnswerInvalid,
    TaskClosed,
    TaskNotFound,
    ToolTimeout,
    TypeConflictError,
    UnknownAgentError,
    ValidationFailed,
    VisibilityError,
    WorkflowFailed,
)
from ._core.flock import Flock
from ._core.function_engine import FunctionEngine
from ._core.graph import AgentGraph
from ._core.human import HumanTask, TaskInput
from ._core.lineage import LineageContext
from ._core.outcomes import JoinExpired, RunSummary, WorkflowError
from ._core.spec import (
    AgentSpec,
    BatchSpec,
    JoinSpec,
    OutputDecl,
    OutputGroup,
    ScheduleSpec,
    Subscription,
    Tick,
)
from ._core.tasks import TaskInfo, Tasks
from ._core.types import flock_type
from ._core.visibility import (
    AfterVisibility,
    AgentIdentity,
    AllOfVisibility,
    LabelledVisibility,
    PrivateVisibility,
    PublicVisibility,
    TenantVisibility,
    Visibility,
)
from ._engine.structured import StructuredOutputsRefused
from ._live.events import ActivationEvent, ArtifactEvent, EventStream, TokenEvent, VariableEvent
from ._live.variables import Var, Variables
from ._mcp.servers import MCPError, MCPServer
from ._providers.breaker import CircuitBreaker
from ._providers.budget import Budget, ModelUsage
from ._providers.ratelimit import RateLimit
from ._server.auth import ApiKeys, Principal
from ._stores.store import BlackboardStore, FilterConfig, InMemoryStore
from ._tracing.latency import Latency

# Names loaded on first attribute access, never at `import flock` (DSPy, sqlite3 and their kin).
_LAZY = {
    "SQLiteStore": ("flock._stores.sqlite_store", "SQLiteStore"),  # sqlite3 and threads only when used
    "PostgresStore": ("flock._stores.postgres_store", "PostgresStore"),  # psycopg only when used
    "DSPyEngine": ("flock._engine.dspy_engine", "DSPyEngine"),
    "inspect_signature": ("flock._engine.signature", "inspect_signature"),
    "ChatAdapter": ("dspy", "ChatAdapter"),
    "JSONAdapter": ("dspy", "JSONAdapter"),
    "XMLAdapter": ("dspy", "XMLAdapter"),
    "TwoStepAdapter": ("dspy", "TwoStepAdapter"),
    "BAMLAdapter": ("dspy.adapters.baml_adapter", "BAMLAdapter"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'flock' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = [
    "ActivationEvent",
    "AfterVisibility",
    "AgentBuilder",
    "AgentComponent",
    "AgentGraph",
    "AgentIdentity",
    "AgentSpec",
    "AllOfVisibility",
    "ApiKeys",
    "Artifact",
    "ArtifactEvent",
    "BAMLAdapter",
    "BatchSpec",
    "BlackboardStore",
    "Budget",
    "BudgetExceeded",
    "ChatAdapter",
    "CircuitBreaker",
    "Clock",
    "Condition",
    "ConfigurationError",
    "Context",
    "ContextRequest",
    "ContractViolation",
    "CorrelationContext",
    "DSPyEngine",
    "DuplicateAgentError",
    "DuplicateArtifactError",
    "EngineComponent",
    "EvalInputs",
    "EvalResult",
    "EventStream",
    "FilterConfig",
    "Flock",
    "FlockClosedError",
    "FlockError",
    "FunctionEngine",
    "HumanTask",
    "InMemoryStore",
    "InputInvalid",
    "JSONAdapter",
    "JoinExpired",
    "JoinSpec",
    "LabelledVisibility",
    "Latency",
    "LineageContext",
    "LoopGuardTripped",
    "MCPError",
    "MCPServer",
    "ManualClock",
    "ModelUsage",
    "NoContext",
    "NotAModelError",
    "OrchestratorComponent",
    "OutputDecl",
    "OutputError",
    "OutputGroup",
    "PostgresStore",
    "Principal",
    "PrivateVisibility",
    "ProviderConfigError",
    "ProviderError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "PublicVisibility",
    "RateLimit",
    "RateLimited",
    "RunHalted",
    "RunSummary",
    "RunTimeout",
    "SQLiteStore",
    "ScheduleSpec",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StructuredOutputsRefused",
    "Subscription",
    "SystemClock",
    "TaskAnswerInvalid",
    "TaskClosed",
    "TaskInfo",
    "TaskInput",
    "TaskNotFound",
    "Tasks",
    "TenantVisibility",
    "Tick",
    "TokenEvent",
    "ToolTimeout",
    "TwoStepAdapter",
    "TypeConflictError",
    "UnknownAgentError",
    "Until",
    "ValidationFailed",
    "Var",
    "VariableEvent",
    "Variables",
    "Visibility",
    "VisibilityError",
    "When",
    "WorkflowError",
    "WorkflowFailed",
    "XMLAdapter",
    "flock_type",
    "inspect_signature",
]
