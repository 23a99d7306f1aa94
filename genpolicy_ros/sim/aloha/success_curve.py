"""Success rate against training steps: every checkpoint of a training run rolled out in the
transfer-cube task (ROS-free, :func:`.rollout_policy.evaluate_model`), one CSV row per
checkpoint, and a plot::

    python -m genpolicy_ros.sim.aloha.success_curve --run runs/aloha_state_flow --episodes 50 --seed 1
    python -m genpolicy_ros.sim.aloha.success_curve --run runs/aloha_state_flow --watch   # while it trains

Checkpoints already in the CSV (same episodes and seed) are not evaluated again, so the
command can be re-run (or left watching) while ``genpolicy train --resume`` continues the
run. The run's final model (``RUN/model.safetensors``, its step read from
``config.json``'s ``metadata.train_step``) counts as a checkpoint too. Default outputs:
``RUN/success_curve.csv`` and ``RUN/success_curve.png`` (with the training loss from
``RUN/train_log.csv`` below the rates when present).
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

STAGES = ("grasped", "lifted", "transferred")
COLUMNS = ("step", "episodes", "seed", "success", *STAGES, "benchmark", "sample_ms")
_STEP_DIR = re.compile(r"^step_(\d+)$")


def run_models(run_dir) -> list[tuple[int, Path]]:
    """(training step, model directory) of every complete checkpoint of ``run_dir`` (one with
    its weights) and of its final model, by step; a final model equal to a checkpoint's step
    replaces it."""
    run = Path(run_dir)
    found = {}
    for d in sorted((run / "checkpoints").glob("step_*")):
        m = _STEP_DIR.match(d.name)
        if m and (d / "model.safetensors").is_file() and (d / "config.json").is_file():
            found[int(m.group(1))] = d
    if (run / "model.safetensors").is_file() and (run / "config.json").is_file():
        step = json.loads((run / "config.json").read_text()).get("metadata", {}).get("train_step")
        if isinstance(step, int):
            found[step] = run
    return sorted(found.items())


def read_curve(path) -> list[dict]:
    """The rows of a success-curve CSV (ints, ``sample_ms`` float), by step; [] when absent."""
    p = Path(path)
    if not p.is_file():
        return []
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{p}: columns {reader.fieldnames}, expected {list(COLUMNS)}")
        rows = [{k: (float(v) if k == "sample_ms" else int(v)) for k, v in row.items()} for row in reader]
    return sorted(rows, key=lambda r: r["step"])


def append_row(path, row: dict) -> None:
    """Append one row (``COLUMNS`` keys) to the CSV at ``path``, writing the header first if new."""
    p = Path(path)
    new = not p.is_file()
    with p.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: row[k] for k in COLUMNS})


def curve_row(step: int, seed: int, evaluations: list[dict], sample_s: list[float]) -> dict:
    """One CSV row from the per-episode ``env.evaluate()`` results of a checkpoint."""
    row = {"step": int(step), "episodes": len(evaluations), "seed": int(seed),
           "success": sum(bool(e["success"]) for e in evaluations),
           "benchmark": sum(bool(e["benchmark_success"]) for e in evaluations),
           "sample_ms": round(1000.0 * sum(sample_s) / max(1, len(sample_s)), 2)}
    row.update({s: sum(bool(e["stages"][s]) for e in evaluations) for s in STAGES})
    return row


def plot_curve(rows: list[dict], png, train_log=None, title: str = "") -> Path:
    """Success, stage and benchmark rates (%) against training steps; the training loss
    (``train_log.csv``: step, …, loss) below when given. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("plot_curve: no rows to plot")
    loss = _read_loss(train_log) if train_log is not None and Path(train_log).is_file() else None
    fig, axes = plt.subplots(2 if loss else 1, 1, figsize=(7, 6 if loss else 4), sharex=True, squeeze=False)
    ax = axes[0, 0]
    steps = [r["step"] for r in rows]
    for key, style in (("success", "-o"), ("grasped", ":."), ("lifted", ":."), ("transferred", "--."),
                       ("benchmark", "-.x")):
        ax.plot(steps, [100.0 * r[key] / r["episodes"] for r in rows], style, label=key,
                linewidth=2.5 if key == "success" else 1.2)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"% of {rows[-1]['episodes']} episodes (seed {rows[-1]['seed']})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "transfer-cube success vs training steps (ROS-free roll-outs)")
    if loss:
        lx = axes[1, 0]
        lx.semilogy(*zip(*loss), linewidth=1)
        lx.set_ylabel("training loss")
        lx.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("training step")
    fig.tight_layout()
    out = Path(png)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _read_loss(train_log) -> list[tuple[int, float]]:
    with Path(train_log).open(newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


def update_curve(run_dir, csv_path, episodes: int, seed: int, evaluate=None, log=print) -> list[dict]:
    """Evaluate every model of ``run_dir`` not yet in ``csv_path`` with ``episodes`` and
    ``seed`` (rows with other settings are an error: start another CSV), append their rows.
    ``evaluate(model_dir, episodes, seed) -> (evaluations, sample_s)``, default the ROS-free
    roll-outs. Returns all rows."""
    if evaluate is None:
        from .rollout_policy import evaluate_model as evaluate
    rows = read_curve(csv_path)
    other = [r["step"] for r in rows if (r["episodes"], r["seed"]) != (episodes, seed)]
    if other:
        raise ValueError(f"{csv_path} holds steps {other} evaluated with other --episodes/--seed; "
                         "write this curve to another --csv")
    done = {r["step"] for r in rows}
    for step, model in run_models(run_dir):
        if step in done:
            continue
        started = time.perf_counter()
        evaluations, sample_s = evaluate(model, episodes, seed)
        row = curve_row(step, seed, evaluations, sample_s)
        append_row(csv_path, row)
        log(f"step {step}: success {row['success']}/{episodes}, "
            + ", ".join(f"{s} {row[s]}" for s in STAGES)
            + f", benchmark {row['benchmark']} ({time.perf_counter() - started:.0f} s)")
    return read_curve(csv_path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m genpolicy_ros.sim.aloha.success_curve",
                                description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, metavar="DIR", help="training run (genpolicy train --out)")
    p.add_argument("--episodes", type=int, default=50, metavar="N", help="episodes per checkpoint (default 50)")
    p.add_argument("--seed", type=int, default=1,
                   help="episode i resets with seed*100003+i (default 1; demonstrations use 0)")
    p.add_argument("--csv", default=None, metavar="FILE", help="default RUN/success_curve.csv")
    p.add_argument("--plot", default=None, metavar="PNG", help="default RUN/success_curve.png")
    p.add_argument("--watch", action="store_true",
                   help="keep evaluating new checkpoints until the run's final model is evaluated")
    p.add_argument("--poll-s", type=float, default=30.0, help="with --watch: seconds between looks")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run = Path(args.run)
    if args.episodes < 1 or not run.is_dir():
        print(f"success_curve: need --episodes >= 1 and an existing --run directory ({run})", file=sys.stderr)
        return 2
    csv_path = Path(args.csv or run / "success_curve.csv")
    png = Path(args.plot or run / "success_curve.png")
    while True:
        try:
            rows = update_curve(run, csv_path, args.episodes, args.seed)
        except ValueError as exc:
            print(f"success_curve: {exc}", file=sys.stderr)
            return 1
        if rows:
            plot_curve(rows, png, run / "train_log.csv", title=f"{run.name}: success vs training steps")
        final = [step for step, model in run_models(run) if model == run]  # the run's final model, if written
        finished = bool(final) and final[0] in {r["step"] for r in rows}
        if not args.watch or finished:
            break
        time.sleep(args.poll_s)
    if not rows:
        print(f"success_curve: no checkpoint in {run}", file=sys.stderr)
        return 1
    print(f"wrote {csv_path} ({len(rows)} checkpoints) and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
