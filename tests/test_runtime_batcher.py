"""The batch key: windows padded to a common shape, and the queue's order."""

from __future__ import annotations

import numpy as np
import pytest

from sr_engine.batcher import BatchKey, Job, JobQueue, pad_window, padded_shape
from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import regular_field


def test_windows_a_pixel_apart_mostly_share_one_padded_shape() -> None:
    shapes = {padded_shape((h, w)) for h in (99, 100) for w in (97, 98)}
    assert shapes == {(104, 104)}
    assert padded_shape((104, 105)) == (104, 112)


def test_padding_right_and_bottom_keeps_the_output_pixels() -> None:
    rng = np.random.default_rng(1)
    lr = rng.uniform(0, 1, (3, 99, 98)).astype(np.float32)
    field = regular_field(np.array([[2.4, 2.9]]), (2.7, 2.7), (256, 256))
    padded = pad_window(lr, padded_shape(lr.shape[-2:]))
    assert padded.shape[-2:] != lr.shape[-2:]
    upscaler = BicubicUpscaler()
    alone = upscaler.upscale_batch(lr[None], field)
    batched = upscaler.upscale_batch(padded[None], field)
    assert np.abs(alone - batched).max() * 255 <= 1.0


def make_job(key: BatchKey, enqueued: float, background: bool = False) -> Job:
    lr = np.zeros(key.lr_shape, np.float32)
    return Job(key, lr, np.zeros((*key.out_shape, 2)), None, None, background, enqueued)


def key(mode: str = "fast", out: int = 256) -> BatchKey:
    return BatchKey("m", mode, 0, (3, 104, 104), (out, out), False, False)


def test_a_full_group_is_taken_before_its_wait_is_over() -> None:
    queue = JobQueue(max_batch=3, max_wait_s=10.0)
    for _ in range(4):
        queue.push(make_job(key(), enqueued=0.0))
    jobs, wait = queue.next_batch(now=0.0)
    assert len(jobs) == 3 and wait is None
    assert len(queue) == 1


def test_a_partial_group_waits_at_most_max_wait() -> None:
    queue = JobQueue(max_batch=8, max_wait_s=0.005)
    queue.push(make_job(key(), enqueued=1.0))
    jobs, wait = queue.next_batch(now=1.002)
    assert jobs == [] and wait == pytest.approx(0.003)
    jobs, wait = queue.next_batch(now=1.005)
    assert len(jobs) == 1 and len(queue) == 0


def test_groups_never_mix_keys() -> None:
    queue = JobQueue(max_batch=8, max_wait_s=0.0)
    queue.push(make_job(key("fast"), 0.0))
    queue.push(make_job(key("diffusion"), 0.1))
    queue.push(make_job(key("fast"), 0.2))
    first, _ = queue.next_batch(now=1.0)
    second, _ = queue.next_batch(now=1.0)
    assert [job.key.mode for job in first] == ["fast", "fast"]
    assert [job.key.mode for job in second] == ["diffusion"]


def test_background_jobs_yield_to_foreground_and_top_up_its_batches() -> None:
    queue = JobQueue(max_batch=4, max_wait_s=0.0)
    queue.push(make_job(key(out=512), 0.0, background=True))
    queue.push(make_job(key(), 0.5, background=True))
    queue.push(make_job(key(), 1.0))
    first, _ = queue.next_batch(now=2.0)
    assert [(job.background, job.key.out_shape) for job in first] == [
        (False, (256, 256)),
        (True, (256, 256)),
    ]
    second, _ = queue.next_batch(now=2.0)
    assert [job.key.out_shape for job in second] == [(512, 512)]
    assert queue.foreground_count == 0 and queue.background_count == 0


def test_flush_takes_a_partial_group_at_once() -> None:
    queue = JobQueue(max_batch=8, max_wait_s=60.0)
    queue.push(make_job(key(), 0.0))
    assert queue.next_batch(now=0.0)[0] == []
    assert len(queue.next_batch(now=0.0, flush=True)[0]) == 1
