"""Engine suite: async tests on asyncio, no real model calls, a local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai_server import OpenAIServer

from flock.testing import forbid_real_model_calls


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_real_models() -> Iterator[None]:
    with forbid_real_model_calls():
        yield


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv
