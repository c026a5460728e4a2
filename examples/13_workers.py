"""Two worker processes and a publisher share one board on PostgreSQL (see docs/scaling-out.md).

    pip install 'flock[postgres]'
    python examples/13_workers.py postgresql://user:password@localhost/flock

The publisher stores 20 articles; routing queues one activation each in the board's shared queue;
two ``flock worker 13_workers:flock`` processes claim them (each exactly once). A ``digest`` agent
takes the summaries in batches of up to 5: one of the workers is the board's router and collects
the batches, so every summary lands in exactly one digest. The publisher waits until every summary
is in a digest, then stops the workers with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
from pydantic import BaseModel

from flock import BatchSpec, Flock, flock_type


@flock_type(name="example.Article")
class Article(BaseModel):
    title: str


@flock_type(name="example.Summary")
class Summary(BaseModel):
    title: str
    worker: int


@flock_type(name="example.Digest")
class Digest(BaseModel):
    titles: list[str]


def digest(*summaries: Summary) -> Digest:
    return Digest(titles=[s.title for s in summaries])


async def summarize(article: Article) -> Summary:
    await anyio.sleep(0.05)  # stands in for the model call
    return Summary(title=article.title.upper(), worker=os.getpid())


def build(store: object = None) -> Flock:
    board = Flock(store=store) if store is not None else Flock()
    board.agent("summarizer").consumes(Article).publishes(Summary).calls(summarize)
    board.agent("digest").consumes(Summary, batch=BatchSpec(size=5, per_correlation=False)).publishes(
        Digest
    ).calls(digest)
    return board


flock = build()  # what `flock worker 13_workers:flock --store ...` runs (--store gives it the board)


async def publish_and_wait(dsn: str, n: int) -> tuple[list[Summary], list[Digest]]:
    from flock import PostgresStore

    async with PostgresStore(dsn, schema="example_workers") as store:
        publisher = build(store)
        for i in range(n):
            await publisher.publish(Article(title=f"article {i}"))
        while True:  # the workers do the work; this process only watches the board
            digests = await store.get_by_type(Digest)
            if sum(len(d.titles) for d in digests) >= n:
                return await store.get_by_type(Summary), digests
            await anyio.sleep(0.1)


def main() -> None:
    dsn = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FLOCK_POSTGRES_DSN")
    if not dsn:
        print(__doc__)
        sys.exit(2)
    here = Path(__file__).resolve().parent
    command = [sys.executable, "-m", "flock", "worker", "13_workers:flock", "--store", dsn]
    command += ["--schema", "example_workers", "--concurrency", "4"]
    workers = [subprocess.Popen(command, cwd=here, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        summaries, digests = anyio.run(publish_and_wait, dsn, 20)
    finally:
        for worker in workers:
            assert worker.stdout is not None
            worker.stdout.readline()  # the banner: from here on SIGTERM stops it gracefully
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=60) for worker in workers]
    by_worker = Counter(s.worker for s in summaries)
    shares = sorted(by_worker.values())
    print(f"{len(summaries)} summaries, each made once, by {len(by_worker)} workers: {shares}")
    digested = sorted(t for d in digests for t in d.titles)
    once = digested == sorted(s.title for s in summaries)
    print(f"{len(digests)} digests; every summary in exactly one: {once}")
    print(f"workers stopped with exit codes {codes}")


if __name__ == "__main__":
    main()
