"""The demo/eval report: a success/latency table and pictures of the outcomes.

Everything takes eval documents (:meth:`~genpolicy_ros.sim.evaluation.EvalResult.to_dict`,
i.e. the ``genpolicy eval --json`` schema) so it also works on saved JSON files.

The table's outcome columns follow the task: a task whose episodes report stages (ALOHA:
grasped / lifted / transferred, and the benchmark's own score) shows the fraction of
episodes that reached each stage; otherwise the fraction that ended in each of the task's
outcome labels (reach: elbow up / elbow down / between). Runs of different shapes get a
table each.

:func:`plot_trajectories` (the reach tasks) has one panel per run (e.g. flow vs MSE side by
side): every episode's fingertip path in the workspace, coloured by the mode the episode
ended in (elbow up / elbow down / between), its target marked with a cross; failed
episodes are dashed. The grey circle is the arm's reach (L1 + L2) around the base. Runs of
the obstacle variant (``settings.obstacle``) also show each episode's post (brown) and a
red ring where a fingertip path touched it. :func:`plot_stages` (tasks with stages) draws
each run's stage rates as bars.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import numpy as np

from .reach_env import FINGERTIP_RADIUS, LINK_LENGTHS, MODES, obstacle_position, obstacle_task

MODE_COLOURS = {"elbow_up": "tab:blue", "elbow_down": "tab:orange", "between": "tab:red"}


def _num(v, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def run_label(doc: Mapping) -> str:
    """``flow-10``, ``ddim-10``, ``regression`` ... for one eval document."""
    name = Path(str(doc.get("model", "?"))).name
    sampler = doc.get("sampler", "?")
    steps = doc.get("num_steps")
    return f"{name} ({sampler}{'' if steps is None else f'-{steps}'})"


def outcome_columns(doc: Mapping) -> tuple:
    """``(headers, fractions)`` of one run's outcome columns: its stages and the benchmark's
    score when the task reports stages, else its outcome labels (the task's modes)."""
    n = max(int(doc["episodes"]), 1)
    stages = doc.get("stage_rates") or {}
    if stages:
        headers = list(stages)
        values = [float(v) for v in stages.values()]
        if doc.get("benchmark_success_rate") is not None:
            headers.append("benchmark")
            values.append(float(doc["benchmark_success_rate"]))
        return headers, values
    modes = list((doc.get("settings") or {}).get("modes") or doc["mode_histogram"])
    hist = doc["mode_histogram"]
    return [m.replace("_", " ") for m in modes], [hist.get(m, 0) / n for m in modes]


def _table(docs: Sequence[Mapping]) -> str:
    headers = ["run", "episodes", "success", *outcome_columns(docs[0])[0], "latency p50", "latency p95", "jitter p99"]
    rows = [headers]
    for d in docs:
        rows.append([
            run_label(d), str(d["episodes"]), f"{100 * d['success_rate']:.1f} %",
            *(f"{100 * v:.0f} %" for v in outcome_columns(d)[1]),
            _num(d["latency_ms"].get("p50")) + " ms", _num(d["latency_ms"].get("p95")) + " ms",
            _num(d["command_jitter_ms"].get("p99")) + " ms",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(r))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(docs: Sequence[Mapping]) -> str:
    """Fixed-width text tables, one row per run (latency and jitter in ms); runs whose
    outcome columns differ (e.g. reach and ALOHA) get a table each, in order of appearance."""
    groups: dict = {}
    for d in docs:
        groups.setdefault(tuple(outcome_columns(d)[0]), []).append(d)
    return "\n\n".join(_table(group) for group in groups.values())


def plot_stages(docs: Sequence[Mapping], path, titles: Optional[List[str]] = None) -> Path:
    """Write a bar chart (PNG) of each run's stage rates, success and benchmark score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    width = 0.8 / max(len(docs), 1)
    labels: List[str] = []
    for k, doc in enumerate(docs):
        headers, values = outcome_columns(doc)
        headers, values = headers + ["success"], values + [float(doc["success_rate"])]
        labels = labels or headers
        xs = np.arange(len(headers)) + (k - (len(docs) - 1) / 2) * width
        title = titles[k] if titles else run_label(doc)
        bars = ax.bar(xs, [100 * v for v in values], width, label=f"{title} ({doc['episodes']} episodes)")
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylabel("% of episodes")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, axis="y", lw=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_trajectories(docs: Sequence[Mapping], path, titles: Optional[List[str]] = None) -> Path:
    """Write the fingertip-path picture (PNG) of one or more eval documents to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # headless; no display needed
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    reach = sum(LINK_LENGTHS)
    fig, axes = plt.subplots(1, len(docs), figsize=(max(5.4 * len(docs), 7.0), 5.6), squeeze=False)
    for k, (ax, doc) in enumerate(zip(axes[0], docs)):
        ax.add_patch(plt.Circle((0, 0), reach, fill=False, color="0.8", lw=1))
        ax.plot([0], [0], marker="o", color="k", ms=6)  # arm base
        task = obstacle_task() if (doc.get("settings") or {}).get("obstacle") else None
        for ep in doc["per_episode"]:
            if task is not None and ep.get("target"):
                post = obstacle_position(np.asarray(ep["target"], dtype=float), task)  # [2]
                ax.add_patch(plt.Circle(tuple(post), task.obstacle_size, color="saddlebrown", alpha=0.35, lw=0))
                if ep.get("collided") and ep.get("fingertip"):
                    tip = np.asarray(ep["fingertip"], dtype=float)  # [N, 2]
                    first = tip[np.argmax(np.linalg.norm(tip - post, axis=1)
                                          < task.obstacle_size + FINGERTIP_RADIUS)]  # [2] first contact
                    ax.plot([first[0]], [first[1]], marker="o", ms=9, mfc="none", mec="red", mew=1.5)
            tip = ep.get("fingertip") or []
            if tip:
                xs, ys = zip(*tip)
                ax.plot(xs, ys, color=MODE_COLOURS.get(ep["mode"], "k"), lw=1.2, alpha=0.8,
                        ls="-" if ep["success"] else "--")
                ax.plot([xs[-1]], [ys[-1]], marker="o", ms=3, color=MODE_COLOURS.get(ep["mode"], "k"))
            if ep.get("target"):
                ax.plot([ep["target"][0]], [ep["target"][1]], marker="x", color="k", ms=7, mew=1.5)
        title = titles[k] if titles else run_label(doc)
        ax.set_title(f"{title}\nsuccess {100 * doc['success_rate']:.0f} % of {doc['episodes']}")
        pad = 0.02 if task is None else task.obstacle_distance + task.obstacle_size - reach + 0.005
        ax.set_xlim(-0.6 * reach, reach + pad)
        ax.set_ylim(-reach - pad, reach + pad)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.grid(True, lw=0.3)
    handles = [Line2D([], [], color=MODE_COLOURS[m], label=m.replace("_", " ")) for m in MODES]
    handles += [Line2D([], [], color="k", ls="--", label="failed"),
                Line2D([], [], color="k", marker="x", ls="", label="target")]
    if any((d.get("settings") or {}).get("obstacle") for d in docs):
        handles += [Line2D([], [], color="saddlebrown", alpha=0.5, marker="o", ms=9, ls="", label="post"),
                    Line2D([], [], color="red", marker="o", mfc="none", ms=9, ls="", label="collision")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles) if len(docs) > 1 else 3, frameon=False)
    fig.tight_layout(rect=(0, 0.1 if len(docs) == 1 else 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
