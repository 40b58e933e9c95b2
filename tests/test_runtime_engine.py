"""The SR runtime with real threads: batching, fault isolation, backpressure, drain."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future

import numpy as np
import pytest

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import regular_field
from sr_engine.runtime import Overloaded, SRRuntime
from tests.apps.polling import wait_until
from tests.apps.upscalers import FailOn, TestUpscaler

SCALE = (2.7, 2.7)
OUT = (256, 256)


def window(seed: int, size: tuple[int, int] = (100, 100)) -> np.ndarray:
    """A random (3, h, w) window; its origin inside the halo is (2.3, 2.6)."""
    return np.random.default_rng(seed).uniform(0, 1, (3, *size)).astype(np.float32)


def field(
    out: tuple[int, int] = OUT,
    origin: tuple[float, float] = (2.3, 2.6),
    scale: tuple[float, float] = SCALE,
) -> np.ndarray:
    """The (H, W, 2) coordinate field of a regular tile at ``scale`` from ``origin``."""
    return regular_field(np.array([origin]), scale, out)[0]


def alone(lr: np.ndarray, origin: tuple[float, float] = (2.3, 2.6)) -> np.ndarray:
    return BicubicUpscaler().upscale_batch(lr[None], field(origin=origin)[None])[0]


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def make_runtime(upscaler: TestUpscaler, **options: object) -> SRRuntime:
    runtime = SRRuntime(upscaler, **options)  # type: ignore[arg-type]
    runtime.start()
    return runtime


def hold_worker(runtime: SRRuntime, upscaler: TestUpscaler) -> Future[np.ndarray]:
    """Submit one job and wait until the worker is inside the model call (held on the gate)."""
    future = runtime.submit(window(999), field())
    wait_until(upscaler.entered.is_set, what="the first model call")
    return future


def test_jobs_arriving_while_a_batch_runs_share_the_next_model_call(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    windows = [window(i, (99 + i % 2, 100 - i % 2)) for i in range(8)]
    futures = [runtime.submit(lr, field()) for lr in windows]
    wait_until(lambda: runtime.pending == 8, what="8 queued jobs")
    gate.set()
    results = [future.result(timeout=30) for future in futures]
    assert upscaler.batch_sizes == [1, 8]
    for lr, result in zip(windows, results, strict=True):
        assert result.shape == (3, *OUT)
        assert np.abs(result - alone(lr)).max() * 255 <= 1.0
    runtime.drain()


def test_a_batch_never_exceeds_max_batch(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=4, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    futures = [runtime.submit(window(i), field()) for i in range(10)]
    wait_until(lambda: runtime.pending == 10, what="10 queued jobs")
    gate.set()
    for future in futures:
        future.result(timeout=30)
    assert upscaler.batch_sizes == [1, 4, 4, 2]
    runtime.drain()


def test_modes_and_tile_sizes_ride_in_separate_batches(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    futures = [
        runtime.submit(window(1), field(), mode="fast"),
        runtime.submit(window(2), field(), mode="diffusion"),
        runtime.submit(window(3, (195, 195)), field((512, 512)), mode="fast"),
        runtime.submit(window(4), field(), mode="fast"),
    ]
    wait_until(lambda: runtime.pending == 4, what="4 queued jobs")
    gate.set()
    for future in futures:
        future.result(timeout=30)
    assert sorted(upscaler.calls[1:]) == [
        (1, (256, 256), "diffusion"),
        (1, (512, 512), "fast"),
        (2, (256, 256), "fast"),
    ]
    runtime.drain()


def test_a_failing_batch_fails_only_its_own_jobs(gate: threading.Event) -> None:
    poison = np.full((3, 100, 100), 0.25, dtype=np.float32)
    upscaler = TestUpscaler(gate=gate, fail_when=FailOn(0.25))
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    healthy = [runtime.submit(window(i), field()) for i in range(3)]
    doomed = [runtime.submit(poison, field((300, 300))) for _ in range(2)]
    wait_until(lambda: runtime.pending == 5, what="5 queued jobs")
    gate.set()
    for future in healthy:
        assert future.result(timeout=30).shape == (3, *OUT)
    for future in doomed:
        with pytest.raises(RuntimeError, match="injected model failure"):
            future.result(timeout=30)
    assert runtime.upscale(window(7), field()).shape == (3, *OUT)
    assert runtime.running
    runtime.drain()


def test_a_full_queue_rejects_with_a_retry_hint(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=2, queue_limit=2)
    hold_worker(runtime, upscaler)
    queued = [runtime.submit(window(i), field()) for i in range(2)]
    with pytest.raises(Overloaded) as rejected:
        runtime.submit(window(3), field())
    assert rejected.value.retry_after >= 1
    background = runtime.submit(window(4), field(), background=True)
    gate.set()
    for future in [*queued, background]:
        future.result(timeout=30)
    runtime.drain()


def test_the_latency_budget_rejects_once_batches_are_known_to_be_slower(
    gate: threading.Event,
) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, latency_budget_s=0.0)
    gate.set()
    runtime.upscale(window(0), field())  # admitted: no estimate yet
    assert runtime.expected_wait() > 0
    gate.clear()
    upscaler.entered.clear()
    held = runtime.submit(window(1), field())  # idle: admitted whatever the estimate says
    wait_until(upscaler.entered.is_set, what="the second model call")
    with pytest.raises(Overloaded, match="latency budget"):
        runtime.submit(window(2), field())  # a foreground batch runs: over the budget
    background = runtime.submit(window(3), field(), background=True)  # skips the budget
    gate.set()
    held.result(timeout=30)
    background.result(timeout=30)
    runtime.drain()


def test_an_idle_runtime_admits_although_its_estimate_is_over_the_budget() -> None:
    runtime = make_runtime(TestUpscaler(), latency_budget_s=0.0)
    runtime.upscale(window(0), field())
    assert runtime.expected_wait() > 0  # over the zero budget, and nothing will lower it
    for index in range(1, 4):  # each job finds the runtime idle again
        runtime.upscale(window(index), field())
    runtime.drain()


def test_drain_finishes_queued_batches_and_refuses_new_jobs(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=2, max_wait_ms=60_000)
    running = [runtime.submit(window(i), field()) for i in range(2)]  # a full batch starts now
    wait_until(upscaler.entered.is_set, what="the first model call")
    queued = [runtime.submit(window(i), field()) for i in range(3)]  # the last one waits 60 s
    drained = threading.Thread(target=runtime.drain)
    drained.start()
    wait_until(lambda: not runtime.running, what="the runtime to stop taking jobs")
    with pytest.raises(Overloaded):
        runtime.submit(window(5), field())
    gate.set()
    drained.join(timeout=30)
    assert not drained.is_alive()
    for future in [*running, *queued]:
        assert future.result(timeout=0).shape == (3, *OUT)
    assert upscaler.batch_sizes == [2, 2, 1]


def test_a_cancelled_job_is_not_computed(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    withdrawn = runtime.submit(window(1), field())
    kept = runtime.submit(window(2), field())
    assert withdrawn.cancel()
    gate.set()
    kept.result(timeout=30)
    assert upscaler.batch_sizes == [1, 1]
    runtime.drain()


def test_coroutines_await_results_without_blocking_the_loop() -> None:
    upscaler = TestUpscaler()
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=50.0)
    windows = [window(i) for i in range(6)]

    async def main() -> list[np.ndarray]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(runtime.aupscale(lr, field()) for lr in windows))
        task.cancel()
        assert ticks > 1
        return list(results)

    results = asyncio.run(main())
    assert len(upscaler.batch_sizes) < len(windows)
    for lr, result in zip(windows, results, strict=True):
        assert np.abs(result - alone(lr)).max() * 255 <= 1.0
    runtime.drain()


def test_warm_up_runs_every_mode_once_before_serving() -> None:
    upscaler = TestUpscaler()
    runtime = SRRuntime(upscaler, latency_budget_s=None)
    runtime.warm_up()
    assert [mode for _, _, mode in upscaler.calls] == ["fast", "diffusion"]
    assert runtime.expected_wait() > 0
    runtime.drain()


def test_an_unknown_mode_is_refused_at_submission() -> None:
    runtime = make_runtime(TestUpscaler())
    with pytest.raises(ValueError, match="mode"):
        runtime.submit(window(0), field(), mode="bicubic")
    runtime.drain()


def test_fields_of_scales_a_few_ulps_apart_share_a_batch(gate: threading.Event) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=1.0)
    hold_worker(runtime, upscaler)
    nearly = (2.7 + 4e-15, 2.7 - 4e-15)
    futures = [runtime.submit(window(1), field()), runtime.submit(window(2), field(scale=nearly))]
    wait_until(lambda: runtime.pending == 2, what="2 queued jobs")
    gate.set()
    for future in futures:
        future.result(timeout=30)
    assert upscaler.batch_sizes == [1, 2]
    runtime.drain()


def test_the_estimate_counts_queued_jobs_not_batches(gate: threading.Event) -> None:
    """A one-job batch (a warm-up) of 0.2 s makes each queued job count 0.2 s: eight queued
    jobs are expected to take 1.6 s or more, not one batch's 0.2 s."""
    upscaler = TestUpscaler(delay_s=0.2)
    runtime = make_runtime(upscaler, max_batch=8, max_wait_ms=1.0, latency_budget_s=None)
    runtime.upscale(window(0), field())
    upscaler.gate = gate
    hold_worker(runtime, upscaler)
    queued = [runtime.submit(window(i), field()) for i in range(1, 9)]
    assert runtime.expected_wait() >= 8 * 0.2
    gate.set()
    for future in queued:
        future.result(timeout=30)
    runtime.drain()


