"""DSPy programs by name: ``DSPyEngine(program="chain_of_thought")``.

Built-in names:

========================== ==========================================================================
``auto``                   ``react`` when the agent has tools, else ``predict``
``predict``                ``dspy.Predict``
``chain_of_thought``       ``dspy.ChainOfThought`` (the reasoning is kept on the trace)
``react``                  ``dspy.ReAct`` over the agent's tools
``program_of_thought``     ``dspy.ProgramOfThought``: the model writes Python that a code interpreter
                           runs. DSPy's ``PythonInterpreter`` needs Deno (``pip install "dspy[deno]"``
                           or ``deno`` on the ``PATH``); ``interpreter=`` gives a factory of another
                           ``dspy`` code interpreter instead.
``multi_chain_comparison`` ``n`` chain-of-thought attempts, then ``dspy.MultiChainComparison`` picks
``best_of_n``              ``dspy.BestOfN``: up to ``n`` attempts, the best by ``reward``
``refine``                 ``dspy.Refine``: up to ``n`` attempts, with feedback between them
========================== ==========================================================================

``best_of_n`` and ``refine`` need ``reward=``: a function of the group's validated output (the
model, or a list of models when the group publishes several types or a fan-out) returning a
number; an attempt whose output breaks the contract scores ``0``. ``threshold=`` ends the attempts
early once reached.

A program of your own is a callable ``factory(signature) -> dspy.Module`` (a DSPy module class
is one), registered per engine: ``DSPyEngine(program="mine", programs={"mine": MyModule})``.
Each name is checked when the engine is made (or when a :class:`~flock.Var` bound to ``program``
is set), including what it needs: a missing reward or code interpreter is a
:class:`~flock.ConfigurationError` then, not a failure in the middle of a run.
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from .._core.errors import ConfigurationError

BUILTIN = (
    "auto",
    "predict",
    "chain_of_thought",
    "react",
    "program_of_thought",
    "multi_chain_comparison",
    "best_of_n",
    "refine",
)
NEEDS_REWARD = ("best_of_n", "refine")


def deno_available() -> bool:
    """Whether DSPy's ``PythonInterpreter`` can find Deno (the ``deno`` package, or on the PATH)."""
    return importlib.util.find_spec("deno") is not None or shutil.which("deno") is not None


def program_problem(name: Any, registered: Mapping[str, Any], *, reward: Any, interpreter: Any) -> str | None:
    """Why ``name`` cannot be this engine's program, or ``None`` when it can."""
    if not isinstance(name, str):
        return f"a program is named by a string, got {name!r}"
    if name in registered:
        return None
    if name not in BUILTIN:
        known = ", ".join((*BUILTIN, *registered))
        return (
            f"unknown program {name!r}; choose one of {known}, or register it with programs={{{name!r}: ...}}"
        )
    if name in NEEDS_REWARD and reward is None:
        return (
            f"program {name!r} scores its attempts with a reward function: pass reward=fn, where fn takes "
            "the output and returns a number (e.g. DSPyEngine(program='refine', reward=fn, n=3))"
        )
    if name == "program_of_thought" and interpreter is None and not deno_available():
        return (
            "program 'program_of_thought' runs the Python the model writes in DSPy's PythonInterpreter, "
            "which needs Deno: pip install 'dspy[deno]' (or put deno on the PATH), "
            "or pass interpreter=<a factory of a dspy CodeInterpreter>"
        )
    return None


def accepts(registered: Mapping[str, Any]) -> str:
    """What ``program=`` accepts, for messages."""
    return "one of " + ", ".join((*BUILTIN, *registered)) + " (best_of_n and refine need reward=)"


