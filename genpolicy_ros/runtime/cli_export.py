"""`genpolicy export MODEL`: build inference engines ahead of time into the engine cache.

The install step that makes the node's first configure fast: the node builds (or loads)
its engine at configure, and a first build exports the whole unrolled sampler (≈10 s for
the shipped models on 2 cores; minutes for TensorRT). Run this once on the target machine
after installing a model (and again after upgrading torch / onnxruntime / TensorRT, which
are part of the key) — it also checks that a backend builds and matches eager PyTorch.

Engines go where the node will look for them (:func:`~.backends.cache.default_cache_dir`):
``<MODEL>/engines/`` for a model in a writable working copy, the user cache
``$XDG_CACHE_HOME/genpolicy_ros/engines/<model hash>/`` for an installed (read-only)
model, or ``--cache-dir``. Entries are keyed by the weights hash, code hash, GPU, library
versions, precision, shapes and sampler settings (``runtime/backends/cache.py``); a stale
or corrupt entry is rebuilt, never unpickled. Build steps are printed as they happen.

``--backend auto`` (the default) builds *every* candidate ``auto`` would consider on the
device, times them interleaved on the model, prints the table and records the fastest in
the engine cache (``auto_backend.json``): the node's ``backend: auto`` then uses it.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .backends import backend_names

    p.add_argument("model", metavar="MODEL", help="model directory (config.json + model.safetensors)")
    p.add_argument("--backend", default="auto",
                   help=f"{' | '.join(backend_names())} (default: auto = the fastest available on --device)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="engine precision (fp16: CUDA only — tensorrt, torch_tensorrt, cuda_graph, compile, eager)")
    p.add_argument("--sampler", default=None, choices=("flow", "ddim", "ddpm"),
                   help="sampler to build for (default: the model's)")
    p.add_argument("--steps", type=int, action="append", default=None, metavar="N",
                   help="step count(s) to build for; repeatable (default: the model's)")
    p.add_argument("--no-prefix", action="store_true",
                   help="do not also build the graph with a hard RTC prefix input")
    p.add_argument("--cache-dir", default=None,
                   help="engine cache directory (default: where the node looks: MODEL/engines, or the user cache "
                        "for an installed model)")
    p.add_argument("--exporter", default="torchscript", choices=("torchscript", "dynamo"),
                   help="ONNX exporter for onnxruntime (default torchscript; see docs/internals.md)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for the warm-up check")
    p.add_argument("--json", metavar="FILE", default=None, help="write what was built as JSON")


def run(args) -> int:
    import time

    import torch

    from genpolicy_ros.core.checkpoint import ModelLoadError, load_model_dir

    from .backends import AUTO_ORDER, BACKENDS, BackendError, SamplerSettings, create_backend
    from .backends.cache import EngineCache, default_cache_dir
    from .backends.choice import measure_candidates, record_choice
    from .generation_worker import example_obs_from_config, to_policy_obs

    torch.set_num_threads(max(1, args.threads))
    try:
        policy = load_model_dir(args.model)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        print(f"genpolicy export: {exc}", file=sys.stderr)
        return 1
    policy.eval()
    cache_dir = args.cache_dir or str(default_cache_dir(args.model))
    print(f"engine cache: {cache_dir}", flush=True)
    obs = to_policy_obs(example_obs_from_config(policy.config))
    built = []
    names = [args.backend]
    if args.backend == "auto":
        family = "cuda" if args.device.startswith("cuda") else "cpu"
        names = [n for n in AUTO_ORDER[family] if BACKENDS[n].available(args.device)[0]]
    prepared = {}
    for name in names:
        options = {"exporter": args.exporter} if name == "onnxruntime" else {}
        try:
            backend = create_backend(name, policy, device=args.device, cache_dir=cache_dir,
                                     precision=args.precision, num_threads=args.threads, **options)
            backend.progress = lambda line: print(f"  {line}", flush=True)
            for steps in args.steps or [None]:
                settings = SamplerSettings(sampler=args.sampler, num_steps=steps)
                t = time.perf_counter()
                backend.prepare(settings, obs, with_prefix=not args.no_prefix)
                resolved = settings.resolved(policy)
                built.append({"backend": name, "sampler": resolved.sampler, "num_steps": resolved.num_steps,
                              "precision": args.precision, "device": args.device,
                              "prefix_graph": not args.no_prefix, "seconds": round(time.perf_counter() - t, 2)})
                print(f"built {name}: {resolved.label} ({args.precision}, {args.device}) in "
                      f"{built[-1]['seconds']:.1f} s", flush=True)
            prepared[name] = backend
        except (BackendError, ValueError) as exc:
            if args.backend != "auto":
                print(f"genpolicy export: {exc}", file=sys.stderr)
                return 1
            print(f"  {name}: not usable here ({exc})", flush=True)
    if not prepared:
        print("genpolicy export: no backend could be built", file=sys.stderr)
        return 1
    choice = None
    if args.backend == "auto":
        graphs = {n: b for n, b in prepared.items() if n != "eager"} or prepared  # eager is the last resort
        settings = SamplerSettings(sampler=args.sampler, num_steps=(args.steps or [None])[0])
        p50 = measure_candidates(graphs, obs, settings)
        choice = min(p50, key=p50.get)
        for name, ms in sorted(p50.items(), key=lambda kv: kv[1]):
            print(f"  {name:<15} {ms:8.2f} ms per chunk (p50, interleaved){'  <- auto' if name == choice else ''}")
        path = record_choice(cache_dir, args.device, args.threads, args.precision, choice, p50, "genpolicy export")
        print(f"auto will use {choice} on this machine (recorded in {path})")
    entries = EngineCache(cache_dir).entries()
    print(f"engine cache {cache_dir}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "cache_dir": cache_dir, "built": built, "auto_choice": choice,
                       "cache": entries}, f, indent=2)
    return 0
