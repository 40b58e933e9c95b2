"""Shadow serving: a challenger recomputes a sample of live SR tiles, off the live path.

The shadow has its own thread and a small queue. A job is offered after its live tile was
served; it is dropped when the queue is full (``queue_full``), and the thread starts one only
while the live runtime has no foreground work, dropping it once it has waited ``max_age_s``
(``stale``). So the shadow never queues in front of a live tile and is the first work
dropped under load. On Linux the thread runs at nice ``SHADOW_NICE`` (the CPU threads its
model calls start inherit it), so a shadow call still running when live work arrives gets
the CPU only when the live work leaves it, and after each call it rests ``rest_factor`` times
as long (the shadow takes at most 1 / (1 + rest_factor) of the time; the rest of a 100%
sample is dropped as stale). Results are compared with the served tile (PSNR) and go to
the ``hndsr_shadow_*`` metrics only: never cached, never returned.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from sr_engine.device import DeviceConfig, device_config, inference_context
from sr_engine.interface import Upscaler, regular_field
from sr_engine.metrics import SHADOW_DROPPED, SHADOW_LATENCY, SHADOW_PSNR, SHADOW_TILES
from sr_engine.runtime import SRRuntime

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.002
"""How often a waiting shadow job checks whether the live runtime went idle."""
IDENTICAL_PSNR_DB = 100.0
"""PSNR recorded for a shadow tile identical to the served one."""
SHADOW_NICE = 19
"""Scheduling niceness of the shadow thread (the lowest priority)."""


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two float arrays in [0, 1] (``IDENTICAL_PSNR_DB`` when equal)."""
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return IDENTICAL_PSNR_DB if mse == 0 else min(IDENTICAL_PSNR_DB, -10 * math.log10(mse))


def lower_thread_priority(nice: int = SHADOW_NICE) -> None:
    """Give the calling thread (and the threads it starts) the niceness ``nice`` (Linux: a
    thread's own; elsewhere a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not permitted
        log.debug("cannot lower the shadow thread's priority")


@dataclass
class ShadowJob:
    """One live tile to recompute and the pixels that were served for it."""

    lr: np.ndarray
    coords: np.ndarray
    pixel_offset: tuple[int, int]
    mode: str
    served: np.ndarray
    enqueued: float


class ShadowRunner:
    """Runs ``upscaler`` on offered live tiles while ``live`` has no foreground work."""

    def __init__(
        self,
        upscaler: Upscaler,
        live: SRRuntime,
        *,
        queue_limit: int = 4,
        max_age_s: float = 2.0,
        rest_factor: float = 3.0,
        device: DeviceConfig | None = None,
    ) -> None:
        self.upscaler = upscaler
        """The shadow model; a reload assigns a new one (the next job uses it)."""
        self.live = live
        self.queue_limit = queue_limit
        self.max_age_s = max_age_s
        self.rest_factor = rest_factor
        self.device = device or device_config("cpu")
        self._jobs: deque[ShadowJob] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the shadow thread (idempotent)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="sr-shadow", daemon=True)
                self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Drop what is queued and stop the thread (after the job it runs, if any)."""
        with self._cond:
            self._stopping = True
            self._jobs.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def pending(self) -> int:
        """Shadow jobs waiting."""
        with self._cond:
            return len(self._jobs)

    def warm_up(self, upscaler: Upscaler) -> None:
        """One call of ``upscaler`` in this thread (before a reload makes it the shadow)."""
        lr = np.full((3, 32 + 2 * upscaler.halo, 32 + 2 * upscaler.halo), 0.5, np.float32)
        origin = np.array([[upscaler.halo, upscaler.halo]])
        field = regular_field(origin, (2.0, 2.0), (64, 64))
        with inference_context(self.device):
            upscaler.upscale_batch(lr[None], field, mode=upscaler.default_mode)

    def offer(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        pixel_offset: tuple[int, int],
        mode: str,
        served: np.ndarray,
    ) -> bool:
        """Queue a served tile for recomputation; ``False`` (dropped) when the queue is full."""
        job = ShadowJob(lr, coords, pixel_offset, mode, served, time.monotonic())
        with self._cond:
            if self._stopping or len(self._jobs) >= self.queue_limit:
                SHADOW_DROPPED.labels("queue_full").inc()
                return False
            self._jobs.append(job)
            self._cond.notify_all()
        return True

    def _work(self) -> None:
        lower_thread_priority()
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._jobs.popleft()
            if self._wait_for_idle_live(job):
                seconds = self._run(job)
                with self._cond:  # rest (a stop ends it early)
                    self._cond.wait_for(lambda: self._stopping, seconds * self.rest_factor)
            else:
                SHADOW_DROPPED.labels("stale").inc()

    def _wait_for_idle_live(self, job: ShadowJob) -> bool:
        """Wait until the live runtime has no foreground work; ``False`` once too old."""
        while not self.live.foreground_idle():
            if self._stopping or time.monotonic() - job.enqueued > self.max_age_s:
                return False
            time.sleep(IDLE_POLL_S)
        return True

    def _run(self, job: ShadowJob) -> float:
        """Run one job and record it; returns the seconds it took."""
        upscaler = self.upscaler
        mode = job.mode if job.mode in upscaler.modes else upscaler.default_mode
        started = time.monotonic()
        try:
            with inference_context(self.device):
                out = upscaler.upscale_batch(
                    job.lr[None],
                    job.coords[None],
                    None,
                    np.array([job.pixel_offset], dtype=np.int64),
                    mode=mode,
                    seed=0,
                )[0]
        except Exception:
            log.exception("shadow model %s failed", upscaler.version)
            SHADOW_DROPPED.labels("error").inc()
            return time.monotonic() - started
        seconds = time.monotonic() - started
        SHADOW_LATENCY.observe(seconds)
        SHADOW_TILES.inc()
        SHADOW_PSNR.observe(psnr_db(out, job.served))
        return seconds
