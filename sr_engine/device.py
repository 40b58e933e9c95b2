"""Inference device selection (auto|cpu|cuda) and the per-device settings the SR runtime applies."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEVICE_NAMES = ("auto", "cpu", "cuda")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """CPUs granted by a cgroup v2 quota (``cpu.max``), or ``None`` when unlimited or absent."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    return int(fields[0]) / int(fields[1])


def cpu_thread_count(quota_path: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may really use: its CPU affinity, capped by a container CPU quota.

    torch defaults to every core of the host, which oversubscribes a container limited to a
    few CPUs and makes each batch slower.
    """
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(quota_path)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is a configuration error."""
    if name not in DEVICE_NAMES:
        raise ValueError(f"device must be one of {DEVICE_NAMES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("HNDSR_DEVICE=cuda but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@dataclass(frozen=True)
class DeviceConfig:
    """How inference runs on one device."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None
    """Mixed precision for model calls (bf16 on CUDA); ``None``: full fp32."""
    pin_memory: bool = False
    """Assemble batches in page-locked host memory (faster, asynchronous host-to-GPU copies)."""
    threads: int = 1
    """Intra-op CPU threads."""

    @property
    def name(self) -> str:
        """``cpu`` or ``cuda`` (the label of ``hndsr_model_info``)."""
        return self.device.type


def device_config(name: str = "auto", *, autocast: bool = True) -> DeviceConfig:
    """The settings for ``name``: bf16 autocast and pinned buffers on CUDA."""
    device = select_device(name)
    if device.type == "cuda":
        bf16 = autocast and torch.cuda.is_bf16_supported()
        return DeviceConfig(
            device=device,
            autocast_dtype=torch.bfloat16 if bf16 else None,
            pin_memory=True,
            threads=cpu_thread_count(),
        )
    return DeviceConfig(device=device, threads=cpu_thread_count())


def apply_process_settings(config: DeviceConfig) -> None:
    """Process-wide torch settings: CPU thread count; TF32 matmuls and cuDNN autotuning on CUDA."""
    torch.set_num_threads(config.threads)
    if config.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


@contextmanager
def inference_context(config: DeviceConfig) -> Iterator[None]:
    """No autograd, plus autocast when the config asks for mixed precision (thread-local)."""
    autocast = (
        torch.autocast(config.device.type, dtype=config.autocast_dtype)
        if config.autocast_dtype is not None
        else nullcontext()
    )
    with torch.inference_mode(), autocast:
        yield


def host_buffer(shape: tuple[int, ...], config: DeviceConfig) -> np.ndarray:
    """A float32 host array to assemble a batch in (page-locked when the config pins memory)."""
    tensor = torch.empty(shape, dtype=torch.float32, pin_memory=config.pin_memory)
    return tensor.numpy()
