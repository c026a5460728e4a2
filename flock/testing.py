"""Test doubles for language models, and a guard against real provider calls.

* :class:`TestModel` answers any signature with valid, schema-faithful output (the offline model,
  quiet and seedable).
* :class:`FunctionModel` lets a test script every call: return raw text, output values, wrong
  counts, malformed output, tool calls, or raise an error.
* :func:`forbid_real_model_calls` makes any call to a real provider fail loudly.

Both models are real ``dspy.LM`` objects: prompts are formatted and answers parsed by the real
adapter, so a test exercises the same path as production::

    from flock import DSPyEngine
    from flock.testing import FunctionModel

    def script(call):
        if call.index == 0:
            return "not in the requested format"
        return call.default()            # what the offline model would answer

    engine = DSPyEngine(FunctionModel(script))
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ._core.errors import FlockError
from ._engine.offline import ModelCall, OfflineLM

__all__ = [
    "FunctionModel",
    "ModelCall",
    "RealModelCallError",
    "TestModel",
    "forbid_real_model_calls",
]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class TestModel(OfflineLM):
    """A schema-driven model that builds valid output for any signature, without network.

    Deterministic for a given ``seed``. ``calls`` records every call (:class:`ModelCall`), so a test
    can assert what was sent. Unlike ``"offline"`` it does not announce itself.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed, model="test", announce=False)


class FunctionModel(OfflineLM):
    """A model whose every answer comes from ``func(call: ModelCall)``.

    ``func`` may return:

    * a ``str``: the raw completion, parsed by the adapter as is (use it for malformed output);
    * a ``dict`` of output values (models, lists of models, strings...): rendered in the adapter's
      format, so ``{"ideas": [Idea(...)] * 3}`` scripts a wrong count;
    * an exception instance: raised as the model's failure (e.g. ``dspy.lm15.RateLimitError``).

    ``call.default()`` is the answer the offline model would give, ``call.values()`` its values.
    For ReAct, a dict with ``next_thought``, ``next_tool_name`` and ``next_tool_args`` is a tool call.
    ``func`` may be ``async``.
    """

    def __init__(self, func: Callable[[ModelCall], Any], *, seed: int = 0, retries: int = 0) -> None:
        super().__init__(seed, responder=func, model="function", announce=False)
        self.num_retries = retries

    @classmethod
    def script(cls, *answers: Any, retries: int = 0) -> FunctionModel:
        """Answer call ``i`` with ``answers[i]`` (the last one repeats).

        Each answer is anything ``func`` may return, ``None`` for the default answer, or a callable
        taking the :class:`ModelCall`::

            FunctionModel.script("garbage", None)   # malformed first, then a valid answer
        """
        if not answers:
            raise ValueError("FunctionModel.script() needs at least one answer")

        def pick(call: ModelCall) -> Any:
            answer = answers[min(call.index, len(answers) - 1)]
            if answer is None:
                return call.default()
            if callable(answer) and not isinstance(answer, type | BaseException):
                return answer(call)
            return answer

        return cls(pick, retries=retries)


class RealModelCallError(FlockError, RuntimeError):
    """A real language-model provider was about to be called inside :func:`forbid_real_model_calls`."""


@dataclass
class Guard:
    """What :func:`forbid_real_model_calls` yields: the refused attempts, for assertions."""

    allowed_hosts: frozenset[str]
    refused: list[str] = field(default_factory=list)

    def refuse(self, what: str) -> RealModelCallError:
        """Record a refused call and return the error to raise."""
        message = (
            f"real model call refused: {what}. Tests must use flock.testing.TestModel / FunctionModel, "
            "the 'offline' model, or a local OpenAI-compatible server on 127.0.0.1"
        )
        self.refused.append(message)
        return RealModelCallError(message)


@contextmanager
def forbid_real_model_calls(
    *, allowed_hosts: Sequence[str] = tuple(LOCAL_HOSTS), network: bool = True
) -> Iterator[Guard]:
    """Fail any call to a real model provider made inside the block.

    A ``dspy.LM`` call is refused unless the model is an offline-family model or its ``api_base``
    points at an allowed host (127.0.0.1 / localhost by default). With ``network=True`` any socket
    connection to a non-loopback address is refused as well, which catches clients that bypass
    ``dspy.LM``. If something swallowed a refusal (e.g. an agent failure recorded on the board),
    leaving the block raises :class:`RealModelCallError` anyway, so a test cannot pass silently.
    """
    import dspy

    guard = Guard(frozenset(allowed_hosts))
    lm_cls = dspy.LM
    original_call, original_acall = lm_cls.__call__, lm_cls.acall
    own = {name: name in vars(lm_cls) for name in ("__call__", "acall")}

    def check(lm: Any) -> None:
        if getattr(lm, "flock_offline", False):
            return
        base = lm.kwargs.get("api_base") or lm.kwargs.get("base_url")
        host = urlparse(str(base)).hostname if base else None
        if host not in guard.allowed_hosts:
            raise guard.refuse(f"model {lm.model!r} at {base or 'its public endpoint'}")

    def guarded_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        check(self)
        return original_call(self, *args, **kwargs)

    async def guarded_acall(self: Any, *args: Any, **kwargs: Any) -> Any:
        check(self)
        return await original_acall(self, *args, **kwargs)

    original_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if host not in guard.allowed_hosts and not host.startswith("127."):
                raise guard.refuse(f"network connection to {host}")
        return original_connect(sock, address)

    lm_cls.__call__ = guarded_call
    lm_cls.acall = guarded_acall
    if network:
        setattr(socket.socket, "connect", guarded_connect)  # noqa: B010 - keep mypy out of socket stubs
    try:
        yield guard
    finally:
        for name, original in (("__call__", original_call), ("acall", original_acall)):
            if own[name]:
                setattr(lm_cls, name, original)
            else:
                delattr(lm_cls, name)  # inherited before: leave the class as it was
        if network:
            setattr(socket.socket, "connect", original_connect)  # noqa: B010
    if guard.refused:
        raise RealModelCallError(guard.refused[0])
