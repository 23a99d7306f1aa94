"""`genpolicy export MODEL`: build inference engines ahead of time into the engine cache.

The node builds (or loads) its engine at configure; exporting beforehand makes the first
configure fast and lets you check on the target machine that a backend builds and
matches eager PyTorch. Engines are stored in ``<MODEL>/engines/`` (or ``--cache-dir``),
keyed by model weights hash, GPU, library versions, precision, shapes and sampler
settings (``runtime/backends/cache.py``); a stale or corrupt entry is rebuilt, never
unpickled.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="model directory (config.json + model.safetensors)")
    p.add_argument("--backend", default="auto",
                   help="onnxruntime | tensorrt | cuda_graph | compile | eager | auto (default: auto = "
                        "the fastest available on --device)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"),
                   help="engine precision (fp16: TensorRT only)")
    p.add_argument("--sampler", default=None, choices=("flow", "ddim", "ddpm"),
                   help="sampler to build for (default: the model's)")
    p.add_argument("--steps", type=int, action="append", default=None, metavar="N",
                   help="step count(s) to build for; repeatable (default: the model's)")
    p.add_argument("--no-prefix", action="store_true",
                   help="do not also build the graph with a hard RTC prefix input")
    p.add_argument("--cache-dir", default=None, help="engine cache directory (default: MODEL/engines)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for the warm-up check")
    p.add_argument("--json", metavar="FILE", default=None, help="write what was built as JSON")


def run(args) -> int:
    import torch

    from genpolicy_ros.core.checkpoint import ModelLoadError, load_model_dir

    from .backends import BackendError, SamplerSettings, create_backend
    from .backends.cache import EngineCache, default_cache_dir
    from .generation_worker import example_obs_from_config, to_policy_obs

    torch.set_num_threads(max(1, args.threads))
    try:
        policy = load_model_dir(args.model)
    except (ModelLoadError, FileNotFoundError, ValueError) as exc:
        print(f"genpolicy export: {exc}", file=sys.stderr)
        return 1
    policy.eval()
    cache_dir = args.cache_dir or str(default_cache_dir(args.model))
    obs = to_policy_obs(example_obs_from_config(policy.config))
    built = []
    try:
        backend = create_backend(args.backend, policy, device=args.device, cache_dir=cache_dir,
                                 precision=args.precision, num_threads=args.threads)
        for steps in args.steps or [None]:
            settings = SamplerSettings(sampler=args.sampler, num_steps=steps)
            backend.prepare(settings, obs, with_prefix=not args.no_prefix)
            resolved = settings.resolved(policy)
            name = backend.chosen_name if hasattr(backend, "chosen_name") else backend.name
            built.append({"backend": name, "sampler": resolved.sampler,
                          "num_steps": resolved.num_steps, "precision": args.precision,
                          "device": args.device, "prefix_graph": not args.no_prefix})
            print(f"built {built[-1]['backend']}: {resolved.sampler}-{resolved.num_steps} "
                  f"({args.precision}, {args.device})")
    except (BackendError, ValueError) as exc:
        print(f"genpolicy export: {exc}", file=sys.stderr)
        return 1
    entries = EngineCache(cache_dir).entries()
    print(f"engine cache {cache_dir}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "cache_dir": cache_dir, "built": built, "cache": entries}, f, indent=2)
    return 0
