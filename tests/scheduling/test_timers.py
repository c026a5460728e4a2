"""Timers: every/after/at/cron schedules, ticks in ctx.tick, and runs that never hang on them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import anyio
import pytest
from pydantic import BaseModel

from flock import (
    ConfigurationError,
    Context,
    EvalInputs,
    Flock,
    FlockClosedError,
    ManualClock,
    SystemClock,
    Tick,
    Until,
    flock_type,
)

pytestmark = pytest.mark.anyio

START = datetime(2030, 1, 1, tzinfo=UTC)  # a Tuesday; ManualClock's default start


@flock_type(name="sched.Beat")
class Beat(BaseModel):
    iteration: int
    fired_at: datetime


@flock_type(name="sched.Never")
class Never(BaseModel):
    pass


class Heart:
    """A scheduled engine: records each tick and the inputs it was given."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.inputs: list[int] = []
        self.workflows: list[str] = []
        self._changed = anyio.Event()

    async def wait_for(self, n: int) -> None:
        while len(self.ticks) < n:
            await self._changed.wait()

    def __call__(self, ctx: Context, inputs: EvalInputs) -> Beat:
        assert ctx.tick is not None
        self.ticks.append(ctx.tick)
        self._changed.set()
        self._changed = anyio.Event()
        self.inputs.append(len(inputs.artifacts))
        self.workflows.append(ctx.correlation_id)
        return Beat(iteration=ctx.tick.iteration, fired_at=ctx.tick.fired_at)

    @property
    def times(self) -> list[datetime]:
        return [t.fired_at for t in self.ticks]


def scheduled(clock: ManualClock | SystemClock | None = None, **schedule: object) -> tuple[Flock, Heart]:
    flock = Flock(clock=clock or ManualClock())
    heart = Heart()
    flock.agent("heart").schedule(**schedule).publishes(Beat).calls(heart)  # type: ignore[arg-type]
    return flock, heart


async def test_every_with_max_repeats_runs_exactly_that_often() -> None:
    flock, heart = scheduled(every=timedelta(minutes=1), max_repeats=3)
    assert await flock.run_until(Until.artifact_count(Beat).at_least(3), timeout=5)
    assert [t.iteration for t in heart.ticks] == [1, 2, 3]
    assert heart.times == [START, START + timedelta(minutes=1), START + timedelta(minutes=2)]
    assert await flock.run_until(Until.artifact_count(Beat).at_least(4), timeout=5) is False
    assert len(heart.ticks) == 3  # no fourth run, however long the flock runs


async def test_a_tick_is_context_not_an_input_and_each_tick_is_a_new_workflow() -> None:
    flock, heart = scheduled(every=30, max_repeats=2)
    await flock.run_until(Until.artifact_count(Beat).exactly(2), timeout=5)
    assert heart.inputs == [0, 0]
    assert len(set(heart.workflows)) == 2
    beats = [a for a in await flock.store.list() if a.type == "sched.Beat"]
    assert [b.correlation_id for b in beats] == heart.workflows
    assert all(b.consumed_from == () and b.produced_by == "heart" for b in beats)
    assert [Beat.model_validate(b.payload).iteration for b in beats] == [1, 2]


async def test_after_delays_a_one_off_run() -> None:
    flock, heart = scheduled(after=timedelta(hours=2))
    assert await flock.run_until(Until.exists(Beat), timeout=5)
    assert heart.times == [START + timedelta(hours=2)]
    assert await flock.run_until(Until.artifact_count(Beat).at_least(2), timeout=5) is False


async def test_after_delays_the_first_of_a_repeating_run() -> None:
    flock, heart = scheduled(every=timedelta(minutes=10), after=timedelta(minutes=5), max_repeats=3)
    await flock.run_until(Until.artifact_count(Beat).at_least(3), timeout=5)
    assert heart.times == [START + timedelta(minutes=m) for m in (5, 15, 25)]


async def test_at_a_time_of_day_runs_daily() -> None:
    flock, heart = scheduled(at=time(9, 30), max_repeats=3)
    await flock.run_until(Until.artifact_count(Beat).at_least(3), timeout=5)
    assert heart.times == [START + timedelta(days=d, hours=9, minutes=30) for d in range(3)]


async def test_at_a_datetime_runs_once() -> None:
    moment = START + timedelta(days=3, hours=1)
    flock, heart = scheduled(at=moment)
    assert await flock.run_until(Until.exists(Beat), timeout=5)
    assert await flock.run_until(Until.artifact_count(Beat).at_least(2), timeout=5) is False
    assert heart.times == [moment]


