"""The backend ``auto`` prefers on this machine, as measured by ``genpolicy export``/``bench``.

``auto`` has a static preference (:data:`~genpolicy_ros.runtime.backends.AUTO_ORDER`); a
measurement on the target machine beats it. :func:`measure_candidates` prepares every
candidate and times them interleaved on the model; :func:`record_choice` writes the
fastest into ``<engine cache>/auto_backend.json``, keyed by device (GPU model or ``cpu``),
thread count and precision; :func:`recorded_choice` reads it back and ``auto`` tries that
backend first (falling back through the static order when it fails to build).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np

LOG = logging.getLogger("genpolicy_ros.runtime.backends")
CHOICE_FILE = "auto_backend.json"


def _slot(device: str, threads: Optional[int], precision: str) -> str:
    from .cache import device_name

    return f"{device_name(device)}|threads={int(threads or 1)}|{precision}"


def record_choice(cache_dir, device: str, threads: Optional[int], precision: str, backend: str,
                  timings_ms: dict, source: str) -> Path:
    """Store ``backend`` as the measured choice for (device, threads, precision)."""
    from .cache import _atomic_write

    path = Path(cache_dir) / CHOICE_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc[_slot(device, threads, precision)] = {"backend": backend, "p50_ms": timings_ms, "source": source,
                                              "measured_unix": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, json.dumps(doc, indent=2, sort_keys=True).encode())
    return path


def recorded_choice(cache_dir, device: str, threads: Optional[int], precision: str) -> Optional[str]:
    """The measured choice for (device, threads, precision), or None."""
    if cache_dir is None:
        return None
    try:
        doc = json.loads((Path(cache_dir) / CHOICE_FILE).read_text())
    except (OSError, ValueError):
        return None
    entry = doc.get(_slot(device, threads, precision))
    return entry.get("backend") if isinstance(entry, dict) else None


def measure_candidates(prepared: dict, obs, settings, *, repeats: int = 30, warmup: int = 3) -> dict:
    """``{name: p50 ms}`` of prepared backends, timed interleaved (A, B, A, B, …) on ``obs``."""
    from .base import batch_of, chunk_shape, make_noise

    some = next(iter(prepared.values()))
    shape = chunk_shape(some.policy, batch_of(obs))
    times = {name: [] for name in prepared}
    for i in range(warmup + repeats):
        noise = make_noise(shape, 10_000 + i)  # [B, T_p, D_a]
        for name, backend in prepared.items():
            t = time.perf_counter()
            backend.sample(obs, noise, settings)
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}
