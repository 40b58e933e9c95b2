"""SR jobs and their grouping into batches of one (model, mode, window shape, output shape, scale).

A tile's low-resolution window is the floor/ceil of its footprint on the dataset's global
grid plus a halo, so windows of one zoom differ by up to one pixel. Each window is padded on
the right/bottom (edge values) to a size fixed by (scale, output shape, halo), so every tile
of a zoom shares one batch key; origins are unchanged, so the sampled output pixels are too.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


def window_size(
    scale: tuple[float, float], out_shape: tuple[int, int], halo: int
) -> tuple[int, int]:
    """Largest LR window (h, w) a tile of ``out_shape`` at ``scale`` can need.

    The footprint spans ``H / sy`` LR pixels from a fractional start: its floor/ceil cover is
    at most ``ceil(H / sy) + 1`` pixels, plus ``halo`` on each side.
    """
    sx, sy = scale
    height, width = out_shape
    return (
        math.ceil(height / sy - 1e-9) + 1 + 2 * halo,
        math.ceil(width / sx - 1e-9) + 1 + 2 * halo,
    )


def padded_shape(
    lr_shape: tuple[int, int], scale: tuple[float, float], out_shape: tuple[int, int], halo: int
) -> tuple[int, int]:
    """The batch shape of a window: the fixed size, or the window's own size if it is larger."""
    fixed = window_size(scale, out_shape, halo)
    return max(lr_shape[0], fixed[0]), max(lr_shape[1], fixed[1])


def pad_window(lr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad a (C, h, w) window to (C, *shape) on the right and bottom with its edge values."""
    pad_rows, pad_cols = shape[0] - lr.shape[-2], shape[1] - lr.shape[-1]
    if pad_rows == 0 and pad_cols == 0:
        return lr
    return np.pad(lr, ((0, 0), (0, pad_rows), (0, pad_cols)), mode="edge")


@dataclass(frozen=True)
class BatchKey:
    """Jobs with equal keys can share one ``upscale_batch`` call."""

    model: str
    mode: str
    seed: int
    lr_shape: tuple[int, int, int]
    """Padded (C, h, w)."""
    out_shape: tuple[int, int]
    scale: tuple[float, float]
    has_offsets: bool


@dataclass
class Job:
    """One tile to upscale, and the future its caller waits on."""

    key: BatchKey
    lr: np.ndarray
    """Padded float32 (C, h, w)."""
    origin: tuple[float, float]
    pixel_offset: tuple[int, int] | None
    background: bool
    enqueued: float
    future: Future[np.ndarray] = field(default_factory=Future)


class JobQueue:
    """Pending jobs grouped by key; not thread-safe (the runtime holds a lock around it).

    Foreground jobs go first; background jobs (recomputations nobody waits for) run when no
    foreground batch is due, or top up a foreground batch of the same key.
    """

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._foreground: dict[BatchKey, deque[Job]] = {}
        self._background: dict[BatchKey, deque[Job]] = {}
        self.foreground_count = 0
        self.background_count = 0

    def __len__(self) -> int:
        return self.foreground_count + self.background_count

    def push(self, job: Job) -> None:
        """Queue a job behind the others of its key."""
        groups = self._background if job.background else self._foreground
        groups.setdefault(job.key, deque()).append(job)
        if job.background:
            self.background_count += 1
        else:
            self.foreground_count += 1

    def next_batch(self, now: float, flush: bool = False) -> tuple[list[Job], float | None]:
        """Take the batch that is due: a full group, or the oldest group past its wait.

        Returns ``(jobs, None)`` when a batch is due, else ``([], seconds until one may be due)``
        (``None`` seconds when nothing is queued). ``flush`` takes the oldest group at once.
        """
        for groups in (self._foreground, self._background):
            if not groups:
                continue
            key = self._due_key(groups, now, flush)
            if key is None:
                oldest = min(group[0].enqueued for group in groups.values())
                return [], max(0.0, oldest + self.max_wait_s - now)
            jobs = self._take(groups, key, self.max_batch)
            if groups is self._foreground and len(jobs) < self.max_batch:
                jobs += self._take(self._background, key, self.max_batch - len(jobs))
            return jobs, None
        return [], None

    def _due_key(
        self, groups: dict[BatchKey, deque[Job]], now: float, flush: bool
    ) -> BatchKey | None:
        for key, group in groups.items():
            if len(group) >= self.max_batch:
                return key
        key = min(groups, key=lambda k: groups[k][0].enqueued)
        if flush or now >= groups[key][0].enqueued + self.max_wait_s:
            return key
        return None

    def _take(self, groups: dict[BatchKey, deque[Job]], key: BatchKey, count: int) -> list[Job]:
        group = groups.get(key)
        if not group:
            return []
        jobs = [group.popleft() for _ in range(min(count, len(group)))]
        if not group:
            del groups[key]
        if groups is self._background:
            self.background_count -= len(jobs)
        else:
            self.foreground_count -= len(jobs)
        return jobs
