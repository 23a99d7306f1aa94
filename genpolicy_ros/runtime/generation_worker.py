"""Generation worker: action chunks are sampled in a separate *process*.

Why a process (references.md, "Real-time behaviour of Python on a 2-core machine"): a
generation thread in the publishing process holds the GIL between kernels and pushes the
100 Hz executor's p99 lateness from 0.12 ms to 67 ms; a separate process leaves it at
0.19 ms. :class:`ThreadGenerationWorker` has the same interface for tests and simple
scripts — do not use it next to a real-time loop.

::

    parent (executor process)                         child (spawned, owns torch)
    ─────────────────────────                         ───────────────────────────
    submit(req) ─ newest request wins ─► pending      load_model_dir(model_dir)  (safetensors)
    poll()  ── all O(1), never blocks ──┐             create_backend(...).prepare(...) warm-up
      send when child idle: small msg ──┼── Pipe ───► recv → decode obs (shared memory)
      recv reply if one is readable  ◄──┼── Pipe ──── send ("result"|"error", seq, ...)
      watchdog: exit code, heartbeat ◄──┴── shared double ◄── heartbeat thread (monotonic)
      → ActionChunk | WorkerError | None

* **Hand-over.** Requests and replies travel as pickles over a ``multiprocessing`` Pipe.
  Both ends are this module in the same program (parent and its own spawned child), so
  the pickles are trusted; no model object is ever pickled — the child loads the weights
  itself from the model directory (safetensors). Arrays larger than ``shm_threshold_bytes``
  (camera images) are copied once into a parent-owned ``multiprocessing.shared_memory``
  segment that is reused across requests; only ``(segment, shape, dtype)`` goes through
  the pipe, so a send never waits for the child to drain a large pickle. The child
  attaches without registering the segment with the resource tracker (the parent owns and
  unlinks it), so nothing leaks and no tracker warnings appear.
  Measured (2 cameras, T_o=2, 96×96, 60 requests; ``submit()`` is what the executor
  pays): float32 CHW 432 KiB — shared memory p50 0.20 ms / max 0.24 ms, pipe pickle
  p50 3.7 ms / **max 62 ms**; uint8 HWC 108 KiB — 0.20 ms vs 0.26 ms. Send images as
  uint8 HWC (4× fewer bytes; the child converts them to float CHW in [0, 1]).
* **Spawn.** Children are started with the ``spawn`` method (no inherited torch/ROS
  state); ``Process.start()`` (1–20 ms measured) runs in a launcher thread so a restart
  never stalls ``poll()``. As with any ``spawn`` program, the entry script must guard its
  top level with ``if __name__ == "__main__":`` (console scripts do).
* **One request in flight.** A new ``submit`` while the child is busy replaces the pending
  (not yet sent) request: the freshest observation wins, nothing queues up.
* **Watchdog.** A child that exits (crash, OOM kill, SIGKILL) is detected from its exit
  code; a hung child from a stale heartbeat (frozen process) or from a request older
  than ``request_timeout_s`` (stuck in generation). Either way the child is killed,
  a :class:`WorkerError` is reported, and a new child is started after a backoff
  (``restart_backoff_s`` doubling up to ``restart_backoff_max_s``; reset by a success).
* **Errors.** An exception while generating comes back as a :class:`WorkerError` with
  the message and traceback text; the child keeps serving.
* **Latency.** ``request_latency_s`` (submit → reply, steady clock) is recorded per chunk
  into an optional :class:`~genpolicy_ros.runtime.latency.LatencyTracker` and the chunk's
  ``meta``; ``ActionChunk.latency_s`` is observation stamp ``t0`` → chunk available on the
  caller's ``clock``.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import importlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any, Callable, Mapping, Optional

import numpy as np

from .sampler_settings import SamplerSettings
from .chunk import ActionChunk

LOG = logging.getLogger("genpolicy_ros.runtime.generation_worker")

DEFAULT_LOADER = "genpolicy_ros.core.checkpoint:load_model_dir"


# --------------------------------------------------------------------------- messages
@dataclass
class GenerationRequest:
    """One chunk to generate.

    ``obs``: a single observation without batch dim, robot units:
    ``{"state": [T_o, D_s], "images": {camera: [T_o, 3, H, W] float in [0, 1] or
    [T_o, H, W, 3] uint8}}`` (see :func:`obs_from_snapshot`).
    ``prefix_actions [k, D_a]`` (robot units) + ``prefix_weights [T_p]``: frozen prefix for
    real-time chunking; ``prefix_mode`` ``hard`` (graph backends) or ``guided`` (eager).
    ``seed`` fixes the initial noise (:func:`~.backends.base.make_noise`).
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


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class WorkerConfig:
    """Settings of a :class:`GenerationWorker` (validated on construction)."""

    model_dir: str
    backend: str = "auto"
    device: str = "cpu"
    num_threads: int = 1  # torch + ONNX Runtime intra-op threads in the child
    cache_dir: Optional[str] = None  # engines; None -> <model_dir>/engines or the user cache
    settings: SamplerSettings = field(default_factory=SamplerSettings)  # prepared at start
    prepare_prefix: bool = True  # also prepare the hard-prefix graph at start
    example_obs: Optional[dict] = None  # warm-up observation; None -> built from the config
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
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"WorkerConfig.{name} must be a finite number > 0, got {v!r}")
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


