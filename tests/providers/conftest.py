"""Provider-resilience suite: a real OpenAI-protocol server on 127.0.0.1 that misbehaves on cue."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "engine"))

from openai_server import OpenAIServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def backup() -> Iterator[OpenAIServer]:
    """A second provider, for fallbacks."""
    with OpenAIServer() as srv:
        yield srv