def test_admitted_tickets_hold_a_place_until_their_job_is_submitted(
    gate: threading.Event,
) -> None:
    upscaler = TestUpscaler(gate=gate)
    runtime = make_runtime(upscaler, max_batch=1, queue_limit=2)
    held = hold_worker(runtime, upscaler)
    first, second = runtime.reserve(), runtime.reserve()
    assert first.admitted and second.admitted
    third = runtime.reserve()  # two places taken by tickets of jobs not yet submitted
    assert not third.admitted and "queue is full" in str(third.refusal)
    queued = runtime.submit(window(1), field(), ticket=first)  # its place: no second check
    assert first.used and runtime.pending == 1
    with pytest.raises(Overloaded, match="queue is full"):  # one job and one ticket
        runtime.submit(window(2), field())
    runtime.release(first)  # used already: gives nothing back
    with pytest.raises(Overloaded, match="queue is full"):
        runtime.submit(window(2), field())
    runtime.release(second)
    later = runtime.submit(window(3), field())  # the place the released ticket held
    gate.set()
    for future in (held, queued, later):
        future.result(timeout=30)
    runtime.drain()


def test_a_runtime_holding_tickets_is_not_idle() -> None:
    """An idle runtime admits whatever its estimate says; one whose admitted tickets have
    not submitted yet is not idle, so a burst arriving at once is refused past the budget."""
    runtime = make_runtime(TestUpscaler(), latency_budget_s=0.0)
    runtime.upscale(window(0), field())
    assert runtime.reserve().admitted  # idle: admitted whatever the estimate says
    refused = runtime.reserve()
    assert not refused.admitted and "latency budget" in str(refused.refusal)
    runtime.drain()
