"""The one place the reader calls to super-resolve a tile.

``bicubic`` runs at once in the caller's thread. Model modes go through the SR runtime
(micro-batching on an inference thread); identical jobs in flight are computed once. When
the runtime is overloaded or a batch fails, ``auto`` answers with a bicubic tile
(``degraded-bicubic``: never cached; the cache recomputes it as a background job) and an
explicit mode raises a ``ModelUnavailableError`` (503 + Retry-After).

Served models have roles: ``champion`` (``HNDSR_MODEL_URI``), ``canary`` (the share of the
map ``tileserver.canary`` routes to it) and ``shadow`` (recomputes sampled live tiles in the
background, ``sr_engine.shadow``). ``reload`` re-resolves every role's URI, loads and warms
a changed model beside the old one, switches, and waits until the old one is freed.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import hashlib
import json
import logging
import signal
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI

from cache import BACKGROUND_RECOMPUTE, SingleFlight
from sr_engine import BicubicUpscaler, ModelUnavailableError, Upscaler, load_model
from sr_engine.device import device_config
from sr_engine.metrics import (
    MODEL_INFO,
    MODEL_LOADED,
    MODEL_RELOADS,
    SR_COALESCED,
    SR_DEGRADED,
    SR_INFERENCES,
    SR_TILES,
)
from sr_engine.modes import AUTO, BICUBIC, DEGRADED_MODE
from sr_engine.runtime import AdmissionTicket, Overloaded, SRRuntime, UnknownModel
from sr_engine.shadow import ShadowRunner
from tileserver.canary import CANARY, CHAMPION, MODEL_ROLE, SHADOW
from tileserver.guards import render_thread_lent
from tileserver.model_source import ModelSource, resolve_model_uri
from tileserver.settings import Settings

log = logging.getLogger(__name__)

BACKGROUND_LIMIT = 16
"""Most queued background recomputations; each holds a threadpool thread (40 by default),
so this leaves most of the pool to foreground requests. A recompute refused here is simply
not stored; the next request for that tile computes it."""
DRAIN_TIMEOUT_S = 60.0
"""Longest wait for queued batches at shutdown."""
FREE_TIMEOUT_S = 60.0
"""Longest wait, after a reload, for the in-flight work of the old model to finish."""

ADMISSION: contextvars.ContextVar[AdmissionTicket | None] = contextvars.ContextVar(
    "sr_admission", default=None
)
"""The request's SR admission ticket (set by ``tileserver.sr_admission``)."""

Loader = Callable[[Path | None], Upscaler]
"""Weights file (``None``: the shipped checkpoint) -> upscaler."""


class ReloadInProgress(RuntimeError):
    """Another reload is running."""


class SRInferenceError(ModelUnavailableError):
    """The model call of this tile's batch failed (other batches are unaffected)."""

    retry_after = 5.0


@dataclass(frozen=True)
class ResolvedMode:
    """What a request runs: the concrete ``mode`` (``bicubic`` or a model mode), the LR
    ``halo`` (pixels each side) its window needs, and whether it may degrade to bicubic
    when the model cannot serve it in time (``sr=auto``) rather than answer 503."""

    mode: str
    halo: int
    may_degrade: bool = False


def job_key(
    lr: np.ndarray,
    coords: np.ndarray,
    pixel_offset: tuple[int, int],
    mode: str,
    version: str,
) -> str:
    """Content key of one SR job: equal keys give equal pixels."""
    digest = hashlib.blake2b(np.ascontiguousarray(lr).tobytes(), digest_size=20)
    digest.update(np.ascontiguousarray(coords, dtype=np.float64).tobytes())
    params = (lr.shape, str(lr.dtype), coords.shape, pixel_offset, mode, version)
    digest.update(repr(params).encode())
    return digest.hexdigest()