def check_registered(programs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The engine's own programs, checked: names are new strings, values are callables."""
    found: dict[str, Any] = {}
    for name, factory in (programs or {}).items():
        if not isinstance(name, str) or not name or name in BUILTIN:
            raise ConfigurationError(
                f"DSPyEngine(programs=...): {name!r} cannot name a program of your own "
                f"(it must be a new, non-empty name; built in: {', '.join(BUILTIN)})"
            )
        if not callable(factory):
            raise ConfigurationError(
                f"DSPyEngine(programs={{{name!r}: ...}}) takes a DSPy module class or a callable "
                f"factory(signature) -> dspy.Module, got {type(factory).__name__}"
            )
        found[name] = factory
    return found


def build(
    kind: str,
    signature: Any,
    *,
    tools: list[Any],
    max_iters: int,
    registered: Mapping[str, Any],
    reward: Callable[[Any, Any], float] | None,
    n: int,
    threshold: float | None,
    interpreter: Any,
) -> Any:
    """The DSPy module ``kind`` for ``signature`` (``reward`` already takes DSPy's ``(args, pred)``)."""
    import dspy

    if kind in registered:
        made = registered[kind](signature)
        if not isinstance(made, dspy.Module):
            raise ConfigurationError(
                f"program {kind!r}: the registered factory returned {type(made).__name__}, not a dspy.Module"
            )
        return made
    if kind == "predict":
        return dspy.Predict(signature)
    if kind == "chain_of_thought":
        return dspy.ChainOfThought(signature)
    if kind == "react":
        return dspy.ReAct(signature, tools=tools, max_iters=max_iters)
    if kind == "program_of_thought":
        with warnings.catch_warnings():  # deprecated in DSPy 3.4 in favour of RLM; still supported
            warnings.simplefilter("ignore", DeprecationWarning)
            if interpreter is None:
                return dspy.ProgramOfThought(signature, max_iters=max_iters)
            return dspy.ProgramOfThought(signature, max_iters=max_iters, interpreter_factory=interpreter)
    if kind == "multi_chain_comparison":
        return _Compared(signature, n)
    assert reward is not None  # checked at declaration
    limit = float("inf") if threshold is None else threshold
    if kind == "best_of_n":
        return dspy.BestOfN(dspy.Predict(signature), N=n, reward_fn=reward, threshold=limit)
    if kind == "refine":
        return dspy.Refine(dspy.Predict(signature), N=n, reward_fn=reward, threshold=limit)
    raise ConfigurationError(f"unknown program {kind!r}")  # pragma: no cover - checked at declaration


async def run(program: Any, values: dict[str, Any]) -> Any:
    """Call ``program`` on the async path when it has one, else in a worker thread (DSPy's asyncify)."""
    import dspy

    if _has_async(program):
        return await program.acall(**values)
    return await dspy.asyncify(program)(**values)


def _has_async(program: Any) -> bool:
    return callable(getattr(type(program), "aforward", None))


def reward_of(user: Callable[[Any], Any], outputs_of: Callable[[Any], Any]) -> Callable[[Any, Any], float]:
    """DSPy's ``reward_fn(args, pred)`` for a user's ``reward(output)``.

    ``outputs_of(pred)`` returns the validated output (or ``None`` when the attempt broke the
    contract, which scores 0).
    """

    def reward_fn(args: Any, pred: Any) -> float:
        output = outputs_of(pred)
        return 0.0 if output is None else float(user(output))

    return reward_fn


def _compared_class() -> Any:
    import dspy

    class Compared(dspy.Module):
        """``n`` chain-of-thought attempts (distinct rollouts), compared by ``dspy.MultiChainComparison``."""

        def __init__(self, signature: Any, n: int) -> None:
            super().__init__()
            self.n = n
            self.attempt = dspy.ChainOfThought(signature)
            with warnings.catch_warnings():  # DSPy 3.4 builds its fields with a deprecated prefix=
                warnings.simplefilter("ignore", DeprecationWarning)
                self.compare = dspy.MultiChainComparison(signature, M=n)

        def forward(self, **kwargs: Any) -> Any:
            attempts = [
                self.attempt(**kwargs, config={"rollout_id": i, "temperature": 1.0}) for i in range(self.n)
            ]
            return self.compare(completions=attempts, **kwargs)

    return Compared


_COMPARED: Any = None


def _Compared(signature: Any, n: int) -> Any:
    global _COMPARED
    if _COMPARED is None:
        _COMPARED = _compared_class()
    return _COMPARED(signature, n)