async def test_at_a_datetime_already_past_runs_once_at_the_start() -> None:
    flock, heart = scheduled(at=START - timedelta(days=1))
    assert await flock.run_until(Until.exists(Beat), timeout=5)
    assert heart.times == [START]
    assert await flock.run_until(Until.artifact_count(Beat).at_least(2), timeout=5) is False


async def test_cron_every_quarter_hour() -> None:
    flock, heart = scheduled(cron="*/15 * * * *", max_repeats=4)
    await flock.run_until(Until.artifact_count(Beat).at_least(4), timeout=5)
    assert heart.times == [START + timedelta(minutes=m) for m in (0, 15, 30, 45)]


async def test_cron_on_weekday_mornings() -> None:
    flock, heart = scheduled(cron="30 9 * * 1-5", max_repeats=5)
    await flock.run_until(Until.artifact_count(Beat).at_least(5), timeout=5)
    # 2030-01-01 is a Tuesday: Tue, Wed, Thu, Fri, then (skipping the weekend) Monday the 7th.
    assert [t.strftime("%a %d %H:%M") for t in heart.times] == [
        "Tue 01 09:30",
        "Wed 02 09:30",
        "Thu 03 09:30",
        "Fri 04 09:30",
        "Mon 07 09:30",
    ]


async def test_cron_lists_ranges_and_steps() -> None:
    flock, heart = scheduled(cron="0,30 8-10/2 1 * *", max_repeats=5)
    await flock.run_until(Until.artifact_count(Beat).at_least(5), timeout=5)
    assert [t.strftime("%m-%d %H:%M") for t in heart.times] == [
        "01-01 08:00",
        "01-01 08:30",
        "01-01 10:00",
        "01-01 10:30",
        "02-01 08:00",
    ]


async def test_cron_with_both_day_fields_matches_either_and_a_start_with_a_step() -> None:
    # Noon on the 1st of the month or on Mondays; minutes 5, 25, 45 ("5/20" runs to the end of the range).
    flock, heart = scheduled(cron="5/20 12 1 * 1", max_repeats=6)
    await flock.run_until(Until.artifact_count(Beat).at_least(6), timeout=5)
    assert [t.strftime("%a %d %H:%M") for t in heart.times] == [
        "Tue 01 12:05",
        "Tue 01 12:25",
        "Tue 01 12:45",
        "Mon 07 12:05",
        "Mon 07 12:25",
        "Mon 07 12:45",
    ]


@pytest.mark.parametrize(
    "expression",
    [
        *("* * * *", "* * * * * *", ""),  # not five fields
        *("61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8"),  # out of range
        *("*/0 * * * *", "5-1 * * * *", "1-x * * * *", "a * * * *", "1,,2 * * * *"),  # malformed
        "0 0 31 2 *",  # never fires
    ],
)
def test_an_invalid_cron_expression_fails_at_declaration(expression: str) -> None:
    flock = Flock()
    with pytest.raises(ConfigurationError, match="cron"):
        flock.agent("x").schedule(cron=expression)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"every": 60, "cron": "* * * * *"},
        {"every": 60, "at": time(9)},
        {"every": timedelta(0)},
        {"every": -5},
        {"after": -1},
        {"at": "09:00"},
        {"at": datetime(2030, 1, 1, 9)},  # naive
        {"every": 60, "max_repeats": 0},
        # past the calendar's end: the run crashed with an OverflowError once the first tick ran
        {"every": 10**12},
        {"every": timedelta.max},
        {"every": 60, "after": 10**12},
    ],
)
def test_invalid_schedules_fail_at_declaration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=r"schedule|max_repeats"):
        Flock().agent("x").schedule(**kwargs)  # type: ignore[arg-type]


async def test_run_until_idle_does_not_wait_for_an_endless_timer() -> None:
    flock, heart = scheduled(every=timedelta(seconds=1))
    with anyio.fail_after(5):
        summary = await flock.run_until_idle()
    assert [t.iteration for t in heart.ticks] == [1]  # the due tick ran; the next one is passive
    assert summary.activations == 1


async def test_run_until_idle_does_not_wait_for_an_endless_real_timer() -> None:
    flock, heart = scheduled(SystemClock(), every=timedelta(hours=1))
    with anyio.fail_after(5):
        await flock.run_until_idle()
        await flock.run_until_idle()
    assert len(heart.ticks) == 1


