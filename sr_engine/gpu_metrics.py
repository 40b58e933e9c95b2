"""GPU metrics (``hndsr_gpu_*``), exported only where CUDA is present.

The values are read at scrape time by a custom collector, so nothing has to poll:

- ``hndsr_gpu_memory_used_bytes{device}``: device-wide memory in use (all processes),
  from ``torch.cuda.mem_get_info``;
- ``hndsr_gpu_memory_total_bytes{device}``: device memory size;
- ``hndsr_gpu_memory_allocated_bytes{device}``: memory held by this process's tensors
  (``torch.cuda.memory_allocated``);
- ``hndsr_gpu_utilization_ratio{device}``: fraction of the last sample period the GPU was
  busy (0..1), from NVML through ``torch.cuda.utilization``; left out when NVML
  (``nvidia-ml-py``) is not installed.

Hook: call :func:`register_gpu_metrics` once at startup of every process that serves
``/metrics`` (the API's lifespan, the worker's main) with the registry that the metrics
endpoint renders. In prometheus multiprocess mode the endpoint builds its own registry with
``MultiProcessCollector``; pass that registry (custom collectors are not shared through the
multiprocess files). On a machine without CUDA it registers nothing and returns ``False``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

GPU_METRIC_NAMES = (
    "hndsr_gpu_memory_used_bytes",
    "hndsr_gpu_memory_total_bytes",
    "hndsr_gpu_memory_allocated_bytes",
    "hndsr_gpu_utilization_ratio",
)


class GPUCollector(Collector):
    """Reads CUDA memory and utilisation of every visible device at scrape time."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # lets a registry detect a second registration without touching the GPU
        for name in GPU_METRIC_NAMES:
            yield GaugeMetricFamily(name, name, labels=["device"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        import torch

        device = ["device"]
        used = GaugeMetricFamily(
            GPU_METRIC_NAMES[0], "GPU memory in use on the device (all processes).", labels=device
        )
        total = GaugeMetricFamily(GPU_METRIC_NAMES[1], "GPU memory size.", labels=["device"])
        allocated = GaugeMetricFamily(
            GPU_METRIC_NAMES[2], "GPU memory held by this process's tensors.", labels=["device"]
        )
        util = GaugeMetricFamily(
            GPU_METRIC_NAMES[3], "GPU busy fraction over the last sample (NVML).", labels=device
        )
        have_util = False
        for index in range(torch.cuda.device_count()):
            name = f"cuda:{index}"
            try:
                free, size = torch.cuda.mem_get_info(index)
            except RuntimeError as exc:  # device lost, out of memory for the context...
                log.warning("cannot read memory of %s: %s", name, exc)
                continue
            used.add_metric([name], float(size - free))
            total.add_metric([name], float(size))
            allocated.add_metric([name], float(torch.cuda.memory_allocated(index)))
            try:
                util.add_metric([name], torch.cuda.utilization(index) / 100.0)
                have_util = True
            except Exception:  # NVML missing (ModuleNotFoundError) or unsupported
                pass
        yield used
        yield total
        yield allocated
        if have_util:
            yield util


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, false when torch cannot be imported."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def register_gpu_metrics(registry: CollectorRegistry | None = None) -> bool:
    """Register the ``hndsr_gpu_*`` collector on ``registry`` (default: the global one).

    Returns ``True`` when the collector is registered (now or before), ``False`` when CUDA
    is not available. Safe to call more than once per registry.
    """
    target = REGISTRY if registry is None else registry
    if not cuda_available():
        return False
    with contextlib.suppress(ValueError):  # "Duplicated timeseries": registered before
        target.register(GPUCollector())
    return True
