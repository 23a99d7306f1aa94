"""The benchmark report: one JSON document and a plain-text table.

Top-level keys of the JSON (``format: genpolicy-bench/1``)::

    timestamp, machine, model, settings
    chunk_latency_ms   [row]: device, backend, sampler, steps, spec, twin, status
                       (ok | skipped | failed), reason; for ok rows p50_ms, p99_ms,
                       mean_ms, min_ms, max_ms, runs, prepare_s, path,
                       max_abs_diff_vs_eager, speedup_vs_eager
    speedup_vs_eager   {device: {spec: {best_backend, speedup, eager_p50_ms,
                       best_p50_ms, max_abs_diff_vs_eager, twin}}}
    executor           rate_hz, duration_s, lateness_p50/p99/max_ms, missed_ticks
                       (while generating back-to-back), generating {...}, idle {...},
                       ratio_generating_vs_idle {...}  — or {skipped: true, reason}
    seams              {mode: {ratio, max_seam_accel, in_chunk_p99_accel, n_seams, ...}}
                       — or {skipped: true, reason}
    ros_command_stream the node in its own process over DDS (genpolicy_ros.ros.command_stream):
                       rate_hz_measured, commands, nonfinite_commands, node_cpu_percent,
                       middleware / source / probe_callback {interarrival_*, jitter_* ms},
                       node_diagnostics — or {skipped: true, reason}
    soak               genpolicy bench --soak-seconds N (runs alone; runtime/bench/soak.py):
                       settings, windows [per-window timing, resources per process role],
                       summary, node_diagnostics_last — or {skipped: true, reason}

Raw samples (latency per run, lateness per tick, traces) stay out of the JSON; the
plots use them.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

FORMAT = "genpolicy-bench/1"


def machine_info() -> dict:
    """CPU / library versions / accelerator (imports GPU libraries only through torch)."""
    import numpy
    import torch

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = os.cpu_count()
    cuda = torch.cuda.is_available()
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "cpu_affinity": affinity,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__, "onnxruntime": ort, "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    }


def model_info(model_dir, policy) -> dict:
    """Identity and size of the benchmarked model."""
    cfg = policy.config
    doc_path = Path(model_dir) / "config.json"
    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {}
    return {
        "path": str(model_dir),
        "weights_sha256": (doc.get("weights") or {}).get("sha256"),
        "config_sha256": hashlib.sha256(doc_path.read_bytes()).hexdigest() if doc_path.is_file() else None,
        "kind": cfg.kind, "network": cfg.network.name,
        "params": int(sum(p.numel() for p in policy.parameters())),
        "T_o": cfg.horizon.T_o, "T_p": cfg.horizon.T_p, "T_a": cfg.horizon.T_a, "dt": cfg.horizon.dt,
        "action_dim": cfg.action.dim, "state_dim": cfg.observation.state_dim,
        "cameras": list(cfg.observation.camera_names),
        "default_sampler": cfg.default_sampler,
    }


def _clean(value):
    """JSON-safe copy: NaN/inf -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _strip(d: dict, keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def build_report(*, machine: dict, model: dict, settings: dict, latency_rows: Optional[List[dict]],
                 speedup: Optional[dict], executor: Optional[dict], seams: Optional[dict],
                 skipped: Dict[str, str], ros_stream: Optional[dict] = None) -> dict:
    """Assemble the JSON document (see module docstring)."""
    doc: Dict[str, Any] = {
        "format": FORMAT,
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "model": model, "settings": settings,
    }
    doc["chunk_latency_ms"] = [_strip(r, ("samples_ms",)) for r in (latency_rows or [])]
    doc["speedup_vs_eager"] = speedup or {}
    if executor is None:
        doc["executor"] = {"skipped": True, "reason": skipped.get("executor", "not run")}
    else:
        doc["executor"] = dict(_strip(executor, ("generating", "idle")),
                               generating=_strip(executor["generating"], ("lateness_samples_ms",)),
                               idle=_strip(executor["idle"], ("lateness_samples_ms",)))
    if seams is None:
        doc["seams"] = {"skipped": True, "reason": skipped.get("seams", "not run")}
    else:
        doc["seams"] = {mode: dict(m["metric"], seam_ticks_episode0=m["episodes"][0]["seams"])
                        for mode, m in seams["modes"].items()}
    if ros_stream is None:
        doc["ros_command_stream"] = {"skipped": True, "reason": skipped.get("ros_command_stream", "not run")}
    else:
        doc["ros_command_stream"] = ros_stream
    return _clean(doc)


def write_json(report: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def format_table(report: dict) -> str:
    """A readable plain-text summary of the report."""
    lines: List[str] = []
    m = report["model"]
    lines.append(f"model {m['path']}  ({m['kind']}, {m['network']}, {m['params']:,} params, "
                 f"T_p={m['T_p']}, dt={m['dt']})  on {report['machine']['device']}, "
                 f"{report['machine']['cpu_affinity']} CPUs, torch {report['machine']['torch']}")
    lines.append("")
    lines.append("chunk latency (ms), interleaved runs; speed-up = eager p50 / p50")
    head = f"{'device':6} {'spec':9} {'backend':12} {'p50':>9} {'p99':>9} {'speedup':>8} {'max|Δ|':>9}  note"
    lines += [head, "-" * len(head)]
    rows = report["chunk_latency_ms"]
    # Rows not run for the same reason in every spec of a device/backend print once.
    groups: Dict[tuple, List[dict]] = {}
    for r in rows:
        if r["status"] != "ok":
            groups.setdefault((r["device"], r["backend"], r["status"], str(r.get("reason"))), []).append(r)
    n_specs = {d: len({r["spec"] for r in rows if r["device"] == d}) for d in {r["device"] for r in rows}}
    folded = {k for k, g in groups.items() if len(g) == n_specs[k[0]] > 1}
    for r in rows:
        spec = r["spec"] + ("*" if r.get("twin") else "")
        if r["status"] == "ok":
            note = "" if r.get("path") in ("graph", "eager") else str(r.get("path"))
            lines.append(f"{r['device']:6} {spec:9} {r['backend']:12} {_f(r['p50_ms']):>9} {_f(r['p99_ms']):>9} "
                         f"{_f(r['speedup_vs_eager'], '{:.2f}x'):>8} {_f(r['max_abs_diff_vs_eager'], '{:.1e}'):>9}  "
                         f"{note[:60]}")
        elif (r["device"], r["backend"], r["status"], str(r.get("reason"))) not in folded:
            lines.append(f"{r['device']:6} {spec:9} {r['backend']:12} {r['status']:>9}  {str(r.get('reason'))[:80]}")
    for device, backend, status, reason in sorted(folded):
        lines.append(f"{device:6} {'(all)':9} {backend:12} {status:>9}  {reason[:80]}")
    lines.append("(* = same-architecture twin with this model's weights)")
    for device, specs in report["speedup_vs_eager"].items():
        for spec, s in specs.items():
            lines.append(f"best {device} {spec}: {s['best_backend']} {s['speedup']:.2f}x eager "
                         f"(max|Δ| {s['max_abs_diff_vs_eager']:.1e})")
    lines.append("")
    ex = report["executor"]
    if ex.get("skipped"):
        lines.append(f"executor: skipped ({ex['reason']})")
    else:
        g, i = ex["generating"], ex["idle"]
        lines.append(f"executor @ {ex['rate_hz']:.0f} Hz, lateness ms (p50 / p99 / max), missed ticks")
        lines.append(f"  idle        {_f(i['lateness_p50_ms'], '{:.3f}')} / {_f(i['lateness_p99_ms'], '{:.3f}')} / "
                     f"{_f(i['lateness_max_ms'], '{:.3f}')}   missed {i['missed_ticks']}  ({i['duration_s']:.1f} s)")
        lines.append(f"  generating  {_f(g['lateness_p50_ms'], '{:.3f}')} / {_f(g['lateness_p99_ms'], '{:.3f}')} / "
                     f"{_f(g['lateness_max_ms'], '{:.3f}')}   missed {g['missed_ticks']}  ({g['duration_s']:.1f} s, "
                     f"{g['chunks_per_s']:.1f} chunks/s, duty {g['generation_duty']:.2f}, {g['worker_backend']})")
    lines.append("")
    seams = report["seams"]
    if seams.get("skipped"):
        lines.append(f"seams: skipped ({seams['reason']})")
    else:
        s = report["settings"].get("seams", {})
        lines.append(f"seams ({s.get('plant')}, emulated latency {s.get('delay_rows')} rows): "
                     "max seam accel / in-chunk p99 accel")
        for mode, r in seams.items():
            lines.append(f"  {mode:9} ratio {_f(r['ratio']):>7}   seam max {_f(r['max_seam_accel'], '{:.3g}')}  "
                         f"in-chunk p99 {_f(r['in_chunk_p99_accel'], '{:.3g}')}  ({r['n_seams']} seams)")
    lines.append("")
    ros = report.get("ros_command_stream", {"skipped": True, "reason": "not run"})
    if ros.get("skipped"):
        lines.append(f"ROS command stream: skipped ({ros['reason']})")
    else:
        lines.append(f"ROS command stream @ {ros['settings']['rate_hz']:g} Hz, node in its own process: "
                     f"{ros['rate_hz_measured']:.2f} Hz, {ros['nonfinite_commands']} non-finite, "
                     f"node CPU {ros['node_cpu_percent']:.0f} %; |gap - period| ms (p50 / p99 / max)")
        for name, key in (("middleware rx", "middleware"), ("publisher", "source"),
                          ("probe callback", "probe_callback")):
            g = ros.get(key) or {}
            lines.append(f"  {name:15} {_f(g.get('jitter_p50_ms'), '{:.3f}')} / "
                         f"{_f(g.get('jitter_p99_ms'), '{:.3f}')} / {_f(g.get('jitter_max_ms'), '{:.3f}')}")
    return "\n".join(lines)
