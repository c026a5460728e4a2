"""Scheduling suite: batches, joins, gates, conditions and timers, on asyncio with a ManualClock."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
