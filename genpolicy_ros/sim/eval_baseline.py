"""The MSE regression baseline of a model, for ``genpolicy eval --policy mse`` / ``--compare``:
found next to the model, or trained with ``genpolicy train --kind regression`` on the same
data set, network, encoder and horizons."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional


def dataset_of(model_dir) -> Optional[str]:
    """The training data set recorded in a model's config.json metadata (``genpolicy train``)."""
    from ..core.checkpoint import read_model_config

    _, doc = read_model_config(model_dir)
    path = (doc.get("metadata") or {}).get("dataset")
    return path if path and Path(path, "dataset.json").is_file() else None


def ensure_regression_baseline(model_dir, out_dir, data: Optional[str] = None, steps: Optional[int] = None,
                               progress: bool = True) -> str:
    """The MSE regression baseline of ``model_dir``: ``out_dir`` if it already holds a
    regression model, else trained there with ``genpolicy train --kind regression`` on the
    same data set (``data`` or the one in MODEL's metadata), network, encoder and horizons."""
    from ..core.checkpoint import read_model_config

    out = Path(out_dir)
    if (out / "config.json").is_file():
        cfg, _ = read_model_config(out)
        if cfg.kind != "regression":
            raise ValueError(f"{out} holds a {cfg.kind} model, not a regression baseline")
        return str(out)
    data = data or dataset_of(model_dir)
    if data is None:
        raise ValueError(f"{model_dir}: its config.json does not name an existing training data set; "
                         "pass --data DIR (or --mse-model DIR with a trained baseline)")
    model_cfg, _ = read_model_config(model_dir)
    section = model_cfg.to_dict()
    policy = {k: section[k] for k in ("horizon", "network", "encoder", "seed")}
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "baseline_config.json"
    config_file.write_text(json.dumps({"policy": policy, "train": {}}, indent=2))
    cmd = [sys.executable, "-m", "genpolicy_ros.cli", "train", "--data", str(data), "--kind", "regression",
           "--out", str(out), "--config", str(config_file), "--no-progress" if not progress else "--progress"]
    if steps is not None:
        cmd += ["--steps", str(int(steps))]
    from ..tasks.model_task import model_task

    task = model_task(model_dir)
    if task is not None:  # the same task's defaults (what the model observes), recorded in the baseline
        cmd += ["--task", task]
    done = subprocess.run(cmd)
    if done.returncode != 0 or not (out / "config.json").is_file():
        raise RuntimeError(f"training the regression baseline failed (exit {done.returncode}): {' '.join(cmd)}")
    return str(out)


def default_baseline_dir(model_dir) -> Path:
    """The shipped baseline next to a model (``obstacle_flow`` -> ``obstacle_mse``, ``reach_flow`` ->
    ``reach_mse``; else ``reach_mse``, the older rule), else ``<MODEL>_mse``."""
    model = Path(model_dir).resolve()
    for name in (model.name.rsplit("_", 1)[0] + "_mse", "reach_mse"):
        sibling = model.parent / name
        if sibling != model and sibling.is_dir() and (sibling / "config.json").is_file():
            return sibling
    return model.with_name(model.name + "_mse")
