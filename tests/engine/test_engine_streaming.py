"""Token streaming through a real loopback server speaking OpenAI's SSE streaming."""

from __future__ import annotations

import anyio
import dspy
import pytest
from engine_support import Idea, Task
from openai_server import OpenAIServer

from flock import DSPyEngine, Flock, TokenEvent
from flock._engine.streaming import FieldDeltas

pytestmark = pytest.mark.anyio


def served(server: OpenAIServer, program: str = "predict") -> Flock:
    flock = Flock("openai/streamer", lm_kwargs={"api_base": server.base_url, "api_key": "k"})
    flock.agent("writer").consumes(Task).publishes(Idea).with_engines(DSPyEngine(program=program))
    return flock


@pytest.mark.parametrize("program", ["predict", "chain_of_thought"])
async def test_token_deltas_come_from_the_stream_and_add_up_to_the_published_fields(
    server: OpenAIServer, program: str
) -> None:
    server.sse_piece = 3
    flock = served(server, program)
    tokens: list[TokenEvent] = []
    with dspy.context(callbacks=[server.recorder]):
        async with flock.events(agents="writer") as events:
            await flock.publish(Task(text="bees"))
            await flock.run_until_idle()
            events.close()
            tokens = [e async for e in events if isinstance(e, TokenEvent)]
    [idea] = [a for a in await flock.store.list() if a.type == "Idea"]
    assert server.requests[0].get("stream") is True and len(server.streamed[0]) > 5
    joined: dict[str, str] = {}
    for t in tokens:
        joined[t.field] = joined.get(t.field, "") + t.delta
    assert joined == {"title": idea.payload["title"]}  # score is a number: not a str field
    assert len([t for t in tokens if t.field == "title"]) > 1  # in pieces, as they arrived


async def test_nothing_streams_when_nobody_listens(server: OpenAIServer) -> None:
    flock = served(server)
    with dspy.context(callbacks=[server.recorder]):
        await flock.publish(Task(text="bees"))
        summary = await flock.run_until_idle()
    assert summary.ok and not server.requests[0].get("stream") and server.streamed == []


def test_field_deltas_decode_json_strings_across_pieces() -> None:
    got: list[tuple[str, str]] = []
    parser = FieldDeltas(lambda f, d: got.append((f, d)))
    for piece in [
        '{"ti',
        'tle": "A \\"f',
        "ilm\\u00e9\\ud83d",
        '\\ude00", "n": 3, "inner": {"x": "no"}, "tag',
        'line": "ab',
        'c"}',
    ]:
        parser.feed(piece)
    joined: dict[str, str] = {}
    for f, d in got:
        joined[f] = joined.get(f, "") + d
    assert joined == {"title": 'A "filmé😀', "tagline": "abc"}


async def test_a_slow_reader_does_not_slow_the_stream(server: OpenAIServer) -> None:
    flock = served(server)
    with dspy.context(callbacks=[server.recorder]):
        async with flock.events(buffer=2) as events:
            await flock.publish(Task(text="bees"))
            with anyio.fail_after(30):
                summary = await flock.run_until_idle()
            events.close()
    assert summary.ok and events.dropped > 0


async def test_a_reask_streams_under_the_next_attempt(server: OpenAIServer) -> None:
    server.sse_piece = 3
    # The first answer breaks the contract (score 9 is outside 1..5); the re-ask answers well.
    server.script(
        {"idea": {"title": "Bees at night", "score": 9}}, {"idea": {"title": "Bees by day", "score": 4}}
    )
    flock = served(server)
    with dspy.context(callbacks=[server.recorder]):
        async with flock.events(agents="writer") as events:
            await flock.publish(Task(text="bees"))
            summary = await flock.run_until_idle()
            events.close()
            tokens = [e async for e in events if isinstance(e, TokenEvent)]
    [idea] = [a for a in await flock.store.list() if a.type == "Idea"]
    assert summary.ok and len(server.requests) == 2
    assert all(r.get("stream") is True for r in server.requests)
    by_attempt: dict[int, str] = {}
    for t in tokens:
        by_attempt[t.attempt] = by_attempt.get(t.attempt, "") + t.delta
    assert by_attempt == {0: "Bees at night", 1: "Bees by day"}
    assert idea.payload["title"] == by_attempt[1]


async def test_the_offline_model_streams_in_pieces() -> None:
    flock = Flock()  # the offline model
    flock.agent("writer").consumes(Task).publishes(Idea)
    async with flock.events(agents="writer") as events:
        await flock.publish(Task(text="a film about lighthouses and the keepers who stay"))
        summary = await flock.run_until_idle()
        events.close()
        tokens = [e async for e in events if isinstance(e, TokenEvent)]
    [idea] = [a for a in await flock.store.list() if a.type == "Idea"]
    assert summary.ok
    assert len(tokens) > 1 and {t.field for t in tokens} == {"title"}
    assert "".join(t.delta for t in tokens) == idea.payload["title"]
