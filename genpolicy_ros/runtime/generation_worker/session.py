"""The generating side of a worker: load the policy, prepare the backend, serve requests.

Used by the child process (:mod:`.child`) and by :class:`~.thread.ThreadGenerationWorker`.
Besides sampling, a session

* **keeps the fast path across run-time sampler changes**: a request whose settings a
  graph backend could capture but has not built (``num_steps`` changed with
  ``ros2 param set``) starts a build in a background thread (on a copy of the policy, at
  low thread priority); until it is ready the previous graph keeps serving the previous
  settings (``settings_switch="after_build"``) or the new settings run on the fallback
  path (``"immediate"``). Then the session switches.
* **emulates latency** when ``emulate_latency_ms`` is set (see :class:`.config.WorkerConfig`);
* **reports the path** of every chunk in its ``meta``: backend, ``graph`` / ``per_step`` /
  ``eager`` with the reason, the settings served and requested, a pending switch, the
  serving graph's build time, the emulated latency.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ..sampler_settings import SamplerSettings
from .config import WorkerConfig
from .messages import GenerationRequest
from .observations import example_obs_from_config, to_policy_obs

LOG = logging.getLogger("genpolicy_ros.runtime.generation_worker")

Progress = Callable[[str], None]


def _lower_this_thread_priority(niceness: int = 10) -> None:
    """Best effort: background builds must not take the CPU from serving (Linux: per-thread nice)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass


