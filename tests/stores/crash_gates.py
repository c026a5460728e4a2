"""Fan-out, AND gates and batches on a SQLite board, run as a child process that the crash test kills.

    python crash_gates.py run BOARD N      # publish N seeds while the agents run
    python crash_gates.py resume BOARD N   # reopen, resume(), publish the seeds still missing

Same protocol as ``crash_pipeline`` (READY, ACK <id>, DONE). Each seed is its own workflow:

    Seed ─ split (fan_out=3) ─> 3 Parts ─ bundle (batch of 3) ─> Bundle ─┐
         ├ left ──> Left  ─┐                                               ├ final (AND gate) ─> Final
         └ right ─> Right ─┴ pair (AND gate) ─────────────> Pair ─────────┘

Batches are per workflow and hold exactly its three parts, and each gate meets exactly one
artifact of each type per workflow, so every run that finishes, interrupted or not, must produce
exactly the same board: the kill may land in a fan-out, with a gate or a batch half filled, or in a
gate's or a batch's activation, and resuming must finish each exactly once.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import anyio
from crash_pipeline import child, signature, torn
from pydantic import BaseModel

from flock import Artifact, BatchSpec, Flock, InMemoryStore, SQLiteStore, flock_type

NAMESPACE = UUID("7d0f3a86-0c35-4a51-8f6e-2b5d8c0e9f14")


@flock_type(name="gates.Seed")
class Seed(BaseModel):
    n: int


@flock_type(name="gates.Part")
class Part(BaseModel):
    n: int
    k: int


@flock_type(name="gates.Left")
class Left(BaseModel):
    n: int


@flock_type(name="gates.Right")
class Right(BaseModel):
    n: int


@flock_type(name="gates.Pair")
class Pair(BaseModel):
    n: int


@flock_type(name="gates.Bundle")
class Bundle(BaseModel):
    n: int
    ks: list[int]


@flock_type(name="gates.Final")
class Final(BaseModel):
    n: int
    total: int


async def split(seed: Seed) -> list[Part]:
    await anyio.sleep(0.001)
    return [Part(n=seed.n, k=k) for k in range(3)]


async def left(seed: Seed) -> Left:
    await anyio.sleep(0.002)
    return Left(n=seed.n)


async def right(seed: Seed) -> Right:
    await anyio.sleep(0.001)
    return Right(n=seed.n)


async def pair(a: Left, b: Right) -> Pair:
    await anyio.sleep(0.001)
    return Pair(n=a.n)


async def bundle(*parts: Part) -> Bundle:
    await anyio.sleep(0.002)
    return Bundle(n=parts[0].n, ks=sorted(p.k for p in parts))


async def final(p: Pair, b: Bundle) -> Final:
    await anyio.sleep(0.001)
    return Final(n=p.n, total=sum(b.ks))


def build(store: Any) -> Flock:
    flock = Flock(store=store)
    flock.agent("split").consumes(Seed).publishes(Part, fan_out=3).calls(split)
    flock.agent("left").consumes(Seed).publishes(Left).calls(left)
    flock.agent("right").consumes(Seed).publishes(Right).calls(right)
    flock.agent("pair").consumes(Left, Right).publishes(Pair).calls(pair)
    flock.agent("bundle").consumes(Part, batch=BatchSpec(size=3)).publishes(Bundle).calls(bundle)
    flock.agent("final").consumes(Pair, Bundle).publishes(Final).calls(final)
    return flock


def seed_artifact(i: int) -> Artifact:
    return Artifact(
        id=uuid5(NAMESPACE, f"seed-{i}"),
        type="gates.Seed",
        payload=Seed(n=i).model_dump(mode="json"),
        correlation_id=f"gates-{i}",
    )


async def reference_board(n: int) -> set[tuple[Any, ...]]:
    flock = build(InMemoryStore())
    for i in range(n):
        await flock.publish(seed_artifact(i))
    await flock.run_until_idle()
    return signature(await flock.store.list())


async def torn_on_disk(path: Path) -> list[str]:
    async with SQLiteStore(path) as store:
        return torn(await store.list(), await store.consumptions())


async def check(path: Path, acked: set[UUID], n: int) -> list[str]:
    """The invariants after a resume; returns the violations (none on a good board)."""
    async with SQLiteStore(path) as store:
        arts = await store.list()
        consumed = await store.consumptions()
        in_flight = await store.in_flight()
    problems: list[str] = []
    lost = acked - {a.id for a in arts}
    if lost:
        problems.append(f"{len(lost)} acknowledged artifacts lost")
    activations = Counter((a.produced_by, a.consumed_from) for a in arts if a.produced_by != "external")
    for (agent, inputs), count in activations.items():
        if count > (3 if agent == "split" else 1):
            problems.append(f"duplicated: {agent} made {count} outputs from {inputs}")
    problems += torn(arts, consumed)
    finals = Counter(a.payload["n"] for a in arts if a.type == "gates.Final")
    if finals != Counter(range(n)):
        problems.append(f"workflows without exactly one Final: {sorted(set(range(n)) ^ set(finals))[:5]}")
    if in_flight:
        problems.append(f"{len(in_flight)} activations still in flight after resume")
    want, got = await reference_board(n), signature(arts)
    if got != want:
        problems.append(
            f"board differs from an uninterrupted run: {len(want - got)} missing, {len(got - want)} extra"
        )
    return problems


def crash_and_resume(path: Path, n: int, rng: random.Random, *, window: float = 0.2) -> dict[str, Any]:
    """Kill a run at a random moment, sometimes kill the first resume too, resume, check the board."""
    acked, finished = child("run", path, n, kill_after=rng.uniform(0.0, window), script=__file__)
    problems = [f"after the kill: {p}" for p in anyio.run(torn_on_disk, path)]
    resume_killed = False
    if rng.random() < 0.3:
        _, done = child("resume", path, n, kill_after=rng.uniform(0.0, window / 3), script=__file__)
        resume_killed = not done
        problems += [f"after the killed resume: {p}" for p in anyio.run(torn_on_disk, path)]
    _, resumed = child("resume", path, n, script=__file__)
    problems += anyio.run(check, path, acked, n) if resumed else ["the resuming process did not finish"]
    return {
        "acked": len(acked),
        "killed_mid_run": not finished,
        "resume_killed": resume_killed,
        "problems": problems,
    }


async def run(path: Path, n: int) -> None:
    flock = build(SQLiteStore(path))
    print("READY", flush=True)
    published = anyio.Event()

    async def publisher() -> None:
        for i in range(n):
            art = seed_artifact(i)
            await flock.publish(art)
            print(f"ACK {art.id}", flush=True)
            await anyio.sleep(0.004)
        published.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publisher)
        while not published.is_set():
            await flock.run_until_idle()
            await anyio.sleep(0.002)
    await flock.run_until_idle()
    await flock.store.close()
    print("DONE", flush=True)


async def resume(path: Path, n: int) -> None:
    flock = build(SQLiteStore(path))
    print("READY", flush=True)
    await flock.resume()
    for i in range(n):
        art = seed_artifact(i)
        if await flock.store.get(art.id) is None:
            await flock.publish(art)
    await flock.run_until_idle()
    await flock.store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    mode, board, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    anyio.run(run if mode == "run" else resume, board, count)
