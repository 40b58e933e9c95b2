"""The SR serving runtime: micro-batching on a dedicated inference thread, with backpressure.

Callers (threads or coroutines) submit one tile each and get a future; a worker thread
groups queued jobs by ``BatchKey`` into ``upscale_batch`` calls of up to ``max_batch`` jobs,
waiting at most ``max_wait_ms`` for company. The queue is bounded and admission also checks
the expected wait against a latency budget: a job that cannot be served in time raises
``Overloaded`` at once, so the caller can degrade (bicubic) or answer 503 + Retry-After.

The runtime holds one entry per model version (``BatchKey.model``): a job names its version,
a batch runs on that version's upscaler, so a reload adds the new version, switches the
default and retires the old one, which is dropped once no queued or running job needs it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from sr_engine.batcher import BatchKey, Job, JobQueue, pad_window, padded_shape
from sr_engine.device import (
    DeviceConfig,
    apply_process_settings,
    device_config,
    host_buffer,
    inference_context,
)
from sr_engine.interface import (
    ModelUnavailableError,
    Upscaler,
    normalize_scale,
    regular_field,
)
from sr_engine.metrics import (
    SR_BATCH_DURATION,
    SR_BATCH_SIZE,
    SR_FAILED_TILES,
    SR_INFERENCES,
    SR_QUEUE_DEPTH,
    SR_TILES,
)

log = logging.getLogger(__name__)

EWMA_WEIGHT = 0.2
"""Weight of the newest batch in the running estimate of the model time per job."""


class Overloaded(ModelUnavailableError):
    """The runtime cannot take this job now (queue full, too slow, or stopping).

    A ``ModelUnavailableError``: the server answers an explicit mode with 503 + Retry-After.
    """

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        """Seconds after which a retry is likely to be admitted (for ``Retry-After``)."""


class UnknownModel(ModelUnavailableError):
    """A job named a model version the runtime does not hold (retired meanwhile)."""


@dataclass
class AdmissionTicket:
    """The runtime's answer to a request that asked before its window was read
    (``SRRuntime.reserve``): an admitted ticket holds a place in the queue estimate until
    the request's job is submitted with it (then admitted without a second check) or it is
    released; a refused one carries the ``refusal``."""

    refusal: Overloaded | None = None
    used: bool = False

    @property
    def admitted(self) -> bool:
        """The runtime admitted the job."""
        return self.refusal is None


class SRRuntime:
    """Batches upscaling jobs of one or more model versions onto one inference thread."""

    def __init__(
        self,
        upscaler: Upscaler,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        queue_limit: int = 64,
        latency_budget_s: float | None = 2.0,
        background_limit: int | None = None,
        device: DeviceConfig | None = None,
    ) -> None:
        if max_batch < 1 or queue_limit < 1:
            raise ValueError("max_batch and queue_limit must be >= 1")
        self.upscaler = upscaler
        """The default model (jobs that name no version); see ``add_model``."""
        self._models: dict[str, Upscaler] = {upscaler.version: upscaler}
        SR_FAILED_TILES.labels(version=upscaler.version)  # a 0 sample per served version
        self._jobs_of: Counter[str] = Counter()
        """Queued or running jobs per model version."""
        self._retired: set[str] = set()
        self.max_batch = max_batch
        self.queue_limit = queue_limit
        self.latency_budget_s = latency_budget_s
        self.background_limit = background_limit or queue_limit
        """Most background jobs waiting (each may hold a caller's thread)."""
        self.device = device or device_config("cpu")
        self._queue = JobQueue(max_batch, max_wait_ms / 1000.0)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy_since: float | None = None
        self._busy_jobs = 0
        """Jobs in the running batch."""
        self._reserved = 0
        """Admitted tickets whose job is not submitted yet (requests reading their window)."""
        self._busy_foreground = False
        """The running batch holds a foreground job (background-only batches do not block
        admission of an otherwise idle runtime)."""
        self._job_seconds: float | None = None
        """EWMA of a batch's duration per job: batches vary in size (a warm-up batch holds
        one job, a loaded runtime's hold ``max_batch``), so an estimate per batch would
        count a queue of eight jobs as one warm-up batch."""
        self._buffers: dict[tuple[int, ...], np.ndarray] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Apply the device's process settings and start the inference thread."""
        with self._cond:
            if self._thread is not None:
                return
            apply_process_settings(self.device)
            self._thread = threading.Thread(target=self._work, name="sr-runtime", daemon=True)
            self._thread.start()

    def warm_up(
        self,
        out_shape: tuple[int, int] = (256, 256),
        scale: float = 2.0,
        channels: int = 3,
        modes: tuple[str, ...] | None = None,
        model: str | None = None,
    ) -> None:
        """Run one batch per mode (allocations, kernel autotuning, compilation) before serving
        (``model``: a held version other than the default)."""
        self.start()
        upscaler = self._models[model or self.upscaler.version]
        sxy = normalize_scale(scale)
        halo = upscaler.halo
        h, w = (math.ceil(n / s) + 2 * halo for n, s in zip(out_shape, sxy[::-1], strict=True))
        lr = np.full((channels, h, w), 0.5, dtype=np.float32)
        field = regular_field(np.array([[halo, halo]]), sxy, out_shape)[0]
        for mode in modes or upscaler.modes:
            self.submit(lr, field, mode=mode, admit=False, model=upscaler.version).result()

    def drain(self, timeout: float | None = None) -> bool:
        """Stop taking jobs, finish every queued and running batch, stop the thread.

        Returns ``False`` if batches were still running after ``timeout`` seconds.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # -- model versions --------------------------------------------------------------------
    def add_model(self, upscaler: Upscaler) -> None:
        """Hold ``upscaler`` under its version (jobs may name it from now on)."""
        with self._cond:
            self._models[upscaler.version] = upscaler
            self._retired.discard(upscaler.version)
        SR_FAILED_TILES.labels(version=upscaler.version)

    def retire_model(self, version: str) -> None:
        """Drop ``version`` once no queued or running job needs it (at once when idle)."""
        with self._cond:
            if version == self.upscaler.version:
                raise ValueError(f"{version} is the default model; make another the default")
            self._retired.add(version)
            self._drop_retired_locked()

    def holds(self, version: str) -> bool:
        """``version`` is held (retired versions count until their last job finished)."""
        with self._cond:
            return version in self._models

    def _drop_retired_locked(self) -> None:
        for version in [v for v in self._retired if not self._jobs_of[v]]:
            self._models.pop(version, None)
            self._retired.discard(version)
            self._jobs_of.pop(version, None)

    def foreground_idle(self) -> bool:
        """No foreground job is queued or running (background work may run now)."""
        with self._cond:
            return not self._busy_foreground and self._queue.foreground_count == 0

    def release_device_memory(self) -> None:
        """Return cached device memory of freed models to the driver (CUDA only)."""
        if self.device.name == "cuda":
            import torch

            torch.cuda.empty_cache()

    @property
    def running(self) -> bool:
        """The inference thread is alive and taking jobs."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken into a batch."""
        with self._cond:
            return len(self._queue)

    # -- submission ------------------------------------------------------------------------
    def submit(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        cell: np.ndarray | None = None,
        pixel_offset: tuple[int, int] | None = None,
        mode: str | None = None,
        seed: int = 0,
        *,
        background: bool = False,
        admit: bool = True,
        model: str | None = None,
        ticket: AdmissionTicket | None = None,
    ) -> Future[np.ndarray]:
        """Queue one (C, h, w) window sampled at ``coords`` (H, W, 2); the future resolves
        to float32 (C, H, W). See ``sr_engine.interface`` for ``coords`` and ``cell``.

        ``background`` jobs (recomputations nobody waits for) yield to foreground ones and
        skip the latency budget. ``admit=False`` bypasses admission control (warm-up).
        ``model`` is the version to run (default: the default model); ``UnknownModel`` if
        it is not held. An admitted, unused ``ticket`` (``reserve``) takes its place without
        a second check. Raises ``Overloaded`` when the job cannot be served in time.
        """
        version = model or self.upscaler.version
        upscaler = self._models.get(version)
        if upscaler is None:
            raise UnknownModel(f"model {version} is not loaded")
        mode = mode or upscaler.default_mode
        if mode not in upscaler.modes:
            raise ValueError(f"mode {mode!r} is not one of {upscaler.modes}")
        lr = np.asarray(lr, dtype=np.float32)
        if lr.ndim != 3:
            raise ValueError(f"lr must be (C, h, w), got shape {lr.shape}")
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f"coords must be (H, W, 2), got shape {coords.shape}")
        if cell is not None:
            cell = np.asarray(cell, dtype=np.float64)
            if cell.shape != coords.shape:
                raise ValueError(f"cell must be shaped like coords, got {cell.shape}")
        window = padded_shape(lr.shape[-2:])
        key = BatchKey(
            model=version,
            mode=mode,
            seed=seed,
            lr_shape=(lr.shape[0], *window),
            out_shape=(coords.shape[0], coords.shape[1]),
            has_cell=cell is not None,
            has_offsets=pixel_offset is not None,
        )
        job = Job(
            key=key,
            lr=pad_window(lr, window),
            coords=coords,
            cell=cell,
            pixel_offset=None
            if pixel_offset is None
            else (int(pixel_offset[0]), int(pixel_offset[1])),
            background=background,
            enqueued=time.monotonic(),
        )
        with self._cond:
            reserved = ticket is not None and self._use_locked(ticket)
            if admit and not reserved:
                self._admit(background)
            if version not in self._models:
                raise UnknownModel(f"model {version} was retired")
            self._jobs_of[version] += 1
            self._queue.push(job)
            SR_QUEUE_DEPTH.set(len(self._queue))
            self._cond.notify_all()
        return job.future

    def upscale(self, *args: object, **kwargs: object) -> np.ndarray:
        """``submit`` and wait for the result (from a thread)."""
        return self.submit(*args, **kwargs).result()  # type: ignore[arg-type]

    async def aupscale(self, *args: object, **kwargs: object) -> np.ndarray:
        """``submit`` and await the result without blocking the event loop.

        Cancelling the awaiting task withdraws the job if no batch has taken it yet.
        """
        return await asyncio.wrap_future(self.submit(*args, **kwargs))  # type: ignore[arg-type]

    def expected_wait(self) -> float:
        """Seconds a foreground job submitted now is expected to wait for its result."""
        with self._cond:
            return self._expected_wait_locked()

    def _expected_wait_locked(self) -> float:
        per_job = self._job_seconds
        if per_job is None:
            return 0.0
        in_flight = 0.0
        if self._busy_since is not None:
            running = self._busy_jobs * per_job
            in_flight = max(0.0, running - (time.monotonic() - self._busy_since))
        jobs_ahead = self._queue.foreground_count + self._reserved + 1  # this job included
        return in_flight + jobs_ahead * per_job + self._queue.max_wait_s

    def check_admission(self) -> None:
        """Raise ``Overloaded`` when a foreground job submitted now would be refused, so a
        caller can refuse before it prepares the job (reads its window)."""
        with self._cond:
            self._admit(background=False)

    def reserve(self) -> AdmissionTicket:
        """Admit a foreground job before it is prepared: an admitted ticket counts as a
        queued job in the estimate until its job is submitted with it or it is
        ``release``d, so a burst arriving at an empty queue is not admitted whole."""
        with self._cond:
            try:
                self._admit(background=False)
            except Overloaded as refused:
                return AdmissionTicket(refusal=refused)
            self._reserved += 1
            return AdmissionTicket()

    def release(self, ticket: AdmissionTicket) -> None:
        """Give back an admitted ticket whose job was never submitted (no-op otherwise)."""
        with self._cond:
            self._use_locked(ticket)

    def _use_locked(self, ticket: AdmissionTicket) -> bool:
        """Consume an admitted, unused ticket; True if it was one."""
        if not ticket.admitted or ticket.used:
            return False
        ticket.used = True
        self._reserved -= 1
        return True

    def _admit(self, background: bool) -> None:
        if self._stopping or self._thread is None:
            raise Overloaded("the SR runtime is not running", retry_after=1.0)
        if background:
            if self._queue.background_count >= self.background_limit:
                raise Overloaded("the SR background queue is full", retry_after=1.0)
            return
        wait = self._expected_wait_locked()
        retry_after = max(1.0, math.ceil(wait))
        if self._queue.foreground_count + self._reserved >= self.queue_limit:
            raise Overloaded(f"the SR queue is full ({self.queue_limit} jobs)", retry_after)
        idle = (
            not self._busy_foreground and self._queue.foreground_count == 0 and not self._reserved
        )
        # a runtime idle in the foreground admits whatever its estimate says (background
        # recomputations yield to it); the estimate only moves when a
        # batch runs, so refusing here could refuse forever after one slow burst
        if self.latency_budget_s is not None and wait > self.latency_budget_s and not idle:
            raise Overloaded(
                f"expected SR wait {wait:.2f}s exceeds the latency budget", retry_after
            )

    # -- inference thread ------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                jobs = self._next_jobs()
                if not jobs:
                    return
                self._busy_since = time.monotonic()
                self._busy_jobs = len(jobs)
                self._busy_foreground = any(not job.background for job in jobs)
                SR_QUEUE_DEPTH.set(len(self._queue))
            started = time.monotonic()
            deliver = self._execute(jobs)
            elapsed = time.monotonic() - started
            with self._cond:
                self._jobs_of[jobs[0].key.model] -= len(jobs)
                self._drop_retired_locked()
                self._busy_since = None
                self._busy_jobs = 0
                self._busy_foreground = False
                per_job, previous = elapsed / len(jobs), self._job_seconds
                self._job_seconds = (
                    per_job
                    if previous is None
                    else (1 - EWMA_WEIGHT) * previous + EWMA_WEIGHT * per_job
                )
                self._cond.notify_all()
            deliver()  # after the estimate: a caller that got its tile sees the new estimate

    def _next_jobs(self) -> list[Job]:
        """Wait (holding the condition) for a due batch; ``[]`` once stopping and empty."""
        while True:
            jobs, wait = self._queue.next_batch(time.monotonic(), flush=self._stopping)
            if jobs:
                return jobs
            if self._stopping and wait is None:
                return []
            self._cond.wait(wait)

    def _execute(self, jobs: list[Job]) -> Callable[[], None]:
        """Run one batch; return what resolves its futures (a failure fails only its jobs)."""
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return lambda: None
        key = jobs[0].key
        started = time.monotonic()
        try:
            upscaler = self._models[key.model]
            batch = self._assemble(key, jobs)
            coords = np.stack([job.coords for job in jobs])
            cell = np.stack([job.cell for job in jobs]) if key.has_cell else None  # type: ignore[misc]
            offsets = (
                np.array([job.pixel_offset for job in jobs], dtype=np.int64)
                if key.has_offsets
                else None
            )
            SR_INFERENCES.labels(mode=key.mode, version=key.model).inc()
            SR_BATCH_SIZE.observe(len(jobs))
            with inference_context(self.device):
                out = upscaler.upscale_batch(
                    batch, coords, cell, offsets, mode=key.mode, seed=key.seed
                )
            expected = (len(jobs), key.lr_shape[0], *key.out_shape)
            if out.shape != expected:
                raise RuntimeError(f"upscaler returned shape {out.shape}, expected {expected}")
        except Exception as exc:
            log.exception("SR batch of %d %s jobs failed", len(jobs), key.mode)
            SR_FAILED_TILES.labels(version=key.model).inc(len(jobs))
            error = exc

            def fail() -> None:
                for job in jobs:
                    job.future.set_exception(error)

            return fail
        SR_TILES.labels(mode=key.mode, version=key.model).inc(len(jobs))
        SR_BATCH_DURATION.labels(version=key.model).observe(time.monotonic() - started)

        def succeed() -> None:
            for index, job in enumerate(jobs):
                job.future.set_result(np.array(out[index], dtype=np.float32, copy=True))

        return succeed

    def _assemble(self, key: BatchKey, jobs: list[Job]) -> np.ndarray:
        """Stack the jobs' windows into a reused host buffer (pinned on CUDA)."""
        shape = (self.max_batch, *key.lr_shape)
        buffer = self._buffers.get(shape)
        if buffer is None:
            if len(self._buffers) >= 8:
                self._buffers.pop(next(iter(self._buffers)))
            buffer = self._buffers[shape] = host_buffer(shape, self.device)
        for index, job in enumerate(jobs):
            buffer[index] = job.lr
        return buffer[: len(jobs)]
