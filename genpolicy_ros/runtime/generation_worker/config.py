""":class:`WorkerConfig`: every setting of a generation worker, validated on construction."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..sampler_settings import PRECISIONS, SamplerSettings

DEFAULT_LOADER = "genpolicy_ros.core.checkpoint:load_model_dir"
SETTINGS_SWITCHES = ("after_build", "immediate")


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v)) and v > 0


def _non_negative(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v)) and v >= 0


@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a :class:`~.process.GenerationWorker` (validated on construction).

    ``precision``: ``fp32`` or ``fp16`` (fp16 needs a CUDA device and a backend that has
    it: tensorrt, torch_tensorrt, eager/cuda_graph/compile with autocast).

    ``emulate_latency_ms`` (off = 0): *latency emulation* for studying slow models on a
    fast machine. After generating, the child sleeps so that each chunk takes about this
    long from request receipt to reply (``± emulate_jitter_ms``, uniform, seeded by
    ``emulate_seed``); a chunk that took longer is not delayed further. Never on unless
    set; every chunk's ``meta["emulate_latency_ms"]`` states the figure used (0.0 = off).

    ``settings_switch``: what happens when a request asks for sampler settings whose graph
    is not built yet (e.g. ``num_steps`` changed at run time). The graph is always built in
    a background thread of the child. ``after_build`` (default) keeps serving the
    previous settings on the previous graph until the new graph is ready, then switches;
    ``immediate`` serves the new settings at once on the slower fallback path (per-step
    or eager) until the graph is ready. Each chunk's meta says which settings and which
    path produced it.
    """

    model_dir: str
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    num_threads: int = 1  # torch + ONNX Runtime intra-op threads in the child
    cache_dir: Optional[str] = None  # engines; None -> <model_dir>/engines or the user cache
    settings: SamplerSettings = field(default_factory=SamplerSettings)  # prepared at start
    prepare_prefix: bool = True  # also prepare the hard-prefix graph at start
    example_obs: Optional[dict] = None  # warm-up observation; None -> built from the config
    emulate_latency_ms: float = 0.0
    emulate_jitter_ms: float = 0.0
    emulate_seed: int = 0
    settings_switch: str = "after_build"
    heartbeat_interval_s: float = 0.05
    heartbeat_timeout_s: float = 2.0
    request_timeout_s: float = 5.0
    start_timeout_s: float = 300.0  # load + export/compile + warm-up
    restart_backoff_s: float = 0.5
    restart_backoff_max_s: float = 10.0
    max_start_failures: int = 3  # consecutive failed starts before giving up (state FAILED)
    shm_threshold_bytes: int = 16 * 1024
    loader: str = DEFAULT_LOADER  # "module:function(model_dir) -> policy"

    def __post_init__(self):
        for name in ("heartbeat_interval_s", "heartbeat_timeout_s", "request_timeout_s", "start_timeout_s",
                     "restart_backoff_s", "restart_backoff_max_s"):
            if not _positive(getattr(self, name)):
                raise ValueError(f"WorkerConfig.{name} must be a finite number > 0, got {getattr(self, name)!r}")
        if self.heartbeat_timeout_s <= 2 * self.heartbeat_interval_s:
            raise ValueError(f"WorkerConfig.heartbeat_timeout_s ({self.heartbeat_timeout_s}) must exceed "
                             f"2 x heartbeat_interval_s ({self.heartbeat_interval_s})")
        for name in ("num_threads", "max_start_failures"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"WorkerConfig.{name} must be an int >= 1, got {v!r}")
        if isinstance(self.shm_threshold_bytes, bool) or not isinstance(self.shm_threshold_bytes, int) \
                or self.shm_threshold_bytes < 0:
            raise ValueError(f"WorkerConfig.shm_threshold_bytes must be an int >= 0, got {self.shm_threshold_bytes!r}")
        if ":" not in self.loader:
            raise ValueError(f"WorkerConfig.loader must be 'module:function', got {self.loader!r}")
        if not isinstance(self.settings, SamplerSettings):
            raise ValueError("WorkerConfig.settings must be a SamplerSettings")
        if self.precision not in PRECISIONS:
            raise ValueError(f"WorkerConfig.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.settings_switch not in SETTINGS_SWITCHES:
            raise ValueError(f"WorkerConfig.settings_switch must be one of {list(SETTINGS_SWITCHES)}, "
                             f"got {self.settings_switch!r}")
        for name in ("emulate_latency_ms", "emulate_jitter_ms"):
            if not _non_negative(getattr(self, name)):
                raise ValueError(f"WorkerConfig.{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if self.emulate_jitter_ms > self.emulate_latency_ms:
            raise ValueError(f"WorkerConfig.emulate_jitter_ms ({self.emulate_jitter_ms}) must not exceed "
                             f"emulate_latency_ms ({self.emulate_latency_ms})")
        worst_ms = self.emulate_latency_ms + self.emulate_jitter_ms
        if worst_ms >= 1e3 * self.request_timeout_s:
            raise ValueError(f"WorkerConfig.emulate_latency_ms + emulate_jitter_ms ({worst_ms:g} ms) must stay below "
                             f"request_timeout_s ({self.request_timeout_s:g} s), or the watchdog kills every request")
        if isinstance(self.emulate_seed, bool) or not isinstance(self.emulate_seed, int):
            raise ValueError(f"WorkerConfig.emulate_seed must be an int, got {self.emulate_seed!r}")
