"""Backend check (behind ``scripts/gpu_check.sh``): build every backend's engine, check parity
against eager fp32, time them interleaved, print one table (+ JSON).

    python -m genpolicy_ros.runtime.bench.backend_check --models models/reach_flow --json out.json
    python -m genpolicy_ros.runtime.bench.backend_check --dry-run          # environment + plan only
    python -m genpolicy_ros.runtime.bench.backend_check --device cpu \
        --backends eager,onnxruntime,openvino --precisions fp32,bf16 --models models/reach_ddim \
        --unet 64,128,256                                # CPU, a DP-sized 5 M-param U-Net twin

Per model (its default sampler and steps, DDIM η = 0 so graphs can capture it) and per
(backend, precision): build or load the engine (``build_s``, cache hit/miss), build the
hard-RTC-prefix graph as the node does (falling back to the plain graph, with the reason),
compare chunks with eager fp32 on the CPU over several seeds with and without a prefix
(``max_abs_err``; pass at 1e-4·scale in fp32, 1e-2·scale in fp16), then time all prepared
backends *interleaved* (p50/p99 per chunk, speed-up over eager fp32 on the same device).
A time budget stops preparing further backends (their rows say so) so that the whole check
fits one call; nothing here imports GPU libraries unless a backend is prepared.
``--unet W1,W2,W3`` times a twin of each model whose U-Net has those widths (random
weights, the model's normalisers): latency does not depend on the weights, parity is
checked all the same.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..sampler_settings import SamplerSettings

GPU_BACKENDS = ("eager", "cuda_graph", "compile", "tensorrt", "torch_tensorrt", "onnxruntime")
DEFAULT_MODELS = ("models/reach_flow", "models/reach_ddim", "models/reach_image_flow")


def environment() -> dict:
    """Versions and devices the check runs with."""
    import torch

    from ..backends.cache import library_version

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
           "libraries": {lib: library_version(lib) for lib in ("tensorrt", "torch_tensorrt", "onnx", "onnxruntime")}}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["capability"] = "sm_%d%d" % torch.cuda.get_device_capability(0)
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return env


def plan(device: str, backends, precisions) -> list[dict]:
    """``[{backend, precision, available, reason}]`` without building anything."""
    from ..backends import BACKENDS

    rows = []
    for precision in precisions:
        for name in backends:
            ok, reason = BACKENDS[name].available(device)
            if ok and precision == "fp16" and not (device.startswith("cuda") and BACKENDS[name].fp16_capable):
                ok, reason = False, f"{name} has no fp16 on {device}"
            if ok and precision == "bf16" and not BACKENDS[name].bf16_capable:
                ok, reason = False, f"{name} has no bf16"
            rows.append({"backend": name, "precision": precision, "available": ok, "reason": reason})
    return rows


def _err(got, ref) -> tuple[float, float]:
    ref = ref.float().cpu()
    return float((got.float().cpu() - ref).abs().max()), max(1.0, float(ref.abs().max()))


def unet_twin(policy, widths):
    """``policy``'s architecture with the U-Net widths replaced (random weights, same normalisers)."""
    import dataclasses

    from ...core.config import NetworkConfig
    from ...core.policy import GenerativePolicy

    params = dict(policy.config.network.params, down_dims=[int(w) for w in widths])
    cfg = dataclasses.replace(policy.config, network=NetworkConfig(name=policy.config.network.name, params=params))
    twin = GenerativePolicy.from_config(cfg)
    twin.load_state_dict({k: v for k, v in policy.state_dict().items() if "normalizer" in k}, strict=False)
    return twin.eval()