class SRBackend:
    """Upscales single tiles with the bicubic baseline, or a served model through the runtime.

    ``model`` injects a fixed champion (tests, benchmarks; a reload leaves it); ``loader``
    replaces how a resolved weights file becomes an upscaler (default ``load_model``).
    """

    def __init__(
        self,
        settings: Settings,
        model: Upscaler | None = None,
        loader: Loader | None = None,
    ) -> None:
        self.settings = settings
        self.bicubic = BicubicUpscaler()
        self.device = device_config(settings.device)
        self.loader: Loader = loader or (lambda path: load_model(path, device=self.device.name))
        self.uris: dict[str, str | None] = {CHAMPION: _champion_uri(settings)}
        if settings.canary_model_uri and settings.canary_fraction > 0:
            self.uris[CANARY] = settings.canary_model_uri
        if settings.shadow_model_uri and settings.shadow_rate > 0:
            self.uris[SHADOW] = settings.shadow_model_uri
        self.injected = model is not None
        self.served: dict[str, Upscaler] = {}
        """Role -> upscaler; replaced as a whole on every switch (readers never lock)."""
        self.sources: dict[str, ModelSource] = {}
        self.errors: dict[str, str] = {}
        """Role -> why it has no model."""
        for role in self.uris:
            if role == CHAMPION and model is not None:
                self.served = {**self.served, CHAMPION: model}
                continue
            try:
                source, upscaler = self._load(role)
            except ModelUnavailableError as exc:
                self.errors[role] = str(exc)
                continue
            self.served = {**self.served, role: upscaler}
            self.sources[role] = source
        self.runtime: SRRuntime | None = None
        self.shadow: ShadowRunner | None = None
        if CHAMPION in self.served:
            self._build_runtime(self.served[CHAMPION])
        for role, upscaler in self.served.items():
            labels = (upscaler.version, upscaler.default_mode, self.device.name, role)
            MODEL_INFO.labels(*labels).set(1)
        for role in self.uris:  # samples at 0 from the start (the reload alert)
            MODEL_RELOADS.labels(role, "error")
        MODEL_LOADED.set(1 if self.model is not None else 0)
        self.flights: SingleFlight[tuple[str, bool], np.ndarray] = SingleFlight()
        self._reload_lock = threading.Lock()

    # -- models ----------------------------------------------------------------------------
    @property
    def model(self) -> Upscaler | None:
        """The champion (``None`` when no model is loaded)."""
        return self.served.get(CHAMPION)

    @property
    def model_error(self) -> str | None:
        """Why there is no champion."""
        return self.errors.get(CHAMPION)

    def for_role(self, role: str) -> Upscaler | None:
        """The model serving ``role`` (the canary's tiles fall back to the champion)."""
        served = self.served
        return (served.get(CANARY) if role == CANARY else None) or served.get(CHAMPION)

    def version_for(self, role: str) -> str:
        """Version of the model serving ``role`` (``none`` without a model): the cache key's."""
        model = self.for_role(role)
        return model.version if model is not None else "none"

    def _load(self, role: str) -> tuple[ModelSource, Upscaler]:
        source = resolve_model_uri(self.uris[role], self.settings.cache_dir)
        if source.fallback_error:
            log.warning(
                "%s: registry unavailable, serving the last good copy (%s)",
                source.uri,
                source.fallback_error,
            )
        return source, self.loader(source.weights)

    def _build_runtime(self, champion: Upscaler) -> None:
        settings = self.settings
        self.runtime = SRRuntime(
            champion,
            max_batch=settings.sr_max_batch,
            max_wait_ms=settings.sr_max_wait_ms,
            queue_limit=settings.sr_queue_limit,
            latency_budget_s=settings.sr_latency_budget_ms / 1000 or None,
            background_limit=BACKGROUND_LIMIT,
            device=self.device,
        )
        if CANARY in self.served:
            self.runtime.add_model(self.served[CANARY])
        if SHADOW in self.served:
            self.shadow = ShadowRunner(self.served[SHADOW], self.runtime, device=self.device)

    def _start_runtime(self) -> None:
        if self.runtime is not None:
            self.runtime.start()

    def degraded_checks(self) -> dict[str, Callable[[], bool]]:
        """``/readyz`` checks: ``model`` (no champion), ``model-canary``/``model-shadow``
        (configured, not loaded), ``model-registry`` (serving a last good copy)."""
        checks: dict[str, Callable[[], bool]] = {"model": lambda: self.model is None}
        for role in (CANARY, SHADOW):
            if role in self.uris:
                checks[f"model-{role}"] = lambda role=role: role not in self.served  # type: ignore[misc]
        checks["model-registry"] = lambda: any(s.fallback_error for s in self.sources.values())
        return checks

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the runtime and warm the models (blocks; run before reporting ready).

        A warm-up failure is logged, not fatal: ``auto`` degrades per batch and bicubic works.
        """
        if self.runtime is None:
            return
        try:
            self.runtime.warm_up()
            if CANARY in self.served:
                self.runtime.warm_up(model=self.served[CANARY].version)
            if self.shadow is not None:
                self.shadow.warm_up(self.shadow.upscaler)
                self.shadow.start()
        except Exception:
            log.exception("SR model warm-up failed")

    def drain(self, timeout: float | None = DRAIN_TIMEOUT_S) -> bool:
        """Drop the shadow's work, finish the queued and running batches, stop the runtime."""
        if self.shadow is not None:
            self.shadow.stop(timeout)
        return self.runtime is None or self.runtime.drain(timeout)

    # -- hot reload ------------------------------------------------------------------------
    def reload(self) -> dict[str, dict[str, Any]]:
        """Re-resolve every role's URI; load, warm and switch to the models that changed.

        Returns role -> ``{"result": "reloaded"|"unchanged"|"error", ...}``; a failing role
        keeps its model. Raises ``ReloadInProgress`` while another reload runs.
        """
        if not self._reload_lock.acquire(blocking=False):
            raise ReloadInProgress("a model reload is already running")
        try:
            return {role: self._reload_role(role) for role in self.uris}
        finally:
            self._reload_lock.release()

    def _reload_role(self, role: str) -> dict[str, Any]:
        old = self.served.get(role)
        old_version = old.version if old is not None else None
        if role == CHAMPION and self.injected:
            return {"result": "unchanged", "version": old_version}
        try:
            source = resolve_model_uri(self.uris[role], self.settings.cache_dir)
            unchanged = old_version is not None and _card_version(source.weights) == old_version
            new = None if unchanged else self.loader(source.weights)
            if new is not None and new.version != old_version:
                self._warm(role, new)
        except Exception as exc:
            log.exception("reloading the %s model failed; it keeps %s", role, old_version)
            MODEL_RELOADS.labels(role, "error").inc()
            return {"result": "error", "error": str(exc), "version": old_version}
        self.sources[role] = source  # a reload after an outage clears ``model-registry``
        if new is None or new.version == old_version:
            MODEL_RELOADS.labels(role, "unchanged").inc()
            return {"result": "unchanged", "version": old_version}
        self._switch(role, new, source, old)
        result: dict[str, Any] = {"result": "reloaded", "from": old_version, "to": new.version}
        del new
        if old is not None:
            freed = weakref.ref(old)
            del old  # the last reference is the runtime's, until its last job is done
            result["old_freed"] = self._wait_freed(freed)
        MODEL_RELOADS.labels(role, "reloaded").inc()
        log.info("%s model reloaded: %s", role, result)
        return result

    def _warm(self, role: str, new: Upscaler) -> None:
        """Warm ``new`` beside the serving model (one batch per mode; live batches go on)."""
        if role == SHADOW:
            if self.shadow is not None:
                self.shadow.warm_up(new)
            return
        if self.runtime is None:
            return  # no runtime yet: the switch builds one around the new champion
        self.runtime.add_model(new)
        self.runtime.warm_up(model=new.version)

    def _switch(self, role: str, new: Upscaler, source: ModelSource, old: Upscaler | None) -> None:
        """Make ``new`` serve ``role`` (one assignment) and retire ``old`` in the runtime."""
        if role != SHADOW and self.runtime is None:
            self.served = {**self.served, role: new}
            if role == CHAMPION:
                self._build_runtime(new)
                self._start_runtime()
        else:
            if role == CHAMPION and self.runtime is not None:
                self.runtime.upscaler = new  # jobs naming no version: before the switch
            self.served = {**self.served, role: new}
            if role == SHADOW and self.runtime is not None:
                if self.shadow is None:
                    self.shadow = ShadowRunner(new, self.runtime, device=self.device)
                    self.shadow.start()
                self.shadow.upscaler = new
        self.sources[role] = source
        self.errors.pop(role, None)
        MODEL_LOADED.set(1 if self.model is not None else 0)
        MODEL_INFO.labels(new.version, new.default_mode, self.device.name, role).set(1)
        if old is None:
            return
        with suppress(KeyError):
            MODEL_INFO.remove(old.version, old.default_mode, self.device.name, role)
        still_served = any(m.version == old.version for m in self.served.values())
        if role != SHADOW and self.runtime is not None and not still_served:
            self.runtime.retire_model(old.version)

    def _wait_freed(self, ref: weakref.ref[Upscaler]) -> bool:
        """Wait until the old model is garbage (its in-flight work done); True once freed."""
        deadline = time.monotonic() + FREE_TIMEOUT_S
        while ref() is not None and time.monotonic() < deadline:
            gc.collect()
            if ref() is not None:
                time.sleep(0.05)
        if self.runtime is not None:
            self.runtime.release_device_memory()
        return ref() is None

    # -- tiles -----------------------------------------------------------------------------
    def resolve(self, requested: str, role: str | None = None) -> ResolvedMode:
        """The concrete mode that ``auto|bicubic|fast|diffusion`` runs for ``role``
        (default: the request's ``MODEL_ROLE``); ``ModelUnavailableError`` if it cannot.

        ``auto`` is the model's default mode (may degrade), or bicubic without a model.
        """
        model = self.for_role(role or MODEL_ROLE.get())
        if requested == BICUBIC or (requested == AUTO and model is None):
            return ResolvedMode(BICUBIC, self.bicubic.halo)
        if model is None or (requested != AUTO and requested not in model.modes):
            raise ModelUnavailableError(self.model_error or f"mode {requested!r} is not loaded")
        if requested == AUTO:
            return ResolvedMode(model.default_mode, model.halo, may_degrade=True)
        return ResolvedMode(requested, model.halo)

    def admit(self, resolved: ResolvedMode) -> None:
        """Refuse (``Overloaded``: 503) a model mode that may not degrade when the runtime
        would refuse it now, before the caller reads its window; a refusal after the read
        costs an overloaded server the read of every tile it refuses."""
        runtime = self.runtime
        if resolved.mode == BICUBIC or resolved.may_degrade or runtime is None:
            return
        ticket = ADMISSION.get()
        if not BACKGROUND_RECOMPUTE.get() and (ticket is None or not ticket.admitted):
            runtime.check_admission()

    def upscale_tile(
        self,
        lr: np.ndarray,
        coords: np.ndarray,
        pixel_offset: tuple[int, int],
        resolved: ResolvedMode,
        role: str | None = None,
    ) -> tuple[np.ndarray, str, str]:
        """Upscale one float32 (C, h, w) LR window in [0, 1] at ``coords`` (H, W, 2); see
        ``sr_engine.interface``.

        ``resolved`` comes from ``resolve``; ``role`` (default: the request's
        ``MODEL_ROLE``) picks the served model. Returns ``(hr (C, H, W) float32, applied
        mode, model version)``; the applied mode is ``degraded-bicubic`` when ``auto`` fell
        back.
        """
        role = role or MODEL_ROLE.get()
        runtime, model, mode = self.runtime, self.for_role(role), resolved.mode
        usable = runtime is not None and model is not None and mode in model.modes
        if mode == BICUBIC or (resolved.may_degrade and not usable):
            hr = self.bicubic_tile(lr, coords)
            SR_INFERENCES.labels(BICUBIC, self.bicubic.version).inc()
            SR_TILES.labels(BICUBIC, self.bicubic.version).inc()
            return hr, BICUBIC, self.bicubic.version
        if runtime is None or model is None or not usable:
            raise ModelUnavailableError(self.model_error or f"mode {mode!r} is not loaded")
        background = BACKGROUND_RECOMPUTE.get()
        ticket = None if background else ADMISSION.get()
        if resolved.may_degrade and ticket is not None and not ticket.admitted:
            return self._degraded(lr, coords)  # refused on arrival: no second try
        version = model.version
        key = (job_key(lr, coords, pixel_offset, mode, version), background)
        del model  # a reload frees the old model once in-flight jobs are done

        def compute() -> np.ndarray:
            runtime.start()  # no-op once started; covers apps run without their lifespan
            future = runtime.submit(
                lr,
                coords,
                None,
                pixel_offset,
                mode,
                background=background,
                model=version,
                ticket=ticket,
            )
            return future.result()

        try:
            with render_thread_lent():  # waiting for the batch holds no render slot
                hr, shared = self.flights.run(key, compute)
        except UnknownModel:  # retired by a reload since the lookup: the role's new model
            return self.upscale_tile(lr, coords, pixel_offset, resolved, role)
        except Overloaded:
            if not resolved.may_degrade:
                raise
            return self._degraded(lr, coords)
        except ModelUnavailableError:
            raise
        except Exception as exc:
            if not resolved.may_degrade:
                raise SRInferenceError(f"the {mode} model failed on this tile") from exc
            return self._degraded(lr, coords)
        if shared:
            SR_COALESCED.inc()
        elif not background:
            self._offer_shadow(key[0], lr, coords, pixel_offset, mode, hr)
        return hr, mode, version

    def _offer_shadow(
        self,
        job: str,
        lr: np.ndarray,
        coords: np.ndarray,
        pixel_offset: tuple[int, int],
        mode: str,
        hr: np.ndarray,
    ) -> None:
        """Hand a served tile to the shadow when the job's hash falls in the sampled share."""
        shadow = self.shadow
        if shadow is None or SHADOW not in self.served:
            return
        if int(job[:16], 16) / 2**64 < self.settings.shadow_rate:
            shadow.offer(lr, coords, pixel_offset, mode, hr)

    def bicubic_tile(self, lr: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Bicubic sampling of one (C, h, w) window at ``coords`` (H, W, 2), at once in this
        thread (no metrics)."""
        return self.bicubic.upscale_batch(lr[None], coords[None])[0]

    def _degraded(self, lr: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, str, str]:
        SR_DEGRADED.inc()
        return self.bicubic_tile(lr, coords), DEGRADED_MODE, self.bicubic.version

    def model_status(self) -> dict[str, Any]:
        """Loaded model (version, modes, device, queue), every role's model and source, or
        why none is; used by /readyz."""
        model, runtime = self.model, self.runtime
        if model is None or runtime is None:
            return {"loaded": False, "error": self.model_error, "errors": dict(self.errors)}
        roles = {}
        for role, upscaler in self.served.items():
            source = self.sources.get(role)
            roles[role] = {
                "version": upscaler.version,
                "uri": source.uri if source else "injected",
                "registry_version": source.registry_version if source else None,
                "fallback_error": source.fallback_error if source else None,
            }
        return {
            "loaded": True,
            "version": model.version,
            "modes": list(model.modes),
            "device": self.device.name,
            "queue_depth": runtime.pending,
            "roles": roles,
            "errors": dict(self.errors),
        }


def _champion_uri(settings: Settings) -> str | None:
    """``HNDSR_MODEL_URI``, else ``HNDSR_MODEL_PATH``, else ``None`` (the shipped checkpoint)."""
    if settings.model_uri:
        return settings.model_uri
    return str(settings.model_path) if settings.model_path else None


def _card_version(weights: Path | None) -> str | None:
    """The version in the model card beside ``weights`` (``None`` if unreadable)."""
    from sr_engine.checkpoint import DEFAULT_CHECKPOINT, card_path

    try:
        return json.loads(card_path(weights or DEFAULT_CHECKPOINT).read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@asynccontextmanager
async def sr_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """App lifespan: warm the models before serving (and /readyz), reload them on SIGHUP,
    drain batches at shutdown."""
    backend: SRBackend = app.state.sr_config.backend
    await asyncio.to_thread(backend.start)
    loop = asyncio.get_running_loop()
    hangup = _install_sighup(loop, backend)
    try:
        yield
    finally:
        if hangup:
            loop.remove_signal_handler(signal.SIGHUP)
        drained = await asyncio.to_thread(backend.drain)
        if not drained:
            log.warning("SR batches were still running after %ss at shutdown", DRAIN_TIMEOUT_S)


def _install_sighup(loop: asyncio.AbstractEventLoop, backend: SRBackend) -> bool:
    """Reload the models on SIGHUP; False where signals cannot be handled (not the main
    thread, no SIGHUP on this platform)."""
    tasks: set[asyncio.Future[Any]] = set()

    def on_hangup() -> None:
        log.info("SIGHUP: reloading the models")
        task = asyncio.ensure_future(asyncio.to_thread(_reload_logged, backend))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _reload_logged(backend: SRBackend) -> None:
    try:
        backend.reload()
    except ReloadInProgress:
        log.warning("SIGHUP ignored: a model reload is already running")
