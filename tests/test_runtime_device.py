"""Device selection and the CPU thread count the runtime applies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sr_engine.device import (
    cgroup_cpu_quota,
    cpu_thread_count,
    device_config,
    host_buffer,
    inference_context,
    select_device,
)


def test_a_container_cpu_quota_caps_the_thread_count(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert cgroup_cpu_quota(quota) == 1.5
    assert cpu_thread_count(quota) == min(2, len(os.sched_getaffinity(0)))


def test_without_a_quota_the_affinity_decides(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert cgroup_cpu_quota(quota) is None
    assert cpu_thread_count(quota) == len(os.sched_getaffinity(0))
    assert cpu_thread_count(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_auto_picks_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="CUDA"):
        select_device("cuda")


def test_an_unknown_device_name_is_refused() -> None:
    with pytest.raises(ValueError):
        select_device("tpu")


def test_cpu_inference_is_full_precision_without_autograd() -> None:
    config = device_config("cpu")
    assert config.autocast_dtype is None and not config.pin_memory
    weight = torch.ones(2, requires_grad=True)
    with inference_context(config):
        out = weight * 2
    assert not out.requires_grad and out.dtype == torch.float32


def test_host_buffers_are_float32_arrays() -> None:
    buffer = host_buffer((2, 3, 4, 4), device_config("cpu"))
    assert buffer.shape == (2, 3, 4, 4) and buffer.dtype == np.float32
