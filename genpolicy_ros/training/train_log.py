"""The training log of a run: ``train_log.csv`` (one row per logged step) and ``loss.png``."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

LOG_FILE = "train_log.csv"
PLOT_FILE = "loss.png"
LOG_COLUMNS = ("step", "epoch", "loss", "lr", "ema_decay", "elapsed_s")


def append_row(out_dir: Path, row: Sequence) -> None:
    """One logged step (``LOG_COLUMNS`` order)."""
    with open(Path(out_dir) / LOG_FILE, "a", newline="") as fh:
        csv.writer(fh).writerow(list(row))


def read_losses(out_dir: Path) -> List[Tuple[int, float]]:
    """(step, loss) of every logged row; [] without a log."""
    path = Path(out_dir) / LOG_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(fh)]


def restart_log(out_dir: Path, keep_until_step: Optional[int] = None) -> None:
    """Start the CSV afresh, or (resuming) keep only the rows up to ``keep_until_step``."""
    path = Path(out_dir) / LOG_FILE
    rows = []
    if keep_until_step is not None and path.is_file():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= keep_until_step]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)


def plot_losses(history: List[Tuple[int, float]], path: Path, title: str = "training loss") -> None:
    """Loss vs step (log y when all positive) with matplotlib's Agg canvas (no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if history:
        steps, losses = zip(*history)
        ax.plot(steps, losses, lw=1.2)
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(".tmp_" + path.name)
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
