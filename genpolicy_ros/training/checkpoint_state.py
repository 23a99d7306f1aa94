"""Checkpoint state of a training run: where checkpoints live and how the optimiser and RNG
states become tensors + JSON (nothing is pickled).

    OUT/checkpoints/step_XXXXXX/
      config.json, model.safetensors   a complete model directory (EMA weights)
      trainer_state.safetensors        raw weights, optimiser state, RNG states, EMA count
      trainer_state.json               step, configs, optimiser hyper-parameters, non-tensor
                                       optimiser entries (written last: a checkpoint without
                                       it is incomplete and ignored)
"""
from __future__ import annotations

import json
import math
import os
import random
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

CHECKPOINT_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.safetensors"
TRAINER_STATE_JSON = "trainer_state.json"
STATE_FORMAT_VERSION = 1


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def list_checkpoints(out_dir) -> List[Tuple[int, Path]]:
    """Complete checkpoints under ``OUT/checkpoints`` as (step, path), oldest first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    found = []
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith("step_") and p.name[5:].isdigit() and (p / TRAINER_STATE_JSON).is_file():
                found.append((int(p.name[5:]), p))
    return sorted(found)


def latest_checkpoint(out_dir) -> Optional[Path]:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def read_trainer_state_json(checkpoint: Path) -> dict:
    path = Path(checkpoint) / TRAINER_STATE_JSON
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable trainer state ({exc})") from None
    if state.get("format_version") != STATE_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported trainer state format_version {state.get('format_version')!r}")
    return state


def flatten_optimizer_state(state_dict: dict) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Optimiser ``state_dict()`` → (tensors ``optim.<param id>.<key>``, JSON-able rest)."""
    tensors, scalars = {}, {}
    for pid, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: Dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: Dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            pid, key = name[len("optim."):].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def host_rng_state() -> Tuple[torch.Tensor, torch.Tensor]:
    """numpy + Python global RNG states as (int64 [1252], float64 [2]) tensors."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    ints = torch.tensor([pos, has_gauss, version, *keys.tolist(), *py_state], dtype=torch.int64)  # [1252]
    floats = torch.tensor([cached, math.nan if gauss_next is None else gauss_next], dtype=torch.float64)  # [2]
    return ints, floats


def set_host_rng_state(ints: torch.Tensor, floats: torch.Tensor) -> None:
    vals = ints.tolist()
    pos, has_gauss, version = vals[0], vals[1], vals[2]
    keys = np.array(vals[3:3 + 624], dtype=np.uint32)
    py_state = tuple(vals[3 + 624:])
    cached, gauss_next = floats.tolist()
    np.random.set_state(("MT19937", keys, pos, has_gauss, cached))
    random.setstate((version, py_state, None if math.isnan(gauss_next) else gauss_next))


def atomic_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, allow_nan=False)
        fh.write("\n")
    os.replace(tmp, path)