class WorkerState(str, enum.Enum):
    STOPPED = "stopped"  # not started yet
    STARTING = "starting"  # child spawned, loading / preparing
    READY = "ready"  # idle, can take a request
    BUSY = "busy"  # one request in flight
    BACKOFF = "backoff"  # child died; a new one starts at restart_at
    FAILED = "failed"  # gave up after max_start_failures; call restart()
    CLOSED = "closed"


# --------------------------------------------------------------------------- array transport
class _SharedArrays:
    """Parent-owned shared-memory slots, one per array path, grown on demand and reused."""

    def __init__(self):
        self._slots: dict[str, shared_memory.SharedMemory] = {}

    def put(self, path: str, arr: np.ndarray) -> tuple:
        arr = np.ascontiguousarray(arr)
        slot = self._slots.get(path)
        if slot is None or slot.size < arr.nbytes:
            if slot is not None:
                slot.close()
                slot.unlink()
            slot = shared_memory.SharedMemory(create=True, size=max(arr.nbytes, 1))
            self._slots[path] = slot
        np.ndarray(arr.shape, arr.dtype, buffer=slot.buf)[...] = arr  # the one copy
        return ("shm", slot.name, arr.shape, arr.dtype.str)

    def close(self):
        for slot in self._slots.values():
            try:
                slot.close()
                slot.unlink()
            except FileNotFoundError:
                pass
        self._slots.clear()


def _encode_tree(tree, shm: Optional[_SharedArrays], threshold: int, path: str = ""):
    """Nested dict of arrays -> same nesting with large arrays replaced by shm references."""
    if isinstance(tree, Mapping):
        return {k: _encode_tree(v, shm, threshold, f"{path}/{k}") for k, v in tree.items()}
    arr = np.asarray(tree)
    if shm is not None and arr.nbytes > threshold:
        return shm.put(path, arr)
    return ("inline", arr)


