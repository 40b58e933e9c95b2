"""``sr_engine.gpu_metrics``: the ``hndsr_gpu_*`` collector exists only where CUDA is.

On a CPU machine the registration is refused and nothing is exported. On a CUDA machine
(run on the project's GPU host) the collector reports every device with used <= total,
and this process's torch allocation shows up in ``hndsr_gpu_memory_allocated_bytes``.
Both branches assert; which one runs is the machine's, not the test's, choice.
"""

from __future__ import annotations

import torch
from prometheus_client import CollectorRegistry, generate_latest

from sr_engine.gpu_metrics import GPU_METRIC_NAMES, cuda_available, register_gpu_metrics


def values(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels["device"]): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def test_gpu_metrics_registered_only_with_cuda() -> None:
    registry = CollectorRegistry()
    registered = register_gpu_metrics(registry)
    assert registered == cuda_available() == torch.cuda.is_available()
    assert register_gpu_metrics(registry) == registered  # a second call is harmless
    text = generate_latest(registry).decode()
    if not registered:
        assert "hndsr_gpu_" not in text
        return
    found = values(registry)
    used, total, allocated = GPU_METRIC_NAMES[:3]
    for index in range(torch.cuda.device_count()):
        device = f"cuda:{index}"
        assert 0 < found[(used, device)] <= found[(total, device)]
        assert found[(allocated, device)] >= 0
    assert text.count("# TYPE hndsr_gpu_memory_used_bytes gauge") == 1


def test_gpu_allocation_is_visible() -> None:
    registry = CollectorRegistry()
    if not register_gpu_metrics(registry):
        assert not torch.cuda.is_available()
        return
    name = GPU_METRIC_NAMES[2]
    before = values(registry)[(name, "cuda:0")]
    block = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda:0")
    after = values(registry)[(name, "cuda:0")]
    assert after - before >= block.numel()
    del block