async def test_run_until_timeout_bounds_an_endless_timer() -> None:
    flock, heart = scheduled(every=timedelta(seconds=1))
    with anyio.fail_after(5):
        # 0.5 s of real time: with autojump, plenty for several ticks even on a busy machine
        assert await flock.run_until(Until.exists(Never), timeout=0.5) is False
    assert len(heart.ticks) > 1
    assert [t.iteration for t in heart.ticks] == list(range(1, len(heart.ticks) + 1))


async def test_run_until_timeout_bounds_a_real_timer() -> None:
    flock, heart = scheduled(SystemClock(), every=timedelta(milliseconds=10))
    with anyio.fail_after(5):
        assert await flock.run_until(Until.exists(Never), timeout=0.15) is False
    assert len(heart.ticks) >= 1


async def test_shutdown_stops_a_running_timer_loop() -> None:
    flock, heart = scheduled(SystemClock(), every=timedelta(hours=1))
    results: list[bool] = []

    async def run() -> None:
        results.append(await flock.run_until(Until.exists(Never), timeout=30))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await heart.wait_for(1)
            await flock.shutdown()  # the next tick is an hour away: the run must end now
    assert results == [False]
    with pytest.raises(FlockClosedError):
        await flock.run_until_idle()


async def test_ticks_continue_across_runs_without_repeating() -> None:
    clock = ManualClock(autojump=False)
    flock, heart = scheduled(clock, every=timedelta(minutes=1))
    await flock.run_until_idle()
    assert [t.iteration for t in heart.ticks] == [1]
    await flock.run_until_idle()  # no time passed: nothing is due
    assert len(heart.ticks) == 1
    clock.advance(timedelta(minutes=1))
    await flock.run_until_idle()
    assert [t.iteration for t in heart.ticks] == [1, 2]
    assert heart.times == [START, START + timedelta(minutes=1)]


async def test_missed_ticks_are_coalesced_into_one_late_run() -> None:
    clock = ManualClock(autojump=False)
    flock, heart = scheduled(clock, every=timedelta(minutes=1))
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=10, seconds=30))  # nothing ran for ten periods
    await flock.run_until_idle()
    assert [t.iteration for t in heart.ticks] == [1, 2]  # one late run, not a burst of ten
    clock.advance(timedelta(seconds=30))
    await flock.run_until_idle()
    assert heart.times[1:] == [START + timedelta(minutes=10, seconds=30), START + timedelta(minutes=11)]


async def test_missed_cron_firings_are_coalesced_too() -> None:
    clock = ManualClock(autojump=False)
    flock, heart = scheduled(clock, cron="*/15 * * * *")
    await flock.run_until_idle()
    clock.advance(timedelta(hours=2, minutes=5))
    await flock.run_until_idle()
    clock.advance(timedelta(minutes=10))
    await flock.run_until_idle()
    assert [t.strftime("%H:%M") for t in heart.times] == ["00:00", "02:05", "02:15"]


async def test_a_manual_clock_without_autojump_waits_for_advance() -> None:
    clock = ManualClock(autojump=False)
    flock, heart = scheduled(clock, every=timedelta(minutes=1), max_repeats=3)
    found: list[bool] = []

    async def run() -> None:
        found.append(await flock.run_until(Until.artifact_count(Beat).at_least(3), timeout=5))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            for _ in range(2):
                await heart.wait_for(int(clock.monotonic() // 60) + 1)
                clock.advance(60)
    assert found == [True]
    assert heart.times == [START + timedelta(minutes=m) for m in range(3)]


async def test_a_scheduled_agent_can_also_consume() -> None:
    flock = Flock(clock=ManualClock())
    seen: list[str] = []

    def both(*models: BaseModel, ctx: Context) -> None:
        seen.append("tick" if ctx.tick else type(models[0]).__name__)

    flock.agent("both").consumes(Never).schedule(after=60).calls(both)
    await flock.publish(Never())
    await flock.run_until_idle()  # the artifact runs it; the tick, a minute away, is passive
    assert seen == ["Never"]
    assert await flock.run_until(Until.exists(Beat), timeout=5) is False  # idle once the tick ran
    assert seen == ["Never", "tick"]


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=START)
    clock.advance(timedelta(seconds=90))
    clock.advance(0.5)
    assert clock.now() == START + timedelta(seconds=90.5)
    assert clock.monotonic() == 90.5
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_a_manual_clock_refuses_to_go_back_and_says_what_it_takes() -> None:
    clock = ManualClock()
    with pytest.raises(ConfigurationError, match=r"ManualClock\.advance\(-5\): a clock cannot go back"):
        clock.advance(-5)
    clock.advance(timedelta(seconds=5))
    assert clock.monotonic() == 5
