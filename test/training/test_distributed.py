"""Claim 8: `torchrun --nproc_per_node 2 -m genpolicy_ros.cli train` trains, ranks end identical."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genpolicy_ros.core.checkpoint import read_model_config
from genpolicy_ros.core.policy import GenerativePolicy
from genpolicy_ros.training.distributed import DistInfo, StepBatchSampler
from genpolicy_ros.training.trainer import LOG_FILE

REPO = Path(__file__).resolve().parents[2]


def test_step_batch_sampler_shards_are_disjoint_and_resumable():
    n, bs = 50, 4
    r0 = StepBatchSampler(n, bs, seed=3, info=DistInfo(rank=0, world_size=2))
    r1 = StepBatchSampler(n, bs, seed=3, info=DistInfo(rank=1, world_size=2))
    assert r0.batches_per_epoch == 6  # 25 windows per rank → 6 full batches of 4
    it0, it1 = iter(r0), iter(r1)
    epoch0 = [next(it0) for _ in range(6)]
    epoch1 = [next(it1) for _ in range(6)]
    seen0 = {i for b in epoch0 for i in b}
    seen1 = {i for b in epoch1 for i in b}
    assert not seen0 & seen1, "ranks must see disjoint windows within an epoch"
    assert len(seen0) == len(seen1) == 24
    epoch0_again = [next(it0) for _ in range(6)]
    assert epoch0_again != epoch0, "every epoch is reshuffled"
    # Starting at step 9 yields exactly what the uninterrupted stream yields there.
    full = iter(StepBatchSampler(n, bs, seed=3))
    stream = [next(full) for _ in range(15)]
    resumed = iter(StepBatchSampler(n, bs, seed=3, start_step=9))
    assert [next(resumed) for _ in range(6)] == stream[9:]
    assert StepBatchSampler(n, bs, seed=3).batch_at(13) == stream[13]
    with pytest.raises(ValueError, match="fewer than batch_size 40"):
        StepBatchSampler(n, 40, seed=0, info=DistInfo(rank=0, world_size=2))


def test_torchrun_two_processes_end_with_identical_weights(tmp_path, tiny_dataset, tiny_policy):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"policy": tiny_policy, "train": {"warmup_steps": 2}}))
    out, dump = tmp_path / "out", tmp_path / "dump"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "genpolicy_ros.cli", "train", "--data", str(tiny_dataset), "--out", str(out),
           "--config", str(cfg), "--steps", "16", "--batch-size", "8", "--lr", "1e-3", "--log-every", "4",
           "--save-every", "0", "--device", "cpu", "--no-progress", "--debug-dump-weights", str(dump)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "2 process(es)" in proc.stderr, proc.stderr[-2000:]
    w0 = load_file(str(dump / "weights_rank0.safetensors"))
    w1 = load_file(str(dump / "weights_rank1.safetensors"))
    assert set(w0) == set(w1) and any(k.startswith("ema.") for k in w0)
    differing = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    assert not differing, f"ranks differ in {len(differing)} tensors, e.g. {differing[:3]}"
    # Training moved the weights away from their initial values (equality is not trivial).
    cfg_built, _ = read_model_config(out)
    init = GenerativePolicy.from_config(cfg_built).state_dict()
    moved = [k for k in init if k.startswith("network.") and not torch.equal(init[k], w0["model." + k])]
    assert len(moved) > 0.5 * sum(k.startswith("network.") for k in init), f"only {len(moved)} tensors moved"
    # Rank 0 wrote the model directory and one log row per 4 steps.
    assert (out / "model.safetensors").is_file()
    rows = (out / LOG_FILE).read_text().strip().splitlines()
    assert len(rows) == 1 + 4, rows
