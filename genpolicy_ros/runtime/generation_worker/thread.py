""":class:`ThreadGenerationWorker`: the worker interface, generating in a thread of *this* process.

For tests and simple scripts only: the thread holds the GIL between kernels, so a
real-time loop in the same process misses deadlines (references.md: publisher p99
lateness 67 ms vs 0.19 ms with the process worker). No watchdog/restart: an exception
comes back as a ``WorkerError(kind="generation")``.
"""
from __future__ import annotations

import collections
import threading
import time
import traceback
from typing import Callable, Optional

from ..chunk import ActionChunk
from .config import WorkerConfig
from .messages import GenerationRequest, WorkerError, WorkerState
from .process import _WorkerStatus, path_summary


class ThreadGenerationWorker(_WorkerStatus):
    """Same interface as :class:`~.process.GenerationWorker` (``on_progress`` is called
    from the generation thread here)."""

    def __init__(self, config: WorkerConfig, *, latency_tracker=None,
                 clock: Callable[[], float] = time.monotonic, autostart: bool = True,
                 on_progress: Optional[Callable[[str], None]] = None):
        self.config = config
        self.latency_tracker = latency_tracker
        self.clock = clock
        self.on_progress = on_progress
        self._events: "collections.deque" = collections.deque()
        self._lock = threading.Lock()
        self._pending: Optional[GenerationRequest] = None
        self._busy = False
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._state = WorkerState.STOPPED
        self.session = None
        self.info: dict = {}
        self.dt: Optional[float] = None
        self.stats = collections.Counter()
        self.active_path: dict = {}
        if autostart:
            self.start()

    @property
    def busy(self) -> bool:
        return self._busy

    def start(self) -> None:
        if self._thread is None:
            self._state = WorkerState.STARTING
            self._thread = threading.Thread(target=self._run, name="genpolicy-generation", daemon=True)
            self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        self._ready.wait(timeout)
        return self.ready

    def submit(self, request: GenerationRequest) -> None:
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"submit() takes a GenerationRequest, got {type(request).__name__}")
        with self._lock:
            if self._pending is not None:
                self.stats["superseded"] += 1
            self._pending = request
        self._wake.set()

    def poll(self):
        with self._lock:
            return self._events.popleft() if self._events else None

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._state = WorkerState.CLOSED

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _run(self) -> None:
        from .session import GenerationSession

        try:
            session = GenerationSession(self.config, progress=self.on_progress)
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._events.append(WorkerError("start_failed", f"{type(exc).__name__}: {exc}",
                                                traceback=traceback.format_exc()))
            self._state = WorkerState.FAILED
            self._ready.set()
            return
        self.session = session
        self.info, self.dt = session.info, session.dt
        self._state = WorkerState.READY
        self._ready.set()
        while not self._stop.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
            with self._lock:
                req, self._pending = self._pending, None
                self._busy = req is not None
            if req is None:
                continue
            self._state = WorkerState.BUSY
            t = time.monotonic()
            try:
                actions, meta = session.generate(req, req.obs)
                latency = time.monotonic() - t
                now = self.clock()
                event = ActionChunk(t0=req.t0, dt=self.dt, actions=actions, generated_at=now,
                                    latency_s=max(0.0, now - req.t0), seq=req.seq,
                                    meta=dict(meta, request_latency_s=latency))
                if self.latency_tracker is not None:
                    self.latency_tracker.record(latency)
                self.stats["chunks"] += 1
                self.stats[f"path:{str(meta.get('path', '?')).split(':')[0]}"] += 1
                self.active_path = path_summary(meta)
            except Exception as exc:  # noqa: BLE001
                event = WorkerError("generation", f"{type(exc).__name__}: {exc}", seq=req.seq,
                                    traceback=traceback.format_exc())
            with self._lock:
                self._events.append(event)
                self._busy = False
            self._state = WorkerState.READY
        session.close()