class _Attached:
    """Child side: shared-memory segments attached by name (not tracked: the parent owns them)."""

    def __init__(self, capacity: int = 16):
        self._segments: "collections.OrderedDict[str, shared_memory.SharedMemory]" = collections.OrderedDict()
        self.capacity = capacity

    def view(self, name: str, shape, dtype) -> np.ndarray:
        seg = self._segments.get(name)
        if seg is None:
            seg = _attach_untracked(name)
            self._segments[name] = seg
            while len(self._segments) > self.capacity:
                self._segments.popitem(last=False)[1].close()
        return np.ndarray(tuple(shape), np.dtype(dtype), buffer=seg.buf)


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without registering it with the resource tracker
    (Python < 3.13 registers attachments too, and would unlink the parent's segment or
    warn about a "leak" when the child exits)."""
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    from multiprocessing import resource_tracker

    original = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = original


def _decode_tree(tree, attached: Optional[_Attached]):
    if isinstance(tree, Mapping):
        return {k: _decode_tree(v, attached) for k, v in tree.items()}
    how, *rest = tree
    if how == "inline":
        return rest[0]
    name, shape, dtype = rest
    return np.array(attached.view(name, shape, dtype), copy=True)  # own copy before replying


def to_policy_obs(obs: Mapping[str, Any]) -> dict:
    """Single observation (numpy) -> batched float32 tensors ``[1, ...]`` in the policy's layout;
    uint8 HWC images ``[T_o, H, W, 3]`` become float CHW in [0, 1]."""
    import torch

    out: dict = {}
    for key, value in obs.items():
        if isinstance(value, Mapping):
            out[key] = {}
            for cam, img in value.items():
                img = np.asarray(img)
                t = torch.from_numpy(np.ascontiguousarray(img))
                if img.dtype == np.uint8:
                    if img.ndim == 4 and img.shape[-1] == 3:
                        t = t.permute(0, 3, 1, 2)  # [T_o, 3, H, W]
                    t = t.float() / 255.0
                out[key][cam] = t.float().unsqueeze(0)  # [1, T_o, 3, H, W]
        else:
            out[key] = torch.as_tensor(np.asarray(value), dtype=torch.float32).unsqueeze(0)  # [1, T_o, D]
    return out


def example_obs_from_config(config) -> dict:
    """A neutral single observation matching the policy config (for warm-up)."""
    T_o = config.horizon.T_o
    obs: dict = {}
    if config.observation.state_dim > 0:
        obs["state"] = np.zeros((T_o, config.observation.state_dim), np.float32)  # [T_o, D_s]
    if config.observation.camera_names:
        H, W = config.observation.image_size
        obs["images"] = {cam: np.full((T_o, 3, H, W), 0.5, np.float32)  # [T_o, 3, H, W]
                         for cam in config.observation.camera_names}
    return obs


# --------------------------------------------------------------------------- the engine (shared)
class _Engine:
    """Loads the policy, creates + prepares the backend, serves requests. Used by the child
    process and by :class:`ThreadGenerationWorker`."""

    def __init__(self, cfg: WorkerConfig):
        import torch

        from .backends import create_backend
        from .backends.cache import default_cache_dir

        torch.set_num_threads(cfg.num_threads)
        module, func = cfg.loader.split(":", 1)
        self.policy = getattr(importlib.import_module(module), func)(cfg.model_dir)
        self.policy.eval()
        cache_dir = cfg.cache_dir if cfg.cache_dir is not None else default_cache_dir(cfg.model_dir)
        # "auto" is resolved here, in the process that owns torch (the node never imports it).
        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.backend = create_backend(cfg.backend, self.policy, device, cache_dir,
                                      num_threads=cfg.num_threads)
        example = cfg.example_obs or example_obs_from_config(self.policy.config)
        example_t = to_policy_obs(example)
        t = time.perf_counter()
        prepared = False
        if cfg.prepare_prefix and self.policy.config.kind != "regression":
            # The hard-prefix graph also serves requests without a prefix (zero weights).
            try:
                self.backend.prepare(cfg.settings, example_t, with_prefix=True)
                prepared = True
            except Exception as exc:  # noqa: BLE001 - prefix chunks then run eager
                LOG.warning("prefix graph not prepared (%s); prefix chunks run eager", exc)
        if not prepared:
            self.backend.prepare(cfg.settings, example_t)
        self.prepare_s = time.perf_counter() - t
        self.T_p = int(self.policy.config.horizon.T_p)
        self.D_a = int(self.policy.config.action.dim)
        self.dt = float(self.policy.config.horizon.dt)
        self.info = {"backend": self.backend.describe(), "device": device, "prepare_s": self.prepare_s,
                     "dt": self.dt,
                     "fallbacks": list(getattr(self.backend, "fallbacks", [])), "pid": os.getpid()}

    def generate(self, req: GenerationRequest, obs: Mapping[str, Any]) -> tuple[np.ndarray, dict]:
        import torch

        from .backends.base import make_noise

        if req.settings.debug_sleep_s > 0:  # test-only hang injection
            time.sleep(req.settings.debug_sleep_s)
        t = time.perf_counter()
        obs_t = to_policy_obs(obs)
        noise = make_noise((1, self.T_p, self.D_a), req.seed)  # [1, T_p, D_a]
        kwargs = {}
        if req.prefix_actions is not None:
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
        out = self.backend.sample(obs_t, noise, req.settings, **kwargs)  # [1, T_p, D_a]
        actions = out[0].detach().cpu().numpy().astype(np.float64)  # [T_p, D_a]
        return actions, {"compute_s": time.perf_counter() - t, "path": self.backend.last_path,
                         "backend": self.backend.describe()}


def _child_main(conn, cfg: WorkerConfig, heartbeat) -> None:
    """Entry point of the spawned child process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            heartbeat.value = time.monotonic()
            stop.wait(cfg.heartbeat_interval_s)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    try:
        engine = _Engine(cfg)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        conn.send(("fatal", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        stop.set()
        return
    conn.send(("ready", engine.info))
    attached = _Attached()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break  # parent went away
            if msg[0] == "stop":
                break
            _, req, encoded = msg
            try:
                obs = _decode_tree(encoded, attached)
                actions, meta = engine.generate(req, obs)
                conn.send(("result", req.seq, actions, meta))
            except Exception as exc:  # noqa: BLE001 - reported; keep serving
                conn.send(("error", req.seq, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        stop.set()
        engine.backend.close()


# --------------------------------------------------------------------------- parent-side client
class _WorkerStatus:
    """``state`` and ``ready`` of both worker kinds (they keep ``self._state``)."""

    _state: WorkerState

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state in (WorkerState.READY, WorkerState.BUSY)


class GenerationWorker(_WorkerStatus):
    """Parent-side handle of the generation child process (see module docstring).

    Every method except :meth:`wait_ready` and :meth:`close` is non-blocking and O(1).
    """

    def __init__(self, config: WorkerConfig, *, latency_tracker=None,
                 clock: Callable[[], float] = time.monotonic, autostart: bool = True):
        self.config = config
        self.latency_tracker = latency_tracker
        self.clock = clock
        self._ctx = mp.get_context("spawn")
        self._state = WorkerState.STOPPED
        self._proc = None  # the running child (set once launched)
        self._launching = None  # the child being launched by the launcher thread
        self._launcher: Optional[threading.Thread] = None
        self._launch_error: Optional[BaseException] = None
        self._conn = None
        self._heartbeat = None
        self._zombies: list = []
        self._events: "collections.deque" = collections.deque()
        self._pending: Optional[GenerationRequest] = None
        self._in_flight: Optional[GenerationRequest] = None
        self._sent_at = 0.0
        self._started_at = 0.0
        self._restart_at = 0.0
        self._failures = 0  # consecutive faults (for the backoff)
        self._start_failures = 0
        self._shm = _SharedArrays()
        self.info: dict = {}
        self.stats = collections.Counter()
        self.dt: Optional[float] = None
        if autostart:
            self.start()

    # ---------------------------------------------------------------- life cycle
    @property
    def busy(self) -> bool:
        return self._state == WorkerState.BUSY

    @property
    def pid(self) -> Optional[int]:
        proc = self._proc or self._launching
        return proc.pid if proc is not None else None

    def start(self) -> None:
        if self._state == WorkerState.CLOSED:
            raise RuntimeError("GenerationWorker is closed")
        if self._proc is None and self._launcher is None:
            self._spawn()

    def restart(self) -> None:
        """Start over after FAILED (or force a fresh child)."""
        self._kill_child()
        self._start_failures = 0
        self._failures = 0
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

    def close(self, timeout: float = 2.0) -> None:
        """Stop the child (politely, then SIGKILL), reap it, release shared memory."""
        if self._state == WorkerState.CLOSED:
            return
        polite = self._state in (WorkerState.READY, WorkerState.BUSY)  # else it is not listening
        if polite and self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
            self._proc.join(timeout)
        self._kill_child()
        for proc in self._zombies:
            proc.join(timeout)
        self._zombies.clear()
        self._shm.close()
        self._state = WorkerState.CLOSED

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # best effort: never leave a child behind
        try:
            self.close(timeout=0.5)
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

    # ---------------------------------------------------------------- internals
    def _spawn(self) -> None:
        """Start a child without blocking: ``Process.start()`` (fork/exec + handing over the
        spawn data, 1-20 ms measured) runs in a short-lived launcher thread."""
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        self._heartbeat = self._ctx.RawValue("d", time.monotonic())
        proc = self._ctx.Process(target=_child_main, args=(child_conn, self.config, self._heartbeat),
                                 name="genpolicy-generation", daemon=True)
        self._conn, self._proc, self._launching = parent_conn, None, proc
        self._launch_error = None
        self._launcher = threading.Thread(target=self._launch, args=(proc, child_conn),
                                          name="genpolicy-generation-launcher", daemon=True)
        self._started_at = time.monotonic()
        self._state = WorkerState.STARTING
        self.stats["starts"] += 1
        self._launcher.start()

    def _launch(self, proc, child_conn) -> None:  # launcher thread: touches only its arguments
        try:
            proc.start()
        except BaseException as exc:  # noqa: BLE001 - reported by _service
            self._launch_error = exc
        finally:
            child_conn.close()  # the parent keeps only its end: EOF arrives when the child dies

    def _launched(self) -> bool:
        """True once the launcher thread is done (then ``_proc`` is set or a fault raised)."""
        if self._launcher is None:
            return True
        if self._launcher.is_alive():
            return False
        self._launcher = None
        proc, self._launching = self._launching, None
        if self._launch_error is not None:
            self._fault("start_failed", f"could not start the generation child: {self._launch_error}")
            return False
        self._proc = proc
        LOG.info("generation child started (pid %d)", proc.pid)
        return True

    def _kill_child(self) -> None:
        if self._launcher is not None:  # rare: a fault/close while the launcher still runs
            self._launcher.join()
            self._launcher = None
            self._proc, self._launching = self._launching if self._launch_error is None else None, None
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            if proc.is_alive():
                proc.kill()
            proc.join(0)
            if proc.exitcode is None:
                self._zombies.append(proc)  # reaped on a later poll (never block here)

    def _fault(self, kind: str, message: str) -> None:
        seq = self._in_flight.seq if self._in_flight is not None else None
        self._in_flight = None
        self._kill_child()
        self._failures += 1
        if kind == "start_failed":
            self._start_failures += 1
        self.stats[kind] += 1
        give_up = self._start_failures >= self.config.max_start_failures
        delay = min(self.config.restart_backoff_s * 2 ** (self._failures - 1), self.config.restart_backoff_max_s)
        if give_up:
            self._state = WorkerState.FAILED
            message += f" (gave up after {self._start_failures} failed starts; call restart())"
        else:
            self._state = WorkerState.BACKOFF
            self._restart_at = time.monotonic() + delay
            message += f" (restarting in {delay:.2f} s)"
        LOG.error("generation worker %s: %s", kind, message)
        self._events.append(WorkerError(kind, message, seq=seq, restarting=not give_up))

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
        if self._state in (WorkerState.STARTING, WorkerState.READY, WorkerState.BUSY):
            proc = self._proc
            if proc is not None and not proc.is_alive():
                self._fault("crashed", f"generation child (pid {proc.pid}) exited with code {proc.exitcode}")
            elif self._state == WorkerState.STARTING and now - self._started_at > self.config.start_timeout_s:
                self._fault("hung", f"generation child not ready after {self.config.start_timeout_s:.1f} s")
            elif (self._state != WorkerState.STARTING
                  and now - self._heartbeat.value > self.config.heartbeat_timeout_s):
                self._fault("hung", f"no heartbeat from the generation child for "
                                    f"{now - self._heartbeat.value:.2f} s")
            elif self._state == WorkerState.BUSY and now - self._sent_at > self.config.request_timeout_s:
                self._fault("hung", f"request {self._in_flight.seq} unanswered after "
                                    f"{now - self._sent_at:.2f} s (request_timeout_s="
                                    f"{self.config.request_timeout_s})")
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

    def _handle(self, msg) -> None:
        kind = msg[0]
        if kind == "ready":
            self.info = msg[1]
            self.dt = self.info.get("dt")
            self._state = WorkerState.READY
            self._start_failures = 0
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
            req, self._in_flight = self._in_flight, None
            self._state = WorkerState.READY
            if req is None or req.seq != msg[1]:
                return  # a reply to a request we already gave up on
            latency = time.monotonic() - self._sent_at
            if kind == "error":
                self.stats["errors"] += 1
                self._events.append(WorkerError("generation", msg[2], seq=msg[1], traceback=msg[3]))
                return
            self._failures = 0
            self.stats["chunks"] += 1
            if self.latency_tracker is not None:
                self.latency_tracker.record(latency)
            meta = dict(msg[3], request_latency_s=latency, sampler=req.settings.sampler,
                        num_steps=req.settings.num_steps)
            now = self.clock()
            self._events.append(ActionChunk(t0=req.t0, dt=self.dt, actions=msg[2], generated_at=now,
                                            latency_s=max(0.0, now - req.t0), seq=req.seq, meta=meta))

    def _send(self, req: GenerationRequest) -> None:
        encoded = _encode_tree(req.obs, self._shm, self.config.shm_threshold_bytes)
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


# --------------------------------------------------------------------------- in-process variant
class ThreadGenerationWorker(_WorkerStatus):
    """Same interface as :class:`GenerationWorker`, generating in a thread of *this* process.

    For tests and simple scripts only: the thread holds the GIL between kernels, so a
    real-time loop in the same process misses deadlines (references.md: publisher p99
    lateness 67 ms vs 0.19 ms with the process worker). No watchdog/restart: an exception
    comes back as a ``WorkerError(kind="generation")``.
    """

    def __init__(self, config: WorkerConfig, *, latency_tracker=None,
                 clock: Callable[[], float] = time.monotonic, autostart: bool = True):
        self.config = config
        self.latency_tracker = latency_tracker
        self.clock = clock
        self._events: "collections.deque" = collections.deque()
        self._lock = threading.Lock()
        self._pending: Optional[GenerationRequest] = None
        self._busy = False
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._state = WorkerState.STOPPED
        self.info: dict = {}
        self.dt: Optional[float] = None
        self.stats = collections.Counter()
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
        try:
            engine = _Engine(self.config)
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._events.append(WorkerError("start_failed", f"{type(exc).__name__}: {exc}",
                                                traceback=traceback.format_exc()))
            self._state = WorkerState.FAILED
            self._ready.set()
            return
        self.info, self.dt = engine.info, engine.dt
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
                actions, meta = engine.generate(req, req.obs)
                latency = time.monotonic() - t
                now = self.clock()
                event = ActionChunk(t0=req.t0, dt=self.dt, actions=actions, generated_at=now,
                                    latency_s=max(0.0, now - req.t0), seq=req.seq,
                                    meta=dict(meta, request_latency_s=latency))
                if self.latency_tracker is not None:
                    self.latency_tracker.record(latency)
            except Exception as exc:  # noqa: BLE001
                event = WorkerError("generation", f"{type(exc).__name__}: {exc}", seq=req.seq,
                                    traceback=traceback.format_exc())
            with self._lock:
                self._events.append(event)
                self._busy = False
            self._state = WorkerState.READY
        engine.backend.close()
