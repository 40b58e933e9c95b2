"""The SR backend the reader calls: coalescing, degradation and background jobs (no HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cache import BACKGROUND_RECOMPUTE
from sr_engine import ModelUnavailableError
from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import regular_field
from sr_engine.metrics import SR_DEGRADED
from sr_engine.runtime import Overloaded
from tests.apps.polling import wait_until
from tests.apps.upscalers import FailOn, TestUpscaler
from tileserver.settings import Settings
from tileserver.sr_backend import ResolvedMode, SRBackend, SRInferenceError, job_key

SCALE = (2.7, 2.7)
OUT = (256, 256)
ORIGIN = (2.3, 2.6)
OFFSET = (1000, 2000)
FIELD = regular_field(np.array([ORIGIN]), SCALE, OUT)[0]


def window(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (3, 100, 100)).astype(np.float32)


def tile(backend: SRBackend, lr: np.ndarray, mode: str) -> tuple[np.ndarray, str, str]:
    return backend.upscale_tile(lr, FIELD, OFFSET, backend.resolve(mode))


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def make_backend(
    upscaler: TestUpscaler, gate: threading.Event | None = None, **options: float
) -> SRBackend:
    """A started (warmed) backend; ``gate`` then holds every model call."""
    settings = Settings(sr_max_batch=8, sr_max_wait_ms=1.0, sr_queue_limit=4, **options)  # type: ignore[call-arg]
    backend = SRBackend(settings, model=upscaler)
    backend.start()
    upscaler.gate = gate
    return backend


def test_resolve_gives_the_concrete_mode_and_only_auto_may_degrade() -> None:
    backend = make_backend(TestUpscaler())
    assert backend.resolve("auto") == ResolvedMode("fast", TestUpscaler.halo, may_degrade=True)
    assert backend.resolve("diffusion") == ResolvedMode("diffusion", TestUpscaler.halo)
    assert backend.resolve("bicubic") == ResolvedMode("bicubic", BicubicUpscaler.halo)
    with pytest.raises(ModelUnavailableError):
        backend.resolve("nonsense")
    backend.drain()
    without_model = SRBackend(Settings(model_path="/nonexistent/hndsr.safetensors"))  # type: ignore[call-arg]
    assert without_model.resolve("auto") == ResolvedMode("bicubic", BicubicUpscaler.halo)
    with pytest.raises(ModelUnavailableError):
        without_model.resolve("fast")


def test_identical_concurrent_tiles_run_the_model_once(gate: threading.Event) -> None:
    upscaler = TestUpscaler()
    backend = make_backend(upscaler, gate)
    warm = len(upscaler.calls)
    lr = window(1)
    key = (job_key(lr, FIELD, OFFSET, "fast", upscaler.version), False)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(tile, backend, lr, "fast") for _ in range(6)]
        try:
            wait_until(lambda: backend.flights.waiting(key) == 5, what="5 waiters")
        finally:
            gate.set()
        results = [future.result(timeout=30) for future in futures]
    assert len(upscaler.calls) - warm == 1
    assert all(np.array_equal(hr, results[0][0]) for hr, _, _ in results)
    assert {(mode, model) for _, mode, model in results} == {("fast", "test-sr-1")}
    backend.drain()


def test_overload_degrades_auto_and_refuses_explicit_modes(gate: threading.Event) -> None:
    upscaler = TestUpscaler()
    backend = make_backend(upscaler, gate)
    runtime = backend.runtime
    assert runtime is not None
    upscaler.entered.clear()
    with ThreadPoolExecutor(5) as pool:
        try:
            held = pool.submit(tile, backend, window(0), "fast")
            wait_until(upscaler.entered.is_set, what="the held model call")
            queued = [pool.submit(tile, backend, window(i), "fast") for i in range(1, 5)]
            wait_until(lambda: runtime.pending == 4, what="a full queue")
            degraded_before = SR_DEGRADED._value.get()
            hr, mode, model = tile(backend, window(9), "auto")
            assert (mode, model) == ("degraded-bicubic", "bicubic-1")
            assert SR_DEGRADED._value.get() == degraded_before + 1
            lr = window(9)[None]
            bicubic = BicubicUpscaler().upscale_batch(lr, FIELD[None])
            assert np.abs(hr - bicubic[0]).max() * 255 <= 1
            with pytest.raises(Overloaded) as refused:
                tile(backend, window(9), "fast")
            assert refused.value.retry_after >= 1
            # the reader's check before its read refuses the same, and lets auto through
            with pytest.raises(Overloaded):
                backend.admit(backend.resolve("fast"))
            backend.admit(backend.resolve("auto"))
            token = BACKGROUND_RECOMPUTE.set(True)
            try:
                backend.admit(backend.resolve("fast"))  # background jobs have their own queue
            finally:
                BACKGROUND_RECOMPUTE.reset(token)
        finally:
            gate.set()
        assert all(future.result(timeout=30)[1] == "fast" for future in [held, *queued])
    backend.drain()


def test_a_failed_batch_degrades_auto_and_is_an_error_for_explicit_modes() -> None:
    backend = make_backend(TestUpscaler(fail_when=FailOn(0.25)))
    poison = np.full((3, 100, 100), 0.25, dtype=np.float32)
    assert tile(backend, poison, "auto")[1] == "degraded-bicubic"
    with pytest.raises(SRInferenceError):
        tile(backend, poison, "diffusion")
    assert tile(backend, window(3), "diffusion")[1] == "diffusion"
    backend.drain()


def test_a_background_recompute_waits_instead_of_degrading() -> None:
    gate = threading.Event()
    gate.set()
    upscaler = TestUpscaler()
    backend = make_backend(upscaler, gate, sr_latency_budget_ms=1e-6)
    gate.clear()
    upscaler.entered.clear()
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(tile, backend, window(1), "fast")  # idle runtime: admitted
        wait_until(upscaler.entered.is_set, what="the held model call")
        # a foreground batch runs and the warm-up measured the batch time: over a 1 ns budget
        assert tile(backend, window(2), "auto")[1] == "degraded-bicubic"

        def recompute() -> str:
            token = BACKGROUND_RECOMPUTE.set(True)
            try:
                return tile(backend, window(2), "auto")[1]
            finally:
                BACKGROUND_RECOMPUTE.reset(token)

        background = pool.submit(recompute)
        gate.set()
        assert background.result(timeout=30) == "fast"
        held.result(timeout=30)
    backend.drain()


def test_a_backend_never_started_starts_its_runtime_on_first_use() -> None:
    settings = Settings()  # type: ignore[call-arg]
    backend = SRBackend(settings, model=TestUpscaler())
    assert tile(backend, window(1), "fast")[1] == "fast"
    backend.drain()
    with pytest.raises(Overloaded, match="not running"):
        tile(backend, window(2), "fast")  # drained: stopped for good
