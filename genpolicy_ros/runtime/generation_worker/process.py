""":class:`GenerationWorker`: the parent-side handle of the generation child process.

Every method except :meth:`~GenerationWorker.wait_ready` and :meth:`~GenerationWorker.close`
is non-blocking and O(1); ``close()`` returns within about half a second in any state.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from typing import Callable, Optional

from ..chunk import ActionChunk
from .child import child_main
from .config import WorkerConfig
from .messages import GenerationRequest, WorkerError, WorkerState
from .transport import SharedArrays, encode_tree
from .watchdog import RestartPolicy, check_child

LOG = logging.getLogger("genpolicy_ros.runtime.generation_worker")

#: ``close()``: wait this long for a polite stop, then SIGTERM, then SIGKILL (each step ≤ this).
STOP_GRACE_S = 0.15


class _Launch:
    def __init__(self, proc, child_conn):
        self.proc, self.child_conn = proc, child_conn
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class _Launcher:
    """One long-lived thread that starts every child of a worker.

    ``Process.start()`` (1–20 ms measured) stays out of ``poll()``; and because Linux's
    ``PR_SET_PDEATHSIG`` fires when the *thread* that started the child exits, that thread
    must live as long as the children do (see :mod:`.lifeline`).
    """

    def __init__(self):
        self._jobs: "queue.SimpleQueue[Optional[_Launch]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="genpolicy-generation-launcher", daemon=True)
        self._thread.start()

    def launch(self, proc, child_conn) -> _Launch:
        job = _Launch(proc, child_conn)
        self._jobs.put(job)
        return job

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.proc.start()
            except BaseException as exc:  # noqa: BLE001 - reported by the worker's poll()
                job.error = exc
            finally:
                job.child_conn.close()  # the parent keeps only its end: EOF arrives when the child dies
                job.done.set()

    def stop(self) -> None:
        self._jobs.put(None)


class _WorkerStatus:
    """``state`` and ``ready`` of both worker kinds (they keep ``self._state``)."""

    _state: WorkerState

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state in (WorkerState.READY, WorkerState.BUSY)


def path_summary(meta: dict) -> dict:
    """What diagnostics show about the path that produced a chunk (from its ``meta``)."""
    keys = ("backend", "path", "settings", "requested_settings", "pending_settings", "graph_build_s",
            "precision", "emulate_latency_ms")
    return {k: meta.get(k) for k in keys}


class GenerationWorker(_WorkerStatus):
    """Parent-side handle of the generation child process (see the package docstring).

    ``on_progress(text)`` (optional, called from ``poll()``/``wait_ready()``) receives the
    child's progress lines: engine export/build steps at start, background graph builds.
    ``stats`` counts chunks, faults and paths (``path:graph``, ``path:per_step``,
    ``path:eager``); ``active_path`` describes the path of the newest chunk.
    """

    def __init__(self, config: WorkerConfig, *, latency_tracker=None,
                 clock: Callable[[], float] = time.monotonic, autostart: bool = True,
                 on_progress: Optional[Callable[[str], None]] = None):
        self.config = config
        self.latency_tracker = latency_tracker
        self.clock = clock
        self.on_progress = on_progress
        self._ctx = mp.get_context("spawn")
        self._state = WorkerState.STOPPED
        self._proc = None  # the running child (set once launched)
        self._launch: Optional[_Launch] = None  # the child being launched
        self._launcher: Optional[_Launcher] = None
        self._conn = None
        self._heartbeat = None
        self._zombies: list = []
        self._events: "collections.deque" = collections.deque()
        self._pending: Optional[GenerationRequest] = None
        self._in_flight: Optional[GenerationRequest] = None
        self._sent_at = 0.0
        self._started_at = 0.0
        self._restart_at = 0.0
        self._restarts = RestartPolicy(config)
        self._shm = SharedArrays()
        self.info: dict = {}
        self.stats = collections.Counter()
        self.active_path: dict = {}
        self.progress_lines: "collections.deque[str]" = collections.deque(maxlen=64)
        self.dt: Optional[float] = None
        if autostart:
            self.start()

    # ---------------------------------------------------------------- life cycle
    @property
    def busy(self) -> bool:
        return self._state == WorkerState.BUSY

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc or (self._launch.proc if self._launch is not None else None)
        return proc.pid if proc is not None else None

    def start(self) -> None:
        if self._state == WorkerState.CLOSED:
            raise RuntimeError("GenerationWorker is closed")
        if self._proc is None and self._launch is None:
            self._spawn()

    def restart(self) -> None:
        """Start over after FAILED (or force a fresh child)."""
        self._end_child(grace_s=0.0)
        self._restarts.reset()
        self._spawn()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the child is ready (configure step); returns False on timeout/failure."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._service()
            if self.ready:
                return True
            if self._state in (WorkerState.FAILED, WorkerState.CLOSED):
                return False
            if self._conn is not None:
                self._conn.poll(min(0.05, max(0.0, deadline - time.monotonic())))
            else:
                time.sleep(0.02)
        return self.ready

    def close(self, timeout: float = 0.5) -> None:
        """Stop the child (``stop`` message, then SIGTERM, then SIGKILL), reap it, release
        shared memory. Returns within about ``timeout`` + 0.2 s whatever the child does."""
        if self._state == WorkerState.CLOSED:
            return
        grace = min(STOP_GRACE_S, max(0.0, timeout) / 3)
        polite = self._state in (WorkerState.READY, WorkerState.BUSY)  # else it is not listening
        self._end_child(grace_s=grace if polite else 0.0, term_s=grace)
        for proc in self._zombies:
            proc.join(grace)
        self._zombies = [p for p in self._zombies if p.exitcode is None]
        if self._launcher is not None:
            self._launcher.stop()
            self._launcher = None
        self._shm.close()
        self._state = WorkerState.CLOSED

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # best effort: never leave a child behind
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ---------------------------------------------------------------- requests
    def submit(self, request: GenerationRequest) -> None:
        """Queue ``request`` (replacing any not-yet-sent one) and send it if the child is idle."""
        if self._state == WorkerState.CLOSED:
            raise RuntimeError("GenerationWorker is closed")
        if not isinstance(request, GenerationRequest):
            raise TypeError(f"submit() takes a GenerationRequest, got {type(request).__name__}")
        if self._state == WorkerState.FAILED:
            self._events.append(WorkerError("failed", "generation worker gave up after repeated start "
                                            "failures; call restart()", seq=request.seq))
            return
        if self._pending is not None:
            self.stats["superseded"] += 1
        self._pending = request
        self._service()

    def poll(self):
        """The next ``ActionChunk`` or ``WorkerError`` if one is available, else None."""
        self._service()
        return self._events.popleft() if self._events else None

    # ---------------------------------------------------------------- child process
    def _spawn(self) -> None:
        """Start a child without blocking: the launcher thread runs ``Process.start()``."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        self._heartbeat = self._ctx.RawValue("d", time.monotonic())
        proc = self._ctx.Process(target=child_main, args=(child_conn, self.config, self._heartbeat, os.getpid()),
                                 name="genpolicy-generation", daemon=True)
        if self._launcher is None:
            self._launcher = _Launcher()
        self._conn, self._proc = parent_conn, None
        self._launch = self._launcher.launch(proc, child_conn)
        self._started_at = time.monotonic()
        self._state = WorkerState.STARTING
        self.stats["starts"] += 1

    def _launched(self) -> bool:
        """True once the launch is done (then ``_proc`` is set, or a fault was raised)."""
        launch = self._launch
        if launch is None:
            return True
        if not launch.done.is_set():
            return False
        self._launch = None
        if launch.error is not None:
            self._fault("start_failed", f"could not start the generation child: {launch.error}")
            return False
        self._proc = launch.proc
        LOG.info("generation child started (pid %d)", launch.proc.pid)
        return True

    def _end_child(self, grace_s: float, term_s: float = 0.0) -> None:
        """Stop the current child: with ``grace_s`` > 0 ask it to stop and wait that long,
        then SIGTERM and wait ``term_s``, then SIGKILL. Never blocks for much longer; a
        child not yet reaped is kept in ``_zombies`` and reaped by a later poll."""
        launch = self._launch
        if launch is not None:  # rare: a fault/close while the launcher still starts it
            launch.done.wait(1.0)
            self._launch = None
            self._proc = launch.proc if launch.error is None and launch.done.is_set() else None
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is not None and grace_s > 0 and conn is not None and proc.is_alive():
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
            proc.join(grace_s)
        if conn is not None:
            conn.close()
        if proc is None:
            return
        if proc.is_alive() and term_s > 0:
            proc.terminate()
            proc.join(term_s)
        if proc.is_alive():
            proc.kill()
        proc.join(term_s if term_s > 0 else 0)
        if proc.exitcode is None:
            self._zombies.append(proc)

    def _fault(self, kind: str, message: str) -> None:
        seq = self._in_flight.seq if self._in_flight is not None else None
        self._in_flight = None
        self._end_child(grace_s=0.0)
        self.stats[kind] += 1
        delay = self._restarts.on_fault(kind)
        if delay is None:
            self._state = WorkerState.FAILED
            message += f" (gave up after {self._restarts.start_failures} failed starts; call restart())"
        else:
            self._state = WorkerState.BACKOFF
            self._restart_at = time.monotonic() + delay
            message += f" (restarting in {delay:.2f} s)"
        LOG.error("generation worker %s: %s", kind, message)
        self._events.append(WorkerError(kind, message, seq=seq, restarting=delay is not None))

    def _service(self) -> None:
        now = time.monotonic()
        for proc in self._zombies:
            proc.join(0)  # reap without blocking
        self._zombies = [p for p in self._zombies if p.exitcode is None]
        if self._state == WorkerState.STARTING and not self._launched():
            if self._state == WorkerState.STARTING and now - self._started_at > self.config.start_timeout_s:
                self._fault("hung", f"generation child not launched after {self.config.start_timeout_s:.1f} s")
            return
        if self._state in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY):
            self._drain()
        if self._state in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY) and self._proc is not None:
            proc = self._proc
            fault = check_child(self.config, self._state, now, alive=proc.is_alive(), pid=proc.pid,
                                exitcode=proc.exitcode, started_at=self._started_at,
                                heartbeat_at=self._heartbeat.value, sent_at=self._sent_at,
                                in_flight_seq=self._in_flight.seq if self._in_flight is not None else None)
            if fault is not None:
                self._fault(*fault)
        if self._state == WorkerState.BACKOFF and now >= self._restart_at:
            self._spawn()
        if self._state == WorkerState.READY and self._pending is not None:
            self._send(self._pending)

    def _drain(self) -> None:
        conn = self._conn
        try:
            while conn is not None and conn.poll(0):
                self._handle(conn.recv())
                conn = self._conn
        except (EOFError, OSError):
            proc = self._proc
            code = proc.exitcode if proc is not None else None
            if proc is not None:
                proc.join(0.05)  # EOF: the child is exiting; collect its code if it is there
                code = proc.exitcode
            self._fault("crashed", f"generation child closed its pipe (exit code {code})")

    def _progress(self, text: str) -> None:
        self.progress_lines.append(text)
        LOG.info("generation child: %s", text)
        if self.on_progress is not None:
            try:
                self.on_progress(text)
            except Exception:  # noqa: BLE001 - a logging callback must not break the worker
                LOG.debug("on_progress callback failed", exc_info=True)

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "progress":
            self._progress(msg[1])
        elif kind == "ready":
            self.info = msg[1]
            self.dt = self.info.get("dt")
            self._state = WorkerState.READY
            self._restarts.on_ready()
            for line in self.info.get("fallbacks", []):
                LOG.warning(line)
            LOG.info("generation child ready: %s (prepare %.2f s)", self.info.get("backend"),
                     self.info.get("prepare_s", float("nan")))
        elif kind == "fatal":
            self._fault("start_failed", f"generation child could not start: {msg[1]}")
            if self._events and self._events[-1].kind == "start_failed":
                last = self._events.pop()
                self._events.append(dataclasses.replace(last, traceback=msg[2]))
        elif kind in ("result", "error"):
            self._reply(kind, msg)

    def _reply(self, kind: str, msg) -> None:
        req, self._in_flight = self._in_flight, None
        self._state = WorkerState.READY
        if req is None or req.seq != msg[1]:
            return  # a reply to a request we already gave up on
        latency = time.monotonic() - self._sent_at
        if kind == "error":
            self.stats["errors"] += 1
            self._events.append(WorkerError("generation", msg[2], seq=msg[1], traceback=msg[3]))
            return
        self._restarts.on_success()
        self.stats["chunks"] += 1
        if self.latency_tracker is not None:
            self.latency_tracker.record(latency)
        meta = dict(msg[3], request_latency_s=latency)
        self.stats[f"path:{str(meta.get('path', '?')).split(':')[0]}"] += 1
        self.active_path = path_summary(meta)
        now = self.clock()
        self._events.append(ActionChunk(t0=req.t0, dt=self.dt, actions=msg[2], generated_at=now,
                                        latency_s=max(0.0, now - req.t0), seq=req.seq, meta=meta))

    def _send(self, req: GenerationRequest) -> None:
        encoded = encode_tree(req.obs, self._shm, self.config.shm_threshold_bytes)
        self._pending = None
        try:
            # The observation travels separately (large arrays via shared memory).
            self._conn.send(("generate", dataclasses.replace(req, obs={}), encoded))
        except (OSError, ValueError) as exc:
            self._in_flight = req
            self._fault("crashed", f"could not send to the generation child: {exc}")
            return
        self._in_flight = req
        self._sent_at = time.monotonic()
        self._state = WorkerState.BUSY
