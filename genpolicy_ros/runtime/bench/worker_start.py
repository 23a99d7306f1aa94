"""How long the generation worker takes to start and to stop (the node's configure and exit).

    python -m genpolicy_ros.runtime.bench.worker_start MODEL [--backend auto] [--runs 3] [--cold]

Each run is a fresh :class:`~genpolicy_ros.runtime.generation_worker.GenerationWorker`
(constructor → ``wait_ready``), as at configure, against the model's engine cache
(``--cold``: a new empty cache first, so the first start exports). ``close()`` is timed
with the child idle (READY), generating (BUSY) and still loading (STARTING). The child's
own breakdown (imports / model load / backend prepare) comes from ``info``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time


def one_start(model: str, backend: str, cache_dir, threads: int) -> dict:
    from ..generation_worker import GenerationWorker, WorkerConfig

    t = time.perf_counter()
    worker = GenerationWorker(WorkerConfig(model_dir=model, backend=backend, cache_dir=cache_dir, num_threads=threads))
    ok = worker.wait_ready(600)
    ready_s = time.perf_counter() - t
    info = dict(worker.info)
    t = time.perf_counter()
    worker.close()
    return {"ready": ok, "ready_s": ready_s, "close_ready_s": time.perf_counter() - t,
            "backend": info.get("backend"), "child_s": info.get("start_breakdown_s")}


def close_times(model: str, backend: str, cache_dir, threads: int) -> dict:
    from ..generation_worker import GenerationRequest, GenerationWorker, WorkerConfig
    from ..sampler_settings import SamplerSettings

    cfg = WorkerConfig(model_dir=model, backend=backend, cache_dir=cache_dir, num_threads=threads,
                       request_timeout_s=300.0, heartbeat_timeout_s=300.0)
    busy = GenerationWorker(cfg)
    busy.wait_ready(600)
    busy.submit(GenerationRequest(seq=1, obs={}, t0=0.0, settings=SamplerSettings(debug_sleep_s=60.0)))
    time.sleep(0.2)
    t = time.perf_counter()
    busy.close()
    out = {"close_busy_s": time.perf_counter() - t}
    starting = GenerationWorker(cfg)
    time.sleep(0.5)
    t = time.perf_counter()
    starting.close()
    out["close_starting_s"] = time.perf_counter() - t
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.runtime.bench.worker_start", description=__doc__)
    p.add_argument("model")
    p.add_argument("--backend", default="auto")
    p.add_argument("--runs", type=int, default=3, help="warm starts (default 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default=None, help="engine cache (default: where the node looks)")
    p.add_argument("--cold", action="store_true", help="start from an empty engine cache")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="worker_start_") as tmp:
        cache = tmp if args.cold else args.cache_dir
        report = {"first": one_start(args.model, args.backend, cache, args.threads)}
        report["warm"] = [one_start(args.model, args.backend, cache, args.threads) for _ in range(args.runs)]
        report.update(close_times(args.model, args.backend, cache, args.threads))
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
