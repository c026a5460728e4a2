"""A served flock on 127.0.0.1: ``flock.serve()`` runs in a thread of its own (its own event loop),
the tests talk to it with a real HTTP client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import anyio
import httpx
import pytest
import server_app
from server_support import free_port, wait_until_up

from flock import ApiKeys, Flock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Served:
    flock: Flock
    url: str

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """``serve(flock=None, auth=None, probe=key)`` starts a server and returns it; all stop at the
    test's end."""
    stops: list[tuple[threading.Thread, threading.Event, list[BaseException]]] = []

    def start(flock: Flock | None = None, auth: ApiKeys | None = None, probe: str = "key-operator") -> Served:
        flock = flock or server_app.make_flock()
        port = free_port()
        stop = threading.Event()
        errors: list[BaseException] = []

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(flock.serve, "127.0.0.1", port, auth=auth or server_app.AUTH))
                await anyio.to_thread.run_sync(stop.wait)
                tg.cancel_scope.cancel()
            await flock.shutdown()

        def run() -> None:
            try:
                anyio.run(main)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        stops.append((thread, stop, errors))
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, probe)
        return Served(flock, url)

    yield start
    for thread, stop, errors in stops:
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the server did not stop"
        assert not errors, errors
