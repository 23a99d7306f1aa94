"""Generation worker: action chunks are sampled in a separate *process*.

Why a process (references.md, "Real-time behaviour of Python on a 2-core machine"): a
generation thread in the publishing process holds the GIL between kernels and pushes the
100 Hz executor's p99 lateness from 0.12 ms to 67 ms; a separate process leaves it at
0.19 ms. :class:`ThreadGenerationWorker` has the same interface for tests and simple
scripts — do not use it next to a real-time loop.

::

    parent (executor process, no torch)               child (spawned, owns torch)
    ───────────────────────────────────               ───────────────────────────
    submit(req) ─ newest request wins ─► pending      die_with_parent (PDEATHSIG + ppid watch)
    poll()  ── all O(1), never blocks ──┐             GenerationSession: load_model_dir,
      send when child idle: small msg ──┼── Pipe ───►   create_backend(...).prepare(...)
      recv reply / progress lines     ◄─┼── Pipe ────  recv → decode obs (shared memory)
      watchdog: exit code, heartbeat  ◄─┴── shared double ◄── heartbeat thread (monotonic)
      → ActionChunk | WorkerError | None              background graph builds (run-time changes)

Modules, one purpose each:

| module | what |
|---|---|
| :mod:`.messages` | ``GenerationRequest``, ``WorkerError``, ``WorkerState``, ``obs_from_snapshot`` (torch-free) |
| :mod:`.config` | ``WorkerConfig`` (validated): backend, precision, latency emulation, timeouts |
| :mod:`.observations` | observations in the policy's tensor layout; a neutral warm-up example |
| :mod:`.transport` | large arrays through parent-owned shared memory, the rest inline |
| :mod:`.session` | the generating side: load, prepare, serve, switch graphs, emulate latency |
| :mod:`.lifeline` | the child dies with its parent, even on SIGKILL |
| :mod:`.child` | the child's entry point and serving loop |
| :mod:`.watchdog` | parent-side fault detection and restart policy |
| :mod:`.process` | ``GenerationWorker``: the parent-side handle |
| :mod:`.thread` | ``ThreadGenerationWorker``: same interface, in-process |

* **Hand-over.** Requests and replies travel as pickles over a ``multiprocessing`` Pipe.
  Both ends are this package in the same program (parent and its own spawned child), so
  the pickles are trusted; no model object is ever pickled — the child loads the weights
  itself from the model directory (safetensors). Large arrays go through shared memory
  (:mod:`.transport`); send images as uint8 HWC (4× fewer bytes; the child converts them).
* **Spawn.** Children are started with the ``spawn`` method (no inherited torch/ROS
  state) from one long-lived launcher thread, so a restart never stalls ``poll()``. As
  with any ``spawn`` program, the entry script must guard its top level with
  ``if __name__ == "__main__":`` (console scripts do).
* **One request in flight.** A new ``submit`` while the child is busy replaces the pending
  (not yet sent) request: the freshest observation wins, nothing queues up.
* **Watchdog** (:mod:`.watchdog`): crash, hang or frozen child → killed, reported as a
  :class:`WorkerError`, restarted after a backoff.
* **Never an orphan** (:mod:`.lifeline`): the child exits when its parent dies, SIGKILL
  included; ``close()`` takes at most about half a second (stop → SIGTERM → SIGKILL).
* **Errors.** An exception while generating comes back as a :class:`WorkerError` with
  the message and traceback text; the child keeps serving.
* **Latency.** ``request_latency_s`` (submit → reply, steady clock) is recorded per chunk
  into an optional :class:`~genpolicy_ros.runtime.latency.LatencyTracker` and the chunk's
  ``meta``; ``ActionChunk.latency_s`` is observation stamp ``t0`` → chunk available on the
  caller's ``clock``. ``meta`` also names the path that produced the chunk (see
  :mod:`.session`); ``emulate_latency_ms`` slows chunks down on purpose (off by default).
"""
from .config import DEFAULT_LOADER, SETTINGS_SWITCHES, WorkerConfig
from .messages import GenerationRequest, WorkerError, WorkerState, obs_from_snapshot
from .observations import example_obs_from_config, to_policy_obs
from .process import GenerationWorker, path_summary
from .thread import ThreadGenerationWorker

__all__ = ["DEFAULT_LOADER", "SETTINGS_SWITCHES", "GenerationRequest", "GenerationWorker", "ThreadGenerationWorker",
           "WorkerConfig", "WorkerError", "WorkerState", "example_obs_from_config", "obs_from_snapshot",
           "path_summary", "to_policy_obs"]
