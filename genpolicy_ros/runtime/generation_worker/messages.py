"""What travels between the caller and a generation worker: requests, errors, states.

Torch-free: the real-time process builds requests and reads errors without importing torch.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from ..sampler_settings import SamplerSettings


@dataclass
class GenerationRequest:
    """One chunk to generate.

    ``obs``: a single observation without batch dim, robot units:
    ``{"state": [T_o, D_s], "images": {camera: [T_o, 3, H, W] float in [0, 1] or
    [T_o, H, W, 3] uint8}}`` (see :func:`obs_from_snapshot`).
    ``prefix_actions [k, D_a]`` (robot units) + ``prefix_weights [T_p]``: frozen prefix for
    real-time chunking; ``prefix_mode`` ``hard`` (graph backends) or ``guided`` (eager).
    ``seed`` fixes the initial noise (:func:`~genpolicy_ros.runtime.backends.base.make_noise`).
    """

    seq: int
    obs: Mapping[str, Any]
    t0: float
    settings: SamplerSettings = field(default_factory=SamplerSettings)
    seed: Optional[int] = None
    prefix_actions: Optional[np.ndarray] = None
    prefix_weights: Optional[np.ndarray] = None
    prefix_mode: str = "hard"

    def __post_init__(self):
        if isinstance(self.seq, bool) or not isinstance(self.seq, (int, np.integer)) or self.seq < 0:
            raise ValueError(f"GenerationRequest.seq must be an int >= 0, got {self.seq!r}")
        if not isinstance(self.obs, Mapping):
            raise ValueError(f"GenerationRequest.obs must be a dict of arrays, got {type(self.obs).__name__}")
        if not isinstance(self.settings, SamplerSettings):
            raise ValueError(f"GenerationRequest.settings must be SamplerSettings, got {type(self.settings).__name__}")
        if self.prefix_mode not in ("hard", "guided"):
            raise ValueError(f"GenerationRequest.prefix_mode must be 'hard' or 'guided', got {self.prefix_mode!r}")


@dataclass(frozen=True)
class WorkerError:
    """A failed request or a worker fault, reported by ``poll()``.

    ``kind``: ``generation`` (exception while sampling; the child keeps serving),
    ``crashed`` (child exited), ``hung`` (heartbeat or request timeout; child killed),
    ``start_failed`` (model/backend could not be loaded or prepared), ``failed`` (a request
    submitted after the worker gave up restarting).
    ``seq`` is the affected request, or None.
    """

    kind: str
    message: str
    seq: Optional[int] = None
    traceback: str = ""
    restarting: bool = False


class WorkerState(str, enum.Enum):
    STOPPED = "stopped"  # not started yet
    STARTING = "starting"  # child spawned, loading / preparing
    READY = "ready"  # idle, can take a request
    BUSY = "busy"  # one request in flight
    BACKOFF = "backoff"  # child died; a new one starts at restart_at
    FAILED = "failed"  # gave up after max_start_failures; call restart()
    CLOSED = "closed"


def obs_from_snapshot(snapshot, state_stream: str = "state", camera_prefix: str = "camera/") -> dict:
    """``ObservationSnapshot.data`` → the policy's observation layout (no batch dim).

    ``data["state"] [T_o, D_s]`` → ``obs["state"]``; ``data["camera/<name>"]`` →
    ``obs["images"][name]``. Arrays are passed through (no copy).
    """
    data = snapshot.data if hasattr(snapshot, "data") else snapshot
    obs: dict = {}
    for stream, value in data.items():
        if stream == state_stream:
            obs["state"] = value
        elif stream.startswith(camera_prefix):
            obs.setdefault("images", {})[stream[len(camera_prefix):]] = value
    return obs