class GenerationSession:
    """Loads the policy and its backend (blocking: the worker's start), then serves requests."""

    def __init__(self, cfg: WorkerConfig, progress: Optional[Progress] = None):
        t_start = time.perf_counter()
        import torch

        from ..backends import create_backend
        from ..backends.cache import default_cache_dir

        self.cfg = cfg
        self._progress_fn = progress
        torch.set_num_threads(cfg.num_threads)
        t_import = time.perf_counter()
        module, func = cfg.loader.split(":", 1)
        self.policy = getattr(importlib.import_module(module), func)(cfg.model_dir)
        self.policy.eval()
        t_load = time.perf_counter()
        cache_dir = cfg.cache_dir if cfg.cache_dir is not None else default_cache_dir(cfg.model_dir)
        # "auto" is resolved here, in the process that owns torch (the node never imports it).
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.backend = create_backend(cfg.backend, self.policy, self.device, cache_dir,
                                      precision=cfg.precision, num_threads=cfg.num_threads)
        self.backend.progress = self.report
        self.backend.defer_extras = True  # e.g. the per-step fallback: built after "ready", below
        example = cfg.example_obs or example_obs_from_config(self.policy.config)
        self.example_t = to_policy_obs(example)  # batched tensors [1, ...]
        self.build_with_prefix = cfg.prepare_prefix and self.policy.config.kind != "regression"
        self._lock = threading.Lock()  # guards the build bookkeeping below
        self._build_s: dict[SamplerSettings, float] = {}  # settings -> seconds its graph took
        self._building = None  # what the background thread builds now (settings, or "extras")
        self._builder: Optional[threading.Thread] = None
        self._failed_builds: dict[SamplerSettings, str] = {}
        t = time.perf_counter()
        start = self._key(cfg.settings)
        prepared = False
        if self.build_with_prefix:
            # The hard-prefix graph also serves requests without a prefix (zero weights).
            try:
                self.backend.prepare(cfg.settings, self.example_t, with_prefix=True)
                prepared = True
            except Exception as exc:  # noqa: BLE001 - prefix chunks then run eager
                LOG.warning("prefix graph not prepared (%s); prefix chunks run eager", exc)
        if not prepared:
            self.backend.prepare(cfg.settings, self.example_t)
        t_prepare = time.perf_counter()
        self.prepare_s = t_prepare - t
        built = getattr(getattr(self.backend, "chosen", self.backend), "build_info", {})
        if any(info.get("cache") == "miss" for info in built.values()):
            self.report(f"engines built and cached in {cache_dir} ({self.prepare_s:.1f} s); the next start loads "
                        f"them — `genpolicy export MODEL` builds them ahead of time (the install step)")
        self._build_s[start] = self.prepare_s
        self.active: Optional[SamplerSettings] = start  # settings the fast path serves now
        self.T_p = int(self.policy.config.horizon.T_p)
        self.D_a = int(self.policy.config.action.dim)
        self.dt = float(self.policy.config.horizon.dt)
        self._rng = np.random.default_rng(cfg.emulate_seed)
        self.info = {"backend": self.backend.describe(), "device": self.device, "prepare_s": self.prepare_s,
                     "dt": self.dt,
                     "fallbacks": list(getattr(self.backend, "fallbacks", [])), "pid": os.getpid(),
                     "precision": cfg.precision, "cache_dir": str(cache_dir),
                     "emulate_latency_ms": float(cfg.emulate_latency_ms),
                     "emulate_jitter_ms": float(cfg.emulate_jitter_ms),
                     "settings": start.label, "settings_switch": cfg.settings_switch,
                     "start_breakdown_s": {"import": t_import - t_start, "load": t_load - t_import,
                                           "prepare": self.prepare_s}}
        extras = self.backend.background_work()
        if extras is not None:
            self._start_job("extras", extras)

    # ---------------------------------------------------------------- progress
    def report(self, text: str) -> None:
        """One progress line (build steps, background switches): logged and forwarded."""
        LOG.info(text)
        if self._progress_fn is not None:
            try:
                self._progress_fn(text)
            except Exception:  # noqa: BLE001 - progress must never break generation
                LOG.debug("progress callback failed", exc_info=True)

    # ---------------------------------------------------------------- settings switching
    def _key(self, settings: SamplerSettings) -> SamplerSettings:
        return replace(settings.resolved(self.policy), debug_sleep_s=0.0)

    def _status(self, key: SamplerSettings, with_prefix: bool, prefix_mode: str) -> tuple[str, str]:
        return self.backend.graph_status(key, self.example_t, with_prefix=with_prefix, prefix_mode=prefix_mode)

    def choose_settings(self, requested: SamplerSettings, with_prefix: bool,
                        prefix_mode: str) -> tuple[SamplerSettings, Optional[SamplerSettings]]:
        """``(settings to serve now, settings whose graph is being built or None)``."""
        key = self._key(requested)
        status, _ = self._status(key, with_prefix, prefix_mode)
        if status == "build" and key in self._failed_builds:
            status = "none"
        if status != "build":
            if status == "graph":
                self.active = key
            return requested, None
        self._request_build(key, with_prefix or self.build_with_prefix)
        active = self.active
        if (self.cfg.settings_switch == "after_build" and active is not None and active != key
                and self._status(active, with_prefix, prefix_mode)[0] == "graph"):
            return replace(active, debug_sleep_s=requested.debug_sleep_s), key
        return requested, key

    def _start_job(self, what, job: Callable[[], None]) -> None:
        """Run ``job`` in the background thread, at low priority; one job at a time (a
        request that finds one running asks again later if its settings still want it)."""
        with self._lock:
            if self._building is not None:
                return
            self._building = what

        def run():
            _lower_this_thread_priority()
            try:
                job()
            finally:
                with self._lock:
                    self._building = None

        self._builder = threading.Thread(target=run, name="genpolicy-graph-build", daemon=True)
        self._builder.start()

    def _request_build(self, key: SamplerSettings, with_prefix: bool) -> None:
        """Build ``key``'s graph in the background (call from the serving thread)."""
        if key in self._failed_builds or self._building is not None:
            return
        try:
            builder = self.backend.detached()  # here, not in the thread: see InferenceBackend.detached
        except Exception as exc:  # noqa: BLE001
            self._build_failed(key, exc)
            return
        serving = self.active.label if self.active is not None else "fallback"
        keep = (f"the {serving} graph keeps serving" if self.cfg.settings_switch == "after_build"
                else "the new settings run on the fallback path meanwhile")

        def build():
            self.report(f"building the {key.label} graph in the background ({keep})")
            t = time.perf_counter()
            try:
                builder.prepare(key, self.example_t, with_prefix=with_prefix)
            except Exception as exc:  # noqa: BLE001 - the settings then stay on the fallback path
                self._build_failed(key, exc)
                return
            self._build_s[key] = time.perf_counter() - t
            self.report(f"{key.label} graph ready after {self._build_s[key]:.2f} s; switching to it")

        self._start_job(key, build)

    def _build_failed(self, key: SamplerSettings, error: BaseException) -> None:
        self._failed_builds[key] = str(error) or type(error).__name__
        self.report(f"could not build the {key.label} graph ({self._failed_builds[key]}); "
                    f"those settings run on the fallback path")

    def wait_builds(self, timeout: float) -> bool:
        """Block until no background build is running (tests, ``genpolicy export``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            builder = self._builder
            if builder is None or not builder.is_alive():
                with self._lock:
                    if self._building is None:
                        return True
            time.sleep(0.01)
        return False

    # ---------------------------------------------------------------- generation
    def _emulated_target_s(self) -> float:
        cfg = self.cfg
        if cfg.emulate_latency_ms <= 0:
            return 0.0
        jitter = self._rng.uniform(-cfg.emulate_jitter_ms, cfg.emulate_jitter_ms) if cfg.emulate_jitter_ms else 0.0
        return max(0.0, cfg.emulate_latency_ms + jitter) / 1e3

    def generate(self, req: GenerationRequest, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        """One chunk ``[T_p, D_a]`` (float64, robot units) and its metadata."""
        import torch

        from ..backends.base import make_noise

        received = time.perf_counter()
        if req.settings.debug_sleep_s > 0:  # test-only hang injection
            time.sleep(req.settings.debug_sleep_s)
        t = time.perf_counter()
        obs_t = to_policy_obs(obs)
        noise = make_noise((1, self.T_p, self.D_a), req.seed)  # [1, T_p, D_a]
        kwargs = {}
        with_prefix = req.prefix_actions is not None
        if with_prefix:
            pa = torch.as_tensor(np.asarray(req.prefix_actions), dtype=torch.float32)
            pa = pa.unsqueeze(0) if pa.dim() == 2 else pa  # [1, k, D_a]
            if pa.shape[1] < self.T_p and req.prefix_mode == "hard":
                # Graph inputs are fixed at [1, T_p, D_a]: pad with zero-weight rows.
                pa = torch.cat([pa, torch.zeros(1, self.T_p - pa.shape[1], pa.shape[2])], dim=1)
            pw = req.prefix_weights
            if pw is None:
                pw = np.zeros(self.T_p, np.float32)
                pw[: np.asarray(req.prefix_actions).shape[-2]] = 1.0
            kwargs = {"prefix_actions": pa, "prefix_weights": torch.as_tensor(np.asarray(pw), dtype=torch.float32),
                      "prefix_mode": req.prefix_mode}
        served, pending = self.choose_settings(req.settings, with_prefix, req.prefix_mode)
        out = self.backend.sample(obs_t, noise, served, **kwargs)  # [1, T_p, D_a]
        actions = out[0].detach().cpu().numpy().astype(np.float64)  # [T_p, D_a]
        compute_s = time.perf_counter() - t
        served_key, requested_key = self._key(served), self._key(req.settings)
        path = self.backend.last_path
        meta = {"compute_s": compute_s, "path": path, "backend": self.backend.describe(),
                "precision": self.cfg.precision, "sampler": served_key.sampler, "num_steps": served_key.num_steps,
                "settings": served_key.label, "requested_settings": requested_key.label,
                "pending_settings": pending.label if pending is not None else None,
                "graph_build_s": self._build_s.get(served_key) if path == "graph" else None}
        target = self._emulated_target_s()
        meta["emulate_latency_ms"] = target * 1e3
        if target > 0:
            remaining = target - (time.perf_counter() - received)
            if remaining > 0:
                time.sleep(remaining)
            meta["emulation_sleep_s"] = max(0.0, remaining)
        return actions, meta

    def close(self) -> None:
        self.backend.close()
