"""PNG plots of a benchmark run (matplotlib, Agg backend; no display needed).

* ``latency_<device>.png``: per sampler-steps cell, a histogram of chunk latency per backend;
* ``seams_<mode>.png``: executed actions of one episode with the chunk switches marked
  (dashed lines), and the acceleration below with seam ticks highlighted;
* ``executor_lateness.png``: tick lateness histograms, idle vs generating.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_histograms(rows: Sequence[dict], out_dir) -> List[Path]:
    """One PNG per device with timed rows."""
    plt = _plt()
    out: List[Path] = []
    for device in sorted({r["device"] for r in rows if r["status"] == "ok"}):
        ok = [r for r in rows if r["device"] == device and r["status"] == "ok" and r.get("samples_ms")]
        specs = list(dict.fromkeys(r["spec"] for r in ok))
        fig, axes = plt.subplots(len(specs), 1, figsize=(8, 2.6 * len(specs)), squeeze=False)
        for ax, spec in zip(axes[:, 0], specs):
            cell = [r for r in ok if r["spec"] == spec]
            hi = max(max(r["samples_ms"]) for r in cell)
            lo = min(min(r["samples_ms"]) for r in cell)
            bins = np.geomspace(max(lo * 0.9, 1e-3), hi * 1.1, 40) if hi > lo else 20
            for r in cell:
                ax.hist(r["samples_ms"], bins=bins, alpha=0.55,
                        label=f"{r['backend']} p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} ms")
            if hi > lo:
                ax.set_xscale("log")
            ax.set_title(f"{device} {spec}{' (twin)' if cell[0].get('twin') else ''}")
            ax.set_xlabel("chunk latency (ms)")
            ax.set_ylabel("runs")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / f"latency_{device}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append(path)
    return out


def seam_traces(seams: dict, out_dir, joint_names: Optional[Sequence[str]] = None) -> List[Path]:
    """One PNG per blending mode: episode 0's executed trace with its seams marked."""
    plt = _plt()
    from .seams import accelerations, seam_mask

    out: List[Path] = []
    period = 1.0 / seams["rate_hz"]
    for mode, m in seams["modes"].items():
        ep = m["episodes"][0]
        trace, times, ticks = ep["trace"], ep["times"], ep["seams"]
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
        for j in range(trace.shape[1]):
            name = joint_names[j] if joint_names is not None and j < len(joint_names) else f"joint {j}"
            ax.plot(times, trace[:, j], lw=1.2, label=name)
        for s in ticks:
            ax.axvline(times[s], color="k", ls="--", lw=0.7, alpha=0.6)
            ax2.axvline(times[s], color="k", ls="--", lw=0.7, alpha=0.6)
        ax.set_ylabel("executed action")
        ratio = m["metric"]["ratio"]
        ax.set_title(f"blending = {mode}: {len(ticks)} seams (dashed); "
                     f"seam/in-chunk accel ratio {ratio:.2f}" if ratio is not None else f"blending = {mode}")
        ax.legend(fontsize=8, loc="best")
        acc = accelerations(trace, period)  # [N]
        mask = seam_mask(acc.shape[0], ticks)
        ax2.plot(times, acc, lw=0.8, color="0.4", label="|accel|")
        ax2.plot(times[mask], acc[mask], "r.", ms=4, label="seam ticks")
        ax2.set_ylabel("|accel| (units/s²)")
        ax2.set_xlabel("simulated time (s)")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / f"seams_{mode}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append(path)
    return out


def executor_lateness(executor: dict, out_dir) -> List[Path]:
    """Histogram of tick lateness, idle vs generating."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    runs = {key: np.asarray(executor[key].get("lateness_samples_ms") or [0.0]) for key in ("idle", "generating")}
    lo = min(0.0, min(float(d.min()) for d in runs.values()))
    hi = max(1e-3, max(float(d.max()) for d in runs.values()))
    bins = np.linspace(lo, hi, 60)  # shared, so the two runs compare bin by bin
    for key, data in runs.items():
        ax.hist(data, bins=bins, alpha=0.55,
                label=f"{key}: p99 {executor[key]['lateness_p99_ms']:.3f} ms, max "
                      f"{executor[key]['lateness_max_ms']:.3f} ms, missed {executor[key]['missed_ticks']}")
    ax.set_yscale("log")
    ax.set_xlabel("tick lateness (ms)")
    ax.set_ylabel("ticks")
    ax.set_title(f"executor @ {executor['rate_hz']:.0f} Hz")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "executor_lateness.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
