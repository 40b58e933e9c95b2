"""Upscalers for tests: real bicubic pixels under a model's name, plus a gate, a delay, a fault."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from sr_engine.bicubic import BicubicUpscaler
from sr_engine.interface import BatchUpscaleMixin


class Gate(Protocol):
    """Something a model call blocks on until the test lets it through."""

    def wait(self, timeout: float | None = None) -> bool: ...


class FileGate:
    """A gate another process controls: closed while the file exists."""

    def __init__(self, path: Path, poll_s: float = 0.01) -> None:
        self.path = path
        self.poll_s = poll_s

    def wait(self, timeout: float | None = None) -> bool:
        """Block while the file exists (at most ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.path.exists():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(self.poll_s)
        return True


class FailOn:
    """Fault predicate: fail a batch that contains a window whose mean is ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, lr: np.ndarray) -> bool:
        means = lr.reshape(len(lr), -1).mean(axis=1)
        return bool(np.any(np.abs(means - self.value) < 1e-6))


class FileFault:
    """Fault predicate another process controls: fail while the file exists.

    With ``once``, the first batch that sees the file consumes it (only that batch fails).
    """

    def __init__(self, path: Path, once: bool = False) -> None:
        self.path = path
        self.once = once

    def __call__(self, lr: np.ndarray) -> bool:
        if not self.once:
            return self.path.exists()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class TestUpscaler(BatchUpscaleMixin):
    """The bicubic baseline presented as a model (modes fast/diffusion) that records its calls."""

    __test__ = False  # not a pytest class

    version = "test-sr-1"
    modes: tuple[str, ...] = ("fast", "diffusion")
    default_mode = "fast"
    halo = 2

    def __init__(
        self,
        gate: Gate | None = None,
        delay_s: float = 0.0,
        fail_when: Callable[[np.ndarray], bool] | None = None,
    ) -> None:
        self.gate = gate
        self.delay_s = delay_s
        self.fail_when = fail_when
        self.calls: list[tuple[int, tuple[int, int], str]] = []
        """(batch size, output shape, mode) of every model call, in order."""
        self.entered = threading.Event()
        self._bicubic = BicubicUpscaler()
        self._lock = threading.Lock()

    @property
    def batch_sizes(self) -> list[int]:
        """Jobs per model call, in order."""
        return [size for size, _, _ in self.calls]

    def upscale_batch(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        cell: np.ndarray | None = None,
        pixel_offsets: np.ndarray | None = None,
        mode: str = "fast",
        seed: int = 0,
    ) -> np.ndarray:
        """Bicubic at the exact coordinates; a fault is decided on entry, raised after the gate."""
        with self._lock:
            self.calls.append((len(lr), (int(coords.shape[1]), int(coords.shape[2])), mode))
        doomed = self.fail_when is not None and self.fail_when(lr)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if doomed:
            raise RuntimeError("injected model failure")
        return self._bicubic.upscale_batch(lr, coords, cell, pixel_offsets, mode, seed)
