"""SR jobs and their grouping into batches of one (model, mode, window shape, output shape).

A tile's low-resolution window is the cover of its footprint on the source's pixel grid plus
a halo, so windows of one zoom differ by a pixel or so. Each window is padded on the
right/bottom (edge values) to the next multiple of ``WINDOW_MULTIPLE``, so that most tiles
of a zoom share one batch key; the coordinate field is unchanged, so the sampled output
pixels are too (the halo keeps the padding outside every sample's support).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

WINDOW_MULTIPLE = 8
"""Windows are padded to a multiple of this many LR pixels per axis."""


def padded_shape(lr_shape: tuple[int, int]) -> tuple[int, int]:
    """The batch shape of a window: its size rounded up to a multiple of ``WINDOW_MULTIPLE``."""
    return (
        math.ceil(lr_shape[0] / WINDOW_MULTIPLE) * WINDOW_MULTIPLE,
        math.ceil(lr_shape[1] / WINDOW_MULTIPLE) * WINDOW_MULTIPLE,
    )


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
    has_cell: bool
    has_offsets: bool


@dataclass
class Job:
    """One tile to upscale, and the future its caller waits on."""

    key: BatchKey
    lr: np.ndarray
    """Padded float32 (C, h, w)."""
    coords: np.ndarray
    """float64 (H, W, 2): where each output pixel is sampled, in LR-window pixels."""
    cell: np.ndarray | None
    """float64 (H, W, 2) footprint of each output pixel, or ``None`` (derived from coords)."""
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