def check_model(model_dir: str, device: str, backends, precisions, *, repeats: int, warmup: int, seeds: int,
                cache_dir: Optional[str], deadline: float, log=print, unet=None) -> list[dict]:
    """Rows for one model (see module docstring)."""
    import torch

    from ...core.checkpoint import load_model_dir
    from ..backends import BackendError, create_backend, make_noise
    from ..backends.base import chunk_shape
    from .latency import example_observation

    policy = load_model_dir(model_dir).eval()
    if unet:
        policy = unet_twin(policy, unet)
    settings = SamplerSettings().resolved(policy)
    if settings.sampler == "ddim" and settings.eta:
        settings = SamplerSettings(sampler="ddim", num_steps=settings.num_steps, eta=0.0)  # capturable
    obs = example_observation(policy.config, seed=0)  # batched CPU tensors
    shape = chunk_shape(policy)  # (1, T_p, D_a)
    T_p = shape[1]
    prefix = make_noise(shape, 99) * 0.5  # [1, T_p, D_a] robot units, any non-trivial values
    weights = torch.zeros(T_p)  # [T_p]
    weights[: max(1, T_p // 4)] = 1.0
    weights[max(1, T_p // 4)] = 0.5
    reference = copy.deepcopy(policy)  # eager fp32 on the CPU

    def ref_chunk(seed, with_prefix):
        kw = {"prefix_actions": prefix, "prefix_weights": weights, "prefix_mode": "hard"} if with_prefix else {}
        with torch.no_grad():
            return reference.sample(obs, noise=make_noise(shape, seed), **settings.policy_kwargs(), **kw)

    base = {"model": model_dir + (f" unet{'/'.join(map(str, unet))}" if unet else ""), "device": device,
            "settings": settings.label, "params_M": round(sum(x.numel() for x in policy.parameters()) / 1e6, 2)}
    rows, ready = [], {}
    for p in plan(device, backends, precisions):
        row = dict(base, backend=p["backend"], precision=p["precision"])
        label = p["backend"] if p["precision"] == "fp32" else f"{p['backend']}:{p['precision']}"
        if not p["available"]:
            rows.append(dict(row, status="skipped", reason=p["reason"]))
            continue
        if time.monotonic() > deadline:
            rows.append(dict(row, status="skipped", reason="time budget spent (raise --budget-s)"))
            continue
        log(f"[{Path(model_dir).name}] {label}: building ...")
        t = time.perf_counter()
        try:
            backend = create_backend(p["backend"], copy.deepcopy(policy), device, cache_dir, precision=p["precision"])
            try:
                backend.prepare(settings, obs, with_prefix=True)
                row["prefix_graph"] = "built"
            except Exception as exc:  # noqa: BLE001 - reported; the plain graph may still build
                row["prefix_graph"] = f"failed: {str(exc)[:300]}"
                backend.prepare(settings, obs)
        except Exception as exc:  # noqa: BLE001 - one failing backend must not stop the check
            reason = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
            rows.append(dict(row, status="failed", reason=reason[:500], build_s=time.perf_counter() - t))
            log(f"[{Path(model_dir).name}] {label}: FAILED {reason[:200]}")
            continue
        row["build_s"] = time.perf_counter() - t
        info = getattr(backend, "build_info", {})
        row["cache"] = sorted({i.get("cache", "?") for i in info.values()}) if info else "n/a"
        tol = {"fp16": 1e-2, "bf16": 5e-2}.get(p["precision"], 1e-4)
        worst = 0.0
        passed = True
        for seed in range(seeds):
            for with_prefix in (False, True):
                kw = {"prefix_actions": prefix, "prefix_weights": weights, "prefix_mode": "hard"} if with_prefix else {}
                got = backend.sample(obs, make_noise(shape, seed), settings, **kw)
                err, scale = _err(got, ref_chunk(seed, with_prefix))
                worst = max(worst, err)
                passed &= err <= tol * scale
                row.setdefault("paths", set()).add(backend.last_path.split(":")[0])
        row.update(max_abs_err=worst, parity_ok=bool(passed), tolerance=tol, paths=sorted(row["paths"]))
        log(f"[{Path(model_dir).name}] {label}: built in {row['build_s']:.1f} s, max abs err {worst:.2e}")
        ready[label] = (backend, row)
    times = {label: [] for label in ready}
    for i in range(warmup + repeats):  # interleaved: A, B, C, A, B, C, ...
        noise = make_noise(shape, 1000 + i)
        for label, (backend, _) in ready.items():
            t = time.perf_counter()
            backend.sample(obs, noise, settings)  # returns a CPU tensor: synchronised
            if i >= warmup:
                times[label].append(time.perf_counter() - t)
    eager = np.median(times["eager"]) if times.get("eager") else None
    for label, (backend, row) in ready.items():
        ms = np.asarray(times[label]) * 1e3  # [repeats]
        row.update(status="ok", p50_ms=float(np.median(ms)), p99_ms=float(np.percentile(ms, 99)),
                   speedup_vs_eager=float(eager * 1e3 / np.median(ms)) if eager else None)
        rows.append(row)
        backend.close()
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<22} {'backend':<15} {'prec':<5} {'status':<8} {'build s':>8} {'max err':>9} " \
           f"{'parity':>6} {'p50 ms':>8} {'p99 ms':>8} {'× eager':>8}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        r = dict(r, model=r["model"].replace("models/", ""))
        def num(key, fmt):
            width = int(fmt.split(".")[0])
            return format(r[key], fmt) if r.get(key) is not None else "-".rjust(width)
        note = r.get("reason", "") or (f"prefix graph {r['prefix_graph']}" if r.get("prefix_graph", "built") != "built"
                                       else f"cache {r.get('cache')}")
        lines.append(f"{r['model'][-22:]:<22} {r['backend']:<15} {r['precision']:<5} {r['status']:<8} "
                     f"{num('build_s', '8.1f')} {num('max_abs_err', '9.1e')} "
                     f"{('ok' if r.get('parity_ok') else 'FAIL') if 'parity_ok' in r else '-':>6} "
                     f"{num('p50_ms', '8.2f')} {num('p99_ms', '8.2f')} {num('speedup_vs_eager', '8.1f')}  {note[:90]}")
    return "\n".join(lines)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.runtime.bench.backend_check",
                                description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model directories")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--backends", default=",".join(GPU_BACKENDS))
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seeds", type=int, default=3, help="parity seeds per backend (each with and without prefix)")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop preparing backends after this many seconds")
    p.add_argument("--cache-dir", default=None, help="engine cache (default: a temporary directory)")
    p.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime CPU threads (default 1)")
    p.add_argument("--unet", default=None, metavar="W1,W2,W3", help="time a twin with these U-Net widths")
    p.add_argument("--json", default=None, metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="print the environment and the plan; build nothing")
    args = p.parse_args(argv)
    import torch

    from ..backends import BACKENDS

    torch.set_num_threads(max(1, args.threads))
    backends, precisions = _csv(args.backends), _csv(args.precisions)
    unknown = [b for b in backends if b not in BACKENDS] + [x for x in precisions if x not in ("fp32", "fp16", "bf16")]
    if unknown or args.repeats < 1 or args.seeds < 1:
        p.error(f"unknown backends/precisions {unknown} or --repeats/--seeds < 1")
    if "eager" not in backends:
        backends.insert(0, "eager")  # the on-device reference for the speed-ups
    report = {"environment": environment(), "device": args.device, "backends": backends, "precisions": precisions,
              "plan": plan(args.device, backends, precisions)}
    print(json.dumps(report["environment"], indent=1))
    if args.dry_run:
        for r in report["plan"]:
            what = "will run" if r["available"] else "skipped: " + r["reason"]
            print(f"{r['backend']:<15} {r['precision']:<5} {what}")
        report["rows"] = []
    else:
        import tempfile

        deadline = time.monotonic() + args.budget_s
        with tempfile.TemporaryDirectory(prefix="gpu_check_engines_") as tmp:
            rows = []
            for model in _csv(args.models):
                rows += check_model(model, args.device, backends, precisions, repeats=args.repeats,
                                    warmup=args.warmup, seeds=args.seeds, cache_dir=args.cache_dir or tmp,
                                    deadline=deadline, log=lambda line: print(line, file=sys.stderr, flush=True),
                                    unet=[int(w) for w in _csv(args.unet)] if args.unet else None)
        report["rows"] = rows
        print(format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"report written to {args.json}")
    failed = [r for r in report["rows"] if r.get("status") == "failed" or r.get("parity_ok") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
