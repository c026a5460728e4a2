"""A 5-agent pipeline (and a silent sixth) on a SQLite board, run as a child process that the crash
test kills.

    python crash_pipeline.py run BOARD N      # publish N seeds while the pipeline runs
    python crash_pipeline.py resume BOARD N   # reopen, resume(), publish the seeds still missing

``run`` prints ``READY`` once the board is open, ``ACK <id>`` after each ``publish`` returns (the
artifact is acknowledged: it must survive any crash after that line) and ``DONE`` at the end.

The pipeline: ``split`` turns a Seed into two Parts; ``work`` and ``audit`` both consume every
Part (``work`` fails on some, which must leave a WorkflowError); ``report`` consumes Done;
``archive`` consumes Report; ``witness`` consumes every Part too and publishes nothing, so its
commits are the ones the orchestrator does not wait for. Agents are async and yield, so a kill
lands in the middle of activations. Seeds have fixed ids and every other id is derived from its
activation, so every run that finishes, interrupted or not, must produce exactly the same board
(:func:`reference_board`).

:func:`check` states the invariants a board must meet after a resume.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import anyio
from pydantic import BaseModel

from flock import Artifact, Flock, InMemoryStore, SQLiteStore, flock_type

NAMESPACE = UUID("0b5d7c59-3a49-4b7a-9f0a-51f3f9f5c2a1")
OUTPUTS_PER_ACTIVATION = {"split": 2, "work": 1, "audit": 1, "report": 1, "archive": 1, "witness": 0}
SILENT = "witness"  # consumes every Part, publishes nothing


@flock_type(name="crash.Seed")
class Seed(BaseModel):
    n: int


@flock_type(name="crash.Part")
class Part(BaseModel):
    n: int
    k: int


@flock_type(name="crash.Done")
class Done(BaseModel):
    n: int
    k: int
    value: int


@flock_type(name="crash.Audit")
class Audit(BaseModel):
    n: int
    k: int


@flock_type(name="crash.Report")
class Report(BaseModel):
    text: str


@flock_type(name="crash.Archived")
class Archived(BaseModel):
    text: str


async def split(seed: Seed) -> list[Part]:
    await anyio.sleep(0.001)
    return [Part(n=seed.n, k=0), Part(n=seed.n, k=1)]


async def work(part: Part) -> Done:
    await anyio.sleep(0.002)
    if part.n % 7 == 3 and part.k == 1:
        raise RuntimeError(f"part {part.n}/{part.k} cannot be worked")
    return Done(n=part.n, k=part.k, value=(part.n * 10 + part.k) ** 2)


async def audit(part: Part) -> Audit:
    await anyio.sleep(0.001)
    return Audit(n=part.n, k=part.k)


async def report(done: Done) -> Report:
    await anyio.sleep(0.001)
    return Report(text=f"{done.n}/{done.k} = {done.value}")


async def archive(rep: Report) -> Archived:
    return Archived(text=rep.text.upper())


async def witness(part: Part) -> None:
    await anyio.sleep(0.001)


def build(store: Any) -> Flock:
    flock = Flock(store=store)
    flock.agent("split").consumes(Seed).publishes(Part, fan_out=2).calls(split)
    flock.agent("work").consumes(Part).publishes(Done).calls(work)
    flock.agent("audit").consumes(Part).publishes(Audit).calls(audit)
    flock.agent("report").consumes(Done).publishes(Report).calls(report)
    flock.agent("archive").consumes(Report).publishes(Archived).calls(archive)
    flock.agent(SILENT).consumes(Part).calls(witness)
    return flock


def seed_artifact(i: int) -> Artifact:
    """Seed ``i`` with a fixed id and workflow, so a re-publish is recognisable."""
    return Artifact(
        id=uuid5(NAMESPACE, f"seed-{i}"),
        type="crash.Seed",
        payload=Seed(n=i).model_dump(mode="json"),
        correlation_id=f"wf-{i}",
    )


def signature(artifacts: list[Artifact]) -> set[tuple[Any, ...]]:
    """What two boards must agree on (everything except publication times)."""
    return {
        (a.id, a.type, repr(sorted(a.payload.items())), a.produced_by, a.consumed_from) for a in artifacts
    }


async def reference_board(n: int) -> set[tuple[Any, ...]]:
    """The board of an uninterrupted run, in memory."""
    flock = build(InMemoryStore())
    for i in range(n):
        await flock.publish(seed_artifact(i))
    await flock.run_until_idle()
    return signature(await flock.store.list())


def torn(arts: list[Artifact], consumed: set[tuple[UUID, str, int]]) -> list[str]:
    """Outputs without the consumption records of their inputs, consumption records with no
    outputs (and no WorkflowError), or the silent agent's consumption of something not on the
    board. Must hold at every moment, a crash included, not only after a resume."""
    problems = []
    consumers = {(i, agent) for i, agent, _ in consumed}
    for a in arts:
        for i in a.consumed_from:
            if (i, a.produced_by) not in consumers:
                problems.append(f"torn: {a.produced_by}'s output {a.id} has no consumption record of {i}")
    made = {(i, a.produced_by) for a in arts for i in a.consumed_from}
    ids = {a.id for a in arts}
    for i, agent, _ in consumed:
        if agent == SILENT:
            if i not in ids:
                problems.append(f"torn: {SILENT} consumed {i}, which is not on the board")
        elif (i, agent) not in made:
            problems.append(
                f"torn: {agent} consumed {i} but nothing (no output, no WorkflowError) came of it"
            )
    return problems


async def torn_on_disk(path: Path) -> list[str]:
    async with SQLiteStore(path) as store:
        return torn(await store.list(), await store.consumptions())


async def check(path: Path, acked: set[UUID], n: int) -> list[str]:
    """The invariants after a resume; returns the violations (none on a good board)."""
    problems: list[str] = []
    async with SQLiteStore(path) as store:
        arts = await store.list()
        consumed = await store.consumptions()
        in_flight = await store.in_flight()
    ids = {a.id for a in arts}
    lost = acked - ids
    if lost:
        problems.append(f"{len(lost)} acknowledged artifacts lost: {sorted(map(str, lost))[:3]}")
    outputs = Counter(
        (a.produced_by, a.consumed_from) for a in arts if a.type not in ("crash.Seed", "flock.WorkflowError")
    )
    for (agent, inputs), count in outputs.items():
        if count > OUTPUTS_PER_ACTIVATION[agent]:
            problems.append(f"duplicated: {agent} made {count} outputs from {inputs}")
    problems += torn(arts, consumed)
    parts = {a.id for a in arts if a.type == "crash.Part"}
    by_silent = Counter(i for i, agent, _ in consumed if agent == SILENT)
    if set(by_silent) != parts or any(count != 1 for count in by_silent.values()):
        problems.append(
            f"{SILENT} consumption records: {len(parts - set(by_silent))} parts without one, "
            f"{sum(1 for c in by_silent.values() if c != 1)} with more than one"
        )
    if in_flight:
        problems.append(f"{len(in_flight)} activations still in flight after resume")
    want = await reference_board(n)
    got = signature(arts)
    if got != want:
        problems.append(
            f"board differs from an uninterrupted run: {len(want - got)} missing, {len(got - want)} extra"
        )
    return problems


def child(
    mode: str, path: Path, n: int, kill_after: float | None = None, *, script: str = __file__
) -> tuple[set[UUID], bool]:
    """Run ``script`` (this one, or another scenario with the same command line and output) in a
    child process, SIGKILL it ``kill_after`` seconds after it printed READY (unless it is done by
    then). Returns the acknowledged seed ids and whether it printed DONE."""
    lines: list[str] = []
    ready = threading.Event()
    with (
        open(path.with_suffix(f".{mode}.stderr"), "a") as errors,
        subprocess.Popen(
            [sys.executable, script, mode, str(path), str(n)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        ) as proc,
    ):

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.strip())
                if line.startswith("READY"):
                    ready.set()
            ready.set()

        reader = threading.Thread(target=read)
        reader.start()
        if kill_after is not None:
            ready.wait(timeout=60)
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
        reader.join()
    return {UUID(line.split()[1]) for line in lines if line.startswith("ACK ")}, "DONE" in lines


def crash_and_resume(path: Path, n: int, rng: random.Random, *, window: float = 0.2) -> dict[str, Any]:
    """Kill a run at a random moment, sometimes kill the first resume too, resume, check the board."""
    acked, finished = child("run", path, n, kill_after=rng.uniform(0.0, window))
    problems = [f"after the kill: {p}" for p in anyio.run(torn_on_disk, path)]
    resume_killed = False
    if rng.random() < 0.3:
        _, done = child("resume", path, n, kill_after=rng.uniform(0.0, window / 3))
        resume_killed = not done
        problems += [f"after the killed resume: {p}" for p in anyio.run(torn_on_disk, path)]
    _, resumed = child("resume", path, n)
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
    await flock.resume()  # first: finish what the killed process left
    for i in range(n):  # then publish what it never got to (fixed ids tell which)
        art = seed_artifact(i)
        if await flock.store.get(art.id) is None:
            await flock.publish(art)
    await flock.run_until_idle()
    await flock.store.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    mode, board, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    anyio.run(run if mode == "run" else resume, board, count)
